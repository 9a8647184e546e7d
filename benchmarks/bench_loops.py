#!/usr/bin/env python
"""The explicit-loop reference against einsum, and against its first, scalar form.

    python benchmarks/bench_loops.py            # about a minute here
    python benchmarks/bench_loops.py --quick    # smaller sizes, old loops only where quick

One table: for each case, `ic.evaluate` (einsum), `ic.evaluate_loops` (the vectorised
reference), the first scalar form of the reference (`scalar_loops`, kept in
tests/test_loops.py; run only where its work, entries times summed values, is small
enough), `evaluate_loops_at` on 200 sampled entries, and the ratios. Each result is
checked against einsum before it is timed. Times are medians over rounds (one round for
anything over a second); BLAS runs on one thread, as in bench_gradients.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import indexcalc as ic  # noqa: E402
from indexcalc.loops import evaluate_loops_at  # noqa: E402
from test_loops import scalar_loops  # noqa: E402

SCALAR_WORK_LIMIT = 3e5  # entries times summed values; the scalar loops take ~3 µs for each


def cases(quick: bool):
    """(name, source, arrays, work) with work = entries × values of the summed indices."""
    rng = np.random.default_rng(0)
    for n in (300, 1000) if quick else (300, 1000, 3000):
        yield f"matvec {n}²", "y_i = w_ij x_j", {"w": rng.normal(size=(n, n)), "x": rng.normal(size=n)}, n * n
    for n in (30, 100) if quick else (30, 100, 300):
        yield f"matmul {n}³", "y_ik = w_ij v_jk", {"w": rng.normal(size=(n, n)), "v": rng.normal(size=(n, n))}, n**3
    for n, d in ((32, 64), (256, 256)) if quick else ((32, 64), (256, 256), (1024, 512)):
        arrays = {"W": rng.normal(size=(d, d)) / d**0.5, "x": rng.normal(size=(n, d)), "b": rng.normal(size=d)}
        yield f"layer n={n} d={d}", "h_ni = tanh(W_ij x_nj + b_i)", arrays, n * d * d
    yield from fizzbuzz_gradients(32 if quick else 128)


def fizzbuzz_gradients(samples: int):
    """The gradient by W1 of the Fizz Buzz model file, chain form and inlined, simplified."""
    from indexcalc.datasets import load as load_data
    from indexcalc.modelfile import load

    mf = load(os.path.join(os.path.dirname(ic.__file__), "examples", "fizzbuzz.ic"))
    train, _ = load_data(mf.dataset, list(mf.model.data), mf.seed, mf.folder)
    arrays = {**{k: np.asarray(v)[:samples] for k, v in train.items()}, **mf.model.init_params(mf.seed)}
    chain = ic.simplify(ic.diff(mf.model.program, "W1", of=mf.model.loss))
    inline = ic.diff(mf.model.program, "W1", of=mf.model.loss, inline=True)
    # the chain form enumerates h_{ni,(gh)}: samples × 100 × 1000 entries, 10 values of j each
    yield f"fizzbuzz dW1 chain n={samples}", chain, arrays, samples * 100 * 1000 * 10
    yield f"fizzbuzz dW1 inline n={samples}", inline, arrays, samples * 1000 * 4 * 100


def timed(call, rounds: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - start)
        if times[-1] > 1.0:
            break
    return float(np.median(times)), value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per contender (default 5)")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}, BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, rounds {args.rounds}")
    head = f"{'case':<30}{'einsum':>10}{'loops':>10}{'×einsum':>9}{'scalar':>10}{'×loops':>8}{'200 at':>10}"
    print(head)
    print("-" * len(head))
    for name, source, arrays, work in cases(args.quick):
        t_einsum, expected = timed(lambda: ic.evaluate(source, arrays), args.rounds)
        t_loops, got = timed(lambda: ic.evaluate_loops(source, arrays), args.rounds)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=name)
        t_at, sample = timed(lambda: evaluate_loops_at(source, arrays, 200), args.rounds)
        np.testing.assert_allclose(sample.values, np.asarray(expected)[tuple(sample.positions.T)], rtol=1e-9, atol=1e-9)
        scalar = ratio = "-"
        if work <= SCALAR_WORK_LIMIT:
            t_scalar, old = timed(lambda: scalar_loops(source, arrays), 1)
            np.testing.assert_allclose(old, expected, rtol=1e-9, atol=1e-9, err_msg=name)
            scalar, ratio = f"{t_scalar:.3f}", f"{t_scalar / t_loops:.0f}"
        print(f"{name:<30}{t_einsum:>10.4f}{t_loops:>10.4f}{t_loops / t_einsum:>9.1f}{scalar:>10}{ratio:>8}{t_at:>10.4f}",
              flush=True)
    print("times in seconds (medians); ×einsum = loops / einsum; ×loops = scalar / loops; "
          "'200 at' = evaluate_loops_at on 200 random entries (earlier lines of a program whole)")


if __name__ == "__main__":
    main()
