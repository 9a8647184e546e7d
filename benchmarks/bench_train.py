#!/usr/bin/env python
"""Training steps against hand-written NumPy loops: the ratio of `Trainer.fit` (fused
step, and the unfused loop beside it) to a tuned NumPy loop, a plain NumPy loop, and
JAX's jitted step where installed.

    python benchmarks/bench_train.py            # full
    python benchmarks/bench_train.py --quick    # a few rounds, fewer epochs

Rows: XOR (2-4-1 sigmoid, batch 4, SGD lr 0.1) per step through `Trainer.fit` (an epoch
is one step; every loop takes each step's loss as a float, as the Trainer adds them up
for the epoch's loss); Fizz Buzz (fizzbuzz.ic, Adam, batch 32) per epoch, without the
metric and the test set (scoring counted apart); JAX's whole XOR run in one
`lax.fori_loop` (no per-step loss on the host) as the ceiling; and gradient calls alone
on bench_gradients.py's tiny and small MLPs (its NumPy backprop the baseline): the
compiled call, its plan's function without the call's wrapper (what the fused step
runs), and JAX's jitted value_and_grad.
Every contender runs once a round, the order rotating; a row's ratio is the median of
the per-round ratios to the tuned NumPy loop. One thread everywhere: BLAS by
environment, XLA by `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`,
and the process pinned to one core (os.sched_setaffinity) where the OS allows.
"""

from __future__ import annotations

import argparse
import statistics
import time

from blas_env import single_threaded  # imports no NumPy

single_threaded()

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import indexcalc as ic  # noqa: E402
from indexcalc.modelfile import load  # noqa: E402
from indexcalc.optimisers import SGD  # noqa: E402
from indexcalc.train import Trainer, prepare  # noqa: E402

EXAMPLES = Path(ic.__file__).resolve().parent / "examples"


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def example(name: str):
    """An example model file, its training split as float arrays and its initial parameters."""
    mf = load(str(EXAMPLES / name))
    data = mf.load_data(mf.seed)
    x, y = (np.asarray(data.train[k], dtype=float) for k in ("x", "y"))
    return mf, x, y, mf.model.init_params(0)

# ---------------------------------------------------------------- XOR, SGD


def xor_plain(p, x, y, epochs, lr, seed):
    """The obvious loop: new arrays everywhere."""
    W1, b1, W2, b2 = (p[k].copy() for k in ("W1", "b1", "W2", "b2"))
    rng = np.random.default_rng(seed)
    n = len(x)
    for _ in range(epochs):
        i = rng.permutation(n)
        xb, yb = x[i], y[i]
        h = sigmoid(xb @ W1.T + b1)
        o = sigmoid(h @ W2.T + b2)
        float(((o - yb) ** 2).sum() / n)  # the step's loss, as the Trainer adds it up
        d = 2 * (o - yb) / n * o * (1 - o)
        dh = (d @ W2) * h * (1 - h)
        W2, b2 = W2 - lr * (d.T @ h), b2 - lr * d.sum(0)
        W1, b1 = W1 - lr * (dh.T @ xb), b1 - lr * dh.sum(0)
    return W1


def xor_tuned(p, x, y, epochs, lr, seed):
    """Preallocated buffers and in-place ufuncs."""
    W1, b1, W2, b2 = (p[k].copy() for k in ("W1", "b1", "W2", "b2"))
    rng = np.random.default_rng(seed)
    n = len(x)
    h, o = np.empty((n, 4)), np.empty((n, 1))
    xb, yb = np.empty_like(x), np.empty_like(y)
    gW1, gW2 = np.empty_like(W1), np.empty_like(W2)
    for _ in range(epochs):
        i = rng.permutation(n)
        np.take(x, i, axis=0, out=xb)
        np.take(y, i, axis=0, out=yb)
        np.matmul(xb, W1.T, out=h); h += b1; np.negative(h, out=h); np.exp(h, out=h); h += 1; np.reciprocal(h, out=h)
        np.matmul(h, W2.T, out=o); o += b2; np.negative(o, out=o); np.exp(o, out=o); o += 1; np.reciprocal(o, out=o)
        e = o - yb
        float(np.vdot(e, e) / n)  # the step's loss
        d = e * (2 / n) * o * (1 - o)
        dh = (d @ W2) * h * (1 - h)
        np.matmul(d.T, h, out=gW2); gW2 *= lr; W2 -= gW2; b2 -= lr * d.sum(0)
        np.matmul(dh.T, xb, out=gW1); gW1 *= lr; W1 -= gW1; b1 -= lr * dh.sum(0)
    return W1


