#!/usr/bin/env python
"""Convolution: indexcalc's compiled plan against hand-written im2col NumPy; one table.

    python benchmarks/bench_conv.py            # about a minute
    python benchmarks/bench_conv.py --quick    # fewer rounds
    python benchmarks/bench_conv.py --plans    # print each case's plan after the table

Rows (see benchmarks/README.md):
  1. A 2-D convolution layer, forward and backward: L = Σ g·h with
     h_{ncij} = K_{cdkl} x_{nd(i+k)(j+l)} (N=64, C_in=8, C_out=16, 16x16, 3x3), its value
     and the gradients by K and x, `ic.compile(..., wrt=["K", "x"])` against im2col
     (sliding windows copied to an (N·I·J, C·K·L) matrix, one matmul forward, two
     backward, col2im by one slice-add per kernel offset). float64 and float32. The
     issue's target: at most 1.5x.
  2. 2x2 max-pooling with stride 2, forward and backward (ties split evenly), against
     NumPy: the maximum of four strided views, tie weights on the reshaped blocks.
  3. The digits CNN (examples/digits_cnn.ic), one epoch of mini-batch steps (gradients
     and an Adam update, batch 32): the model's compiled gradient against a hand-written
     NumPy CNN and Adam; and `Trainer.fit` for one epoch (which adds the epoch's scores:
     the loss and accuracy on the train and test sets) against the hand-written steps
     plus the same scores. Needs scikit-learn (the digits); skipped without it.

Timing, thread limits and the table are bench_gradients.py's: contenders alternate in
rounds, the table gives medians, ratios to the NumPy baseline, the spread, and the best
round. Every result is checked against the baseline's before it is timed.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--plans", action="store_true", help="print indexcalc's plan for every case")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    from blas_env import set_blas_threads

    set_blas_threads(ARGS.threads)  # before NumPy loads its BLAS

import importlib.util  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's indexcalc, whatever is installed
import bench_gradients as bg  # noqa: E402
from bench_gradients import Contender, add_timed, time_interleaved  # noqa: E402

import indexcalc as ic  # noqa: E402

swv = np.lib.stride_tricks.sliding_window_view


# ============================================================================ 1. conv layer

CONV = "h_ncij = K_cdkl x_{nd(i+k)(j+l)}\nL = sum_{ncij}(g_ncij h_ncij)"


def im2col_conv(x, K, g):
    """L = Σ g·conv(x, K) and its gradients, as a NumPy user writes a convolution layer."""
    N, C, H, W = x.shape
    F, _, KH, KW = K.shape
    OH, OW = H - KH + 1, W - KW + 1
    cols = swv(x, (KH, KW), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(N * OH * OW, C * KH * KW)
    h = (cols @ K.reshape(F, -1).T).reshape(N, OH, OW, F).transpose(0, 3, 1, 2)
    loss = np.vdot(g, h)
    g2 = g.transpose(0, 2, 3, 1).reshape(N * OH * OW, F)
    dK = (g2.T @ cols).reshape(K.shape)
    dcols = (g2 @ K.reshape(F, -1)).reshape(N, OH, OW, C, KH, KW)
    dx = np.zeros_like(x)
    for k in range(KH):
        for l in range(KW):
            dx[:, :, k : k + OH, l : l + OW] += dcols[:, :, :, :, k, l].transpose(0, 3, 1, 2)
    return loss, {"K": dK, "x": dx}


def bench_conv_layer(timing, dtype) -> None:
    rng = np.random.default_rng(0)
    N, C, F, H, KS = 64, 8, 16, 16, 3
    x = rng.normal(size=(N, C, H, H)).astype(dtype)
    K = (rng.normal(size=(F, C, KS, KS)) / np.sqrt(C * KS * KS)).astype(dtype)
    g = rng.normal(size=(N, F, H - KS + 1, H - KS + 1)).astype(dtype)
    arrays = {"x": x, "K": K, "g": g}
    f = ic.compile(CONV, wrt=["K", "x"])
    bg.check_close("conv layer", *f(arrays), *im2col_conv(x, K, g), np.dtype(dtype))
    contenders = [Contender("NumPy im2col (hand-written)", lambda: im2col_conv(x, K, g), baseline=True),
                  Contender("indexcalc compile", lambda: f(arrays))]
    time_interleaved(contenders, *timing)
    add_timed("1", "conv 64x8x16x16, 16 filters 3x3", np.dtype(dtype).name, contenders,
              {"indexcalc compile": f"{bg.plan_steps(f)} steps"}, flag_over=1.5)
    bg.PLANS.append((f"conv layer {np.dtype(dtype).name}", f))


# ============================================================================ 2. max-pool

POOL = "L = sum_{ncij}(g_ncij max_{kl}(h_{nc(2i+k)(2j+l)}))"


def pool_max(h):
    """2x2 max-pooling with stride 2, by hand as fast as NumPy goes: the elementwise
    maximum of the four strided views (np.max over a reshaped view's two small axes is
    several times slower), and the reshaped blocks for the tie weights."""
    N, C, H, W = h.shape
    m = np.maximum(np.maximum(h[:, :, 0::2, 0::2], h[:, :, 0::2, 1::2]), np.maximum(h[:, :, 1::2, 0::2], h[:, :, 1::2, 1::2]))
    return m, h.reshape(N, C, H // 2, 2, W // 2, 2)


def pool_back(blocks, m, dm):
    """The max-pool's backward pass: the adjoint split evenly over each block's ties."""
    ties = (blocks == m[:, :, :, None, :, None]).astype(m.dtype)  # bools would add as "or"
    count = ties[:, :, :, 0, :, 0] + ties[:, :, :, 0, :, 1] + ties[:, :, :, 1, :, 0] + ties[:, :, :, 1, :, 1]
    return (ties * (dm / count)[:, :, :, None, :, None]).reshape(blocks.shape[:2] + (-1, blocks.shape[4] * 2))


def numpy_pool(h, g):
    m, blocks = pool_max(h)
    return np.vdot(g, m), {"h": pool_back(blocks, m, g)}


def bench_pool(timing) -> None:
    rng = np.random.default_rng(1)
    h, g = rng.normal(size=(64, 16, 14, 14)), rng.normal(size=(64, 16, 7, 7))
    arrays = {"h": h, "g": g}
    f = ic.compile(POOL, wrt=["h"])
    bg.check_close("max-pool", *f(arrays), *numpy_pool(h, g), np.dtype("float64"))
    contenders = [Contender("NumPy 4 views (hand-written)", lambda: numpy_pool(h, g), baseline=True),
                  Contender("indexcalc compile", lambda: f(arrays))]
    time_interleaved(contenders, *timing)
    add_timed("2", "max-pool 2x2/2 of 64x16x14x14", "float64", contenders,
              {"indexcalc compile": f"{bg.plan_steps(f)} steps"})
    bg.PLANS.append(("max-pool", f))


# ============================================================================ 3. digits CNN epoch


def cnn_forward(params, x):
    """examples/digits_cnn.ic's forward pass by hand: im2col, ReLU, max-pool, dense."""
    K, b, W, c = params["K"], params["b"], params["W"], params["c"]
    n = len(x)
    cols = swv(x, (3, 3), axis=(1, 2)).reshape(n * 36, 9)
    u = (cols @ K.reshape(len(K), 9).T).reshape(n, 6, 6, -1).transpose(0, 3, 1, 2) + b[:, None, None]
    m, blocks = pool_max(np.maximum(u, 0))
    z = m.reshape(n, -1) @ W.reshape(len(W), -1).T + c
    return z, (cols, u, m, blocks)


