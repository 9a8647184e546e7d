#!/usr/bin/env python
"""A gradient penalty, the case backpropagation by hand is hardest at: the loss reads each
sample's input gradient, so its parameter gradients are second derivatives.

    python benchmarks/bench_per_sample.py            # full
    python benchmarks/bench_per_sample.py --quick    # fewer rounds

The model, written per sample as a model file writes it (a critic D, a penalty on
‖∂D/∂x‖ as WGAN-GP's):

    h_i = tanh(W_ij x_j + b_i)
    D = v_i h_i
    g_j = D_{,(j)}[x]
    loss = (D - y)^2 + 0.1 (sqrt(g_j g_j) - 1)^2

`Model.loss_and_grads` (the batched plan: the input gradient over the whole batch in one
reverse pass, then the parameters' gradients through it) against the same loss and
gradients by hand in NumPy (the baseline: the double backpropagation written out, below)
and jax.jit of `value_and_grad` over a vmapped `grad` where JAX is installed. Every result
is checked against the NumPy one before it is timed; each round times every contender,
the order rotating, and a row's ratio is the median of the per-round ratios. One BLAS
thread, the process on one core where the OS allows.
"""

from __future__ import annotations

import argparse
import statistics
import time

from blas_env import single_threaded  # imports no NumPy

single_threaded()

import numpy as np  # noqa: E402

import indexcalc as ic  # noqa: E402

PENALTY = 0.1
MODEL = f"""h_i = tanh(W_ij x_j + b_i)
D = v_i h_i
g_j = D_{{,(j)}}[x]
loss = (D - y)^2 + {PENALTY} (sqrt(g_j g_j) - 1)^2"""
SIZES = [(64, 16, 64), (512, 32, 128), (2048, 64, 256)]  # samples, inputs, hidden units


def by_hand(W, b, v, x, y):
    """The loss and its gradients, the double backpropagation written out: forward to the
    input gradient g = (v ⊙ (1 − h²)) W, then back through it and through D."""
    n = len(x)
    h = np.tanh(x @ W.T + b)
    a = 1.0 - h * h
    u = a * v
    g = u @ W
    r = np.sqrt(np.einsum("nj,nj->n", g, g))
    d = h @ v
    loss = np.mean((d - y) ** 2 + PENALTY * (r - 1.0) ** 2)
    dd = 2.0 * (d - y) / n
    dg = (2.0 * PENALTY / n) * ((r - 1.0) / r)[:, None] * g
    du = dg @ W.T
    dh = dd[:, None] * v - 2.0 * h * du * v
    dz = dh * a
    dW = dz.T @ x + u.T @ dg
    return loss, {"W": dW, "b": dz.sum(0), "v": h.T @ dd + np.einsum("ni,ni->i", du, a)}


def with_jax():
    """jax.jit of the same loss's value and gradients, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def critic(p, x):
        return jnp.tanh(p["W"] @ x + p["b"]) @ p["v"]

    def loss(p, x, y):
        g = jax.vmap(jax.grad(critic, argnums=1), in_axes=(None, 0))(p, x)
        d = jax.vmap(critic, in_axes=(None, 0))(p, x)
        return jnp.mean((d - y) ** 2 + PENALTY * (jnp.sqrt(jnp.sum(g * g, axis=1)) - 1.0) ** 2)

    step = jax.jit(jax.value_and_grad(loss))

    def run(W, b, v, x, y):
        value, grads = step({"W": W, "b": b, "v": v}, x, y)
        value.block_until_ready()
        return value, grads

    return run


def timed(run, args, seconds: float) -> float:
    """Seconds per call, over as many calls as fit in about `seconds`."""
    calls, begun = 0, time.perf_counter()
    while True:
        run(*args)
        calls += 1
        spent = time.perf_counter() - begun
        if spent >= seconds:
            return spent / calls


def agree(name: str, got, want) -> None:
    value, grads = got
    assert np.isclose(float(value), float(want[0]), rtol=1e-10), (name, value, want[0])
    for k, g in want[1].items():
        np.testing.assert_allclose(np.asarray(grads[k]), g, rtol=1e-8, atol=1e-12, err_msg=f"{name}: {k}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds of 0.05 s a contender, not 15 of 0.2 s")
    args = parser.parse_args()
    rounds, seconds = (5, 0.05) if args.quick else (15, 0.2)
    jax_run = with_jax()
    print(f"gradient penalty: loss and gradients, {rounds} rounds; ratio = time / NumPy by hand's, median "
          f"(min–max) over rounds")
    print(f"{'samples × inputs × hidden':>26}  {'NumPy by hand':>13}  {'indexcalc':>18}  {'jax.jit':>18}")
    for n, d, k in SIZES:
        rng = np.random.default_rng(0)
        W, b, v = rng.normal(size=(k, d)) / np.sqrt(d), rng.normal(size=k) * 0.1, rng.normal(size=k) / np.sqrt(k)
        x, y = rng.normal(size=(n, d)), rng.normal(size=n)
        model = ic.Model(MODEL, params={"W": (k, d), "b": k, "v": k}, data=["x", "y"])
        ours = lambda W, b, v, x, y: model.loss_and_grads({"W": W, "b": b, "v": v}, {"x": x, "y": y})  # noqa: E731
        contenders = {"hand": by_hand, "indexcalc": ours, **({"jax": jax_run} if jax_run else {})}
        want = by_hand(W, b, v, x, y)
        for name, run in contenders.items():
            agree(name, run(W, b, v, x, y), want)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(rounds):
            names = list(contenders)
            for name in names[r % len(names):] + names[: r % len(names)]:
                times[name].append(timed(contenders[name], (W, b, v, x, y), seconds))
        ratios = {name: [t / h for t, h in zip(times[name], times["hand"])] for name in contenders}

        def cell(name: str) -> str:
            if name not in ratios:
                return "not installed"
            rs = ratios[name]
            return f"{statistics.median(rs):.2f}× ({min(rs):.2f}–{max(rs):.2f})"

        hand = statistics.median(times["hand"]) * 1e6
        print(f"{f'{n} × {d} × {k}':>26}  {hand:>10.0f} µs  {cell('indexcalc'):>18}  {cell('jax'):>18}")


if __name__ == "__main__":
    main()