def xor_jax_step(jax, p, x, y, lr):
    import jax.numpy as jnp

    def loss(ps, xb, yb):
        W1, b1, W2, b2 = ps
        o = jax.nn.sigmoid(jax.nn.sigmoid(xb @ W1.T + b1) @ W2.T + b2)
        return ((o - yb) ** 2).sum() / xb.shape[0]

    @jax.jit
    def step(ps, xb, yb):
        value, grads = jax.value_and_grad(loss)(ps, xb, yb)
        return tuple(w - lr * g for w, g in zip(ps, grads)), value

    @jax.jit
    def whole(ps, perms):
        def body(k, ps):
            xb, yb = xj[perms[k]], yj[perms[k]]
            return step(ps, xb, yb)[0]
        return jax.lax.fori_loop(0, perms.shape[0], body, ps)

    xj, yj = jnp.asarray(x), jnp.asarray(y)
    start = tuple(jnp.asarray(p[k]) for k in ("W1", "b1", "W2", "b2"))

    def stepped(epochs, seed):
        rng = np.random.default_rng(seed)
        ps = start
        for _ in range(epochs):
            i = rng.permutation(len(x))
            ps, value = step(ps, x[i], y[i])
            float(value)
        return ps

    def ceiling(epochs, seed):
        rng = np.random.default_rng(seed)
        perms = jnp.asarray(np.stack([rng.permutation(len(x)) for _ in range(epochs)]))
        return jax.block_until_ready(whole(start, perms))

    return stepped, ceiling


# ---------------------------------------------------------------- Fizz Buzz, Adam