def numpy_cnn(params, x, y):
    """The mean softmax cross-entropy and its gradients, by hand."""
    W = params["W"]
    n = len(x)
    z, (cols, u, m, blocks) = cnn_forward(params, x)
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    loss = np.mean(lse - (y * z).sum(axis=1))
    dz = (np.exp(z - lse[:, None]) - y) / n
    dm = (dz @ W.reshape(len(W), -1)).reshape(m.shape)
    du = pool_back(blocks, m, dm) * (u > 0)
    du2 = du.transpose(0, 2, 3, 1).reshape(n * 36, -1)
    return loss, {"K": (du2.T @ cols).reshape(params["K"].shape), "b": du.sum(axis=(0, 2, 3)),
                  "W": (dz.T @ m.reshape(n, -1)).reshape(W.shape), "c": dz.sum(axis=0)}


class HandAdam:
    def __init__(self, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v = lr, beta1, beta2, eps, 0, {}, {}

    def step(self, params, grads):
        self.t += 1
        for k, grad in grads.items():
            m = self.m[k] = self.b1 * self.m.get(k, 0.0) + (1 - self.b1) * grad
            v = self.v[k] = self.b2 * self.v.get(k, 0.0) + (1 - self.b2) * grad * grad
            mhat, vhat = m / (1 - self.b1 ** self.t), v / (1 - self.b2 ** self.t)
            params[k] = params[k] - self.lr * mhat / (np.sqrt(vhat) + self.eps)


def epoch_steps(loss_and_grads, optimiser, params, train, size=32, seed=0):
    params = dict(params)
    order = np.random.default_rng(seed).permutation(len(train["x"]))
    for lo in range(0, len(order), size):
        picked = order[lo : lo + size]
        _, grads = loss_and_grads(params, {k: v[picked] for k, v in train.items()})
        optimiser.step(params, grads)
    return params


def hand_scores(params, train, test):
    """What Trainer.scores does after an epoch, by hand: the loss (with its gradients, as
    loss_and_grads gives it) and the accuracy (a second forward pass) on both splits."""
    out = {}
    for prefix, data in (("train", train), ("test", test)):
        loss, _ = numpy_cnn(params, data["x"], data["y"])
        logits, _ = cnn_forward(params, data["x"])
        out[prefix] = (loss, np.mean(logits.argmax(1) == data["y"].argmax(1)))
    return out


def bench_digits_epoch(timing) -> None:
    if importlib.util.find_spec("sklearn") is None:
        print("row 3 skipped: scikit-learn is not installed (the digits data set needs it)")
        return
    from indexcalc.optimisers import Adam

    mf, train, test, trainer = bg.training_setup(Path(ic.__file__).parent / "examples" / "digits_cnn.ic")
    train = {k: np.asarray(v) for k, v in train.items()}
    test = {k: np.asarray(v) for k, v in test.items()}
    model = mf.model
    params = model.init_params(mf.seed)
    batch = {k: v[:32] for k, v in train.items()}
    bg.check_close("digits CNN gradient", *model.loss_and_grads(params, batch),
                   *numpy_cnn(params, batch["x"], batch["y"]), np.dtype("float64"))

    def hand_epoch():
        return epoch_steps(lambda p, d: numpy_cnn(p, d["x"], d["y"]), HandAdam(), params, train)

    def ic_epoch():
        return epoch_steps(model.loss_and_grads, Adam(lr=0.01), params, train)

    a, b = hand_epoch(), ic_epoch()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-9, err_msg=f"one epoch's {k}")
    contenders = [Contender("NumPy CNN + Adam (hand-written)", hand_epoch, baseline=True),
                  Contender("indexcalc loss_and_grads + Adam", ic_epoch)]
    time_interleaved(contenders, timing[0], timing[1] * 10, timing[2])
    add_timed("3", "digits CNN: one epoch of steps (45 x 32)", "float64", contenders)

    def hand_fit():
        trained = hand_epoch()
        return hand_scores(trained, train, test)

    def ic_fit():
        return trainer().fit(train, 1, test=test)

    contenders = [Contender("hand-written steps + scores", hand_fit, baseline=True),
                  Contender("indexcalc Trainer.fit(1 epoch)", ic_fit)]
    time_interleaved(contenders, timing[0], timing[1] * 10, timing[2])
    add_timed("3", "digits CNN: one epoch with its scores", "float64", contenders,
              {"indexcalc Trainer.fit(1 epoch)": "scores: loss (via loss_and_grads) and accuracy on train and test"})
    model.loss_and_grads(params, batch)
    bg.PLANS.append(("digits CNN, one step's gradient (batch 32)", model.gradient))


def main(args) -> int:
    started = time.perf_counter()
    note = bg.limit_threads(args.threads)
    timing = (15, 0.02, 5.0) if args.quick else (41, 0.05, 20.0)  # rounds, seconds per batch, per case
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"indexcalc convolution benchmark ({'--quick' if args.quick else 'full'} run); NumPy {np.__version__}, "
          f"{bg.blas_name()}, {bg.git_revision()}, sources sha1 {bg.SOURCE_HASH}")
    print(f"BLAS: {note}; load average at start {load}; medians over rounds, ratio = median / baseline's\n")
    for dtype in ("float64", "float32"):
        bench_conv_layer(timing, dtype)
    bench_pool(timing)
    bench_digits_epoch(timing)
    bg.print_table()
    print()
    print("flagged (indexcalc > 1.5x im2col on the conv layer): " + ("; ".join(bg.FLAGS) if bg.FLAGS else "none"))
    if args.plans:
        for case, f in bg.PLANS:
            print(f"\n=== plan: {case}\n{f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
