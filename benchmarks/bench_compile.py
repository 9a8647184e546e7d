#!/usr/bin/env python
"""Time to a compiled gradient and Hessian: indexcalc's `compile` (parse, differentiate,
simplify, plan) against JAX's first call of `jax.jit(jax.value_and_grad(f))` and
`jax.jit(jax.hessian(f))` (trace, compile, run once), on the twenty textbook layers of
tests/test_against_jax.py and the soak's slowest find, a loss after two SGD steps through
a matrix inverse, whose Hessian needs the inverse's fourth derivative.

    python benchmarks/bench_compile.py              # about 2 minutes here
    python benchmarks/bench_compile.py --repeat 3   # the best of three of each

Compiling is what a user waits for between editing a layer and training it, and what the
route soak spends most of its time on (compile of the Hessian, ~47%). Each time is a fresh
compile in one process (the best of --repeat); JAX's column is left empty without JAX
(`pip install "indexcalc[jax]"`). Needs the test extra: the layers are the tests'.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import numpy as np  # noqa: E402

import indexcalc as ic  # noqa: E402

TWO_STEPS_TEXT = """B_rk = inv_rk(v1_uk1 v1_nk1 + 2 delta_un)
loss = sum_kj(softplus(B_kj))
v1_new_mi = v1_mi - v2 loss_{,(mi)}[v1]
L = v1_new_mi v1_new_mi
loss2 = softplus(L)
v1_new2_js = v1_js - v3 loss2_{,(js)}[v1]
L2 = v1_new2_js v1_new2_js"""


def layers() -> tuple[dict, object]:
    """The layers by label, and jax (None when it is not installed: then the tests' module,
    which writes each layer a second time in jax.numpy, cannot load, and only the soak's
    case is timed, on indexcalc alone)."""
    try:
        import test_against_jax as tests
    except BaseException:  # noqa: BLE001 - pytest.importorskip raises Skipped, a BaseException
        return {}, None
    cases = dict(tests.LAYERS)
    jnp, jax = tests.jnp, tests.jax

    def two_steps(a):
        def loss(v):
            return jnp.sum(jax.nn.softplus(jnp.linalg.inv(v @ v.T + 2 * jnp.eye(v.shape[0]))))

        def loss2(v):
            return jax.nn.softplus(jnp.sum((v - a["v2"] * jax.grad(loss)(v)) ** 2))

        return jnp.sum((a["v1"] - a["v3"] * jax.grad(loss2)(a["v1"])) ** 2)

    cases["two SGD steps through an inverse (soak)"] = tests.Layer(
        TWO_STEPS_TEXT, two_steps, {"v1": (1, 2), "v2": (), "v3": ()}, ("v1",), positive=("v2", "v3"))
    return cases, (tests, jax)


def best(run, repeat: int) -> tuple[float, object]:
    """The shortest of `repeat` runs, and what the last returned."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="compile each this many times, keep the best")
    p.add_argument("--only", default="", help="the layers whose label contains this text")
    args = p.parse_args()
    cases, peer = layers()
    if peer is None:
        print("JAX or the test extra is missing: pip install \".[test,jax]\" to time the layers against JAX")
        return
    tests, jax = peer
    print(f"{'layer':42s} {'gradient: ic':>12s} {'jax':>7s} {'ic/jax':>7s}   {'Hessian: ic':>11s} {'jax':>7s} {'ic/jax':>7s}")
    totals = [0.0, 0.0, 0.0, 0.0]
    for label, layer in cases.items():
        if args.only not in label:
            continue
        name = layer.wrt[0]
        arrays = tests.arrays_of(layer)
        as_jax = tests.on_jax(arrays)
        first = tests.wrt_text(layer, name)
        second = tests.wrt_text(layer, name, skip=len(layer.shapes[name]))

        def by_hand(v, layer=layer, as_jax=as_jax, name=name):
            return layer.by_hand({**as_jax, name: v})

        ic_grad, (_, grads) = best(lambda: ic.compile(layer.text, wrt=[name])(arrays), args.repeat)
        ic_hess, (hessian, _) = best(lambda: ic.compile(ic.diff(ic.diff(layer.text, first), second))(arrays),
                                     args.repeat)
        jax_grad, (_, want) = best(lambda: jax.block_until_ready(jax.jit(jax.value_and_grad(by_hand))(as_jax[name])),
                                   args.repeat)
        jax_hess, want_hessian = best(lambda: jax.block_until_ready(jax.jit(jax.hessian(by_hand))(as_jax[name])),
                                      args.repeat)
        # timed only where both give the same numbers
        np.testing.assert_allclose(grads[name], want, rtol=1e-8, atol=1e-10, err_msg=f"{label}: gradient")
        np.testing.assert_allclose(hessian, want_hessian, rtol=1e-8, atol=1e-10, err_msg=f"{label}: Hessian")
        for k, t in enumerate((ic_grad, jax_grad, ic_hess, jax_hess)):
            totals[k] += t
        print(f"{label[:42]:42s} {ic_grad:11.3f}s {jax_grad:6.3f}s {ic_grad / jax_grad:7.2f}   "
              f"{ic_hess:10.3f}s {jax_hess:6.3f}s {ic_hess / jax_hess:7.2f}", flush=True)
    print(f"{'all':42s} {totals[0]:11.3f}s {totals[1]:6.3f}s {totals[0] / totals[1]:7.2f}   "
          f"{totals[2]:10.3f}s {totals[3]:6.3f}s {totals[2] / totals[3]:7.2f}")


if __name__ == "__main__":
    main()