def fizz_tuned(p, x, y, epochs, lr, seed, batch=32, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on relu → softmax cross-entropy, buffers reused, updates in place."""
    ps = {k: p[k].copy() for k in ("W1", "b1", "W2", "b2")}
    m = {k: np.zeros_like(v) for k, v in ps.items()}
    v = {k: np.zeros_like(v) for k, v in ps.items()}
    buf = {k: np.empty_like(v) for k, v in ps.items()}
    rng = np.random.default_rng(seed)
    n, t = len(x), 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch):
            i = order[lo:lo + batch]
            xb, yb = x[i], y[i]
            h = xb @ ps["W1"].T; h += ps["b1"]; np.maximum(h, 0, out=h)
            z = h @ ps["W2"].T; z += ps["b2"]
            z -= z.max(1, keepdims=True)
            float(np.mean(np.log(np.exp(z).sum(1)) - (yb * z).sum(1)))  # the step's loss; np.exp(z, out=z); z /= z.sum(1, keepdims=True)
            z -= yb; z /= len(i)
            dh = z @ ps["W2"]; dh *= h > 0
            grads = {"W2": z.T @ h, "b2": z.sum(0), "W1": dh.T @ xb, "b1": dh.sum(0)}
            t += 1
            c1, c2 = 1 - b1**t, 1 - b2**t
            for k, g in grads.items():
                m[k] *= b1; m[k] += (1 - b1) * g
                v[k] *= b2; g *= g; g *= 1 - b2; v[k] += g
                np.divide(v[k], c2, out=buf[k]); np.sqrt(buf[k], out=buf[k]); buf[k] += eps
                np.divide(m[k] * (lr / c1), buf[k], out=buf[k]); ps[k] -= buf[k]
    return ps


# ---------------------------------------------------------------- timing


def interleaved(contenders: dict, rounds: int) -> dict[str, list[float]]:
    names = list(contenders)
    times = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            begun = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - begun)
    return times


def table(title: str, unit: str, count: int, times: dict[str, list[float]], base: str = "numpy tuned") -> None:
    print(f"\n{title}")
    print(f"  {'contender':<28} {unit:>12} {'vs ' + base:>18}")
    for name, ts in times.items():
        ratio = statistics.median(a / b for a, b in zip(ts, times[base]))
        print(f"  {name:<28} {statistics.median(ts) / count * 1e6:>10.1f}µs {ratio:>17.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and epochs")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    has_jax = importlib.util.find_spec("jax") is not None
    if has_jax:
        import jax

        jax.config.update("jax_enable_x64", True)

    # XOR, SGD lr 0.1, batch 4: one step an epoch
    mf, x, y, p = example("xor.ic")
    epochs = 300 if args.quick else 1000

    def fit(fused):
        return lambda: Trainer(mf.model, SGD(lr=0.1), batch_size=4, fused=fused).fit({"x": x, "y": y}, epochs)

    contenders = {"numpy tuned": lambda: xor_tuned(p, x, y, epochs, 0.1, 0),
                  "numpy plain": lambda: xor_plain(p, x, y, epochs, 0.1, 0),
                  "Trainer.fit fused": fit(True), "Trainer.fit unfused": fit(False)}
    if has_jax:
        stepped, ceiling = xor_jax_step(jax, p, x, y, 0.1)
        stepped(2, 0), ceiling(2, 0)  # traced and compiled before timing
        ceiling(epochs, 0)
        contenders["jax.jit step"] = lambda: stepped(epochs, 0)
        contenders["jax fori_loop (ceiling)"] = lambda: ceiling(epochs, 0)
    for c in contenders.values():
        c()  # warm-up: plans, caches
    table(f"XOR per SGD step (batch 4, one step an epoch), {epochs} epochs, {rounds} rounds", "per step",
          epochs, interleaved(contenders, rounds))

    # Fizz Buzz, Adam lr 0.01, batch 32, no metric, no test set, no monitor (the file watches test_accuracy)
    mf, x, y, p = example("fizzbuzz.ic")
    epochs = 10 if args.quick else 120

    def fizz(fused):
        def run():
            trainer, _ = prepare(mf)
            trainer.metric, trainer.fused, trainer.monitor = None, fused, None  # the steps alone
            trainer.fit({"x": x, "y": y}, epochs)
        return run

    contenders = {"numpy tuned": lambda: fizz_tuned(p, x, y, epochs, 0.01, 0),
                  "Trainer.fit fused": fizz(True), "Trainer.fit unfused": fizz(False)}
    for c in contenders.values():
        c()
    table(f"Fizz Buzz per epoch ({len(x)} samples, batch 32, Adam), {epochs} epochs, {max(3, rounds // 3)} rounds",
          "per epoch", epochs, interleaved(contenders, max(3, rounds // 3)))

    # gradient calls alone: bench_gradients.py's tiny and small MLPs, float64
    import bench_gradients as bg

    for label, sizes, batch in bg.MLPS[:2]:
        layers = len(sizes) - 1
        arrays = bg.mlp_arrays(sizes, batch, np.float64)
        f = ic.compile(bg.mlp_program(sizes), wrt=[f"{p}{k}" for k in range(1, layers + 1) for p in "Wb"])
        value, grads = f(arrays)
        ref_value, ref_grads = bg.numpy_mlp(arrays, layers)
        bg.check_close(f"indexcalc {label}", value, grads, ref_value, ref_grads, np.float64)
        plan = f._last.run
        calls = 200 if args.quick else 1000

        def repeated(fn, a=arrays):
            return lambda: [fn(a) for _ in range(calls)]

        contenders = {"numpy tuned": repeated(lambda a, L=layers: bg.numpy_mlp(a, L)),
                      "indexcalc call": repeated(f), "indexcalc plan alone": repeated(plan)}
        if has_jax:
            run, _ = bg.jax_mlp(jax, arrays, layers)
            run()
            contenders["jax.jit value_and_grad"] = lambda run=run: [run() for _ in range(calls)]
        table(f"gradient call, MLP {label} {'-'.join(map(str, sizes))} n={batch} (bench_gradients' NumPy backprop "
              f"as the baseline), {rounds} rounds", "per call", calls, interleaved(contenders, rounds))

    build_times([10, 50] if args.quick else [10, 25, 50, 100, 200])


def chain(depth: int, width: int = 4) -> str:
    """A tanh chain `depth` layers deep, the loss its last layer's squared norm."""
    lines = ["h1_i = tanh(W1_ij x_j)"]
    lines += [f"h{k}_i = tanh(W{k}_ij h{k - 1}_j)" for k in range(2, depth + 1)]
    return "\n".join(lines + [f"loss = h{depth}_i h{depth}_i"])


def build_times(depths: list[int], width: int = 4) -> None:
    """Compile + first call of a chain by its depth (issue 12 asks for linear growth, 200
    layers within 0.25 s): seconds, and the growth against the shallowest, beside the
    growth a linear cost would show."""
    print("\ncompile + first call of a tanh chain (width 4), by depth")
    print(f"  {'depth':>6} {'seconds':>9} {'growth':>8} {'linear':>8}")
    rng = np.random.default_rng(0)
    first = None
    for depth in depths:
        arrays = {"x": rng.standard_normal(width)}
        arrays.update({f"W{k}": rng.standard_normal((width, width)) / 2 for k in range(1, depth + 1)})
        begun = time.perf_counter()
        ic.compile(chain(depth, width), wrt=[f"W{k}" for k in range(1, depth + 1)])(arrays)
        seconds = time.perf_counter() - begun
        first = first or seconds
        print(f"  {depth:>6} {seconds:>9.3f} {seconds / first:>7.1f}× {depth / depths[0]:>7.1f}×")


if __name__ == "__main__":
    main()
