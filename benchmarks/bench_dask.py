#!/usr/bin/env python
"""dask: the compiled plan on chunked arrays against the NumPy plan; one table.

    python benchmarks/bench_dask.py            # about four minutes here (load average 6 on 2 cores)
    python benchmarks/bench_dask.py --quick    # under a minute: smaller data, fewer rounds

Rows (see benchmarks/README.md):
  1. Data that fits (float64, in memory): the logistic regression of
     examples/newton_dask.py, its loss and gradient by w (`ic.compile(p, wrt=["w"])`),
     its Hessian (`ic.compile(ic.diff(ic.diff(p, "w_g"), "w_h"))`), and both, as a Newton
     pass needs them. The NumPy plan on the NumPy arrays is the baseline; the dask route
     (`backend="dask"`) on the same arrays as `da.from_array` chunks along the samples,
     graph building and `dask.compute` included, on the threaded scheduler (both cores)
     and the synchronous one (one), with 4 and 16 chunks. Issue 11's target: ≤ 1.5x. The
     loss is a sum over the samples of per-row terms, so the route is block by block (the
     NumPy plan on each block as one task, dask's tree sum of the blocks' results); beside
     it, the plan's steps on dask arrays, the route of a program that reads across rows.
  2. Data that does not fit the limit: one pass (loss, gradient and Hessian in one
     `dask.compute`) over data made block by block (`newton_dask.make_data`, never one
     array), 5x the memory limit: the peak allocated during the pass (tracemalloc, which
     sees NumPy's buffers; a separate traced pass, since tracing slows dask's scheduler)
     against the limit, and the time per pass untraced. Beside it, the NumPy plan on the
     same data materialised: its peak (the data included) and time.

Timing is bench_gradients.py's (contenders alternate in rounds, medians, ratios to the
baseline, IQR, best round; one BLAS thread by default). Every dask result is checked
against the NumPy plan's before it is timed.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller out-of-core data")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--plans", action="store_true", help="print the dask plans after the table")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    from blas_env import set_blas_threads

    set_blas_threads(ARGS.threads)  # before NumPy loads its BLAS

import contextlib  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).absolute().parent
sys.path[:0] = [str(HERE.parent), str(HERE), str(HERE.parent / "examples")]  # this checkout's indexcalc
import bench_gradients as bg  # noqa: E402
from bench_gradients import Contender, Row, add_timed, time_interleaved  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import newton_dask  # noqa: E402

from indexcalc.backends import dask_backend  # noqa: E402


@contextlib.contextmanager
def plan_steps():
    """dask's own route (block by block) off for a while: a program that reads across rows
    takes the plan's steps, and this times that route on the same program."""
    route = dask_backend.DaskBackend.own_route
    dask_backend.DaskBackend.own_route = lambda self, compiled, arrays: None
    try:
        yield
    finally:
        dask_backend.DaskBackend.own_route = route


def numpy_and_dask():
    """The gradient and Hessian plans, NumPy's and dask's."""
    return newton_dask.compile_model(backend=None), newton_dask.compile_model(backend="dask")


def check(what: str, got, expected) -> None:
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-9, err_msg=what)


# ============================================================================ 1. data that fits


def traced_peak(fn) -> int:
    """Bytes allocated at once, at the peak, while fn runs (tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_in_memory(timing, quick: bool) -> None:
    rows, d = (200_000, 20) if quick else (1_000_000, 20)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, d))
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-X @ (rng.normal(size=d) / np.sqrt(d))))) * 1.0
    w = rng.normal(size=d) * 0.1
    (grad_np, hess_np), (grad_da, hess_da) = numpy_and_dask()
    given = {"X": X, "y": y, "w": w}

    def numpy_gradient(arrays=given):
        value, grads = grad_np(arrays)
        return value, grads["w"]

    def numpy_hessian(arrays=given):
        return (hess_np(arrays)[0],)

    def numpy_both(arrays=given):
        return numpy_gradient(arrays) + numpy_hessian(arrays)

    for chunks in (4, 16):
        lazy = {"X": da.from_array(X, chunks=(-(-rows // chunks), d)), "y": da.from_array(y, chunks=-(-rows // chunks)),
                "w": w}

        def dask_gradient():
            value, grads = grad_da(lazy)
            return value, grads["w"]

        def dask_hessian():
            return (hess_da(lazy)[0],)

        def dask_both():
            return dask_gradient() + dask_hessian()

        def steps(fn):
            """The same call with the backend's own route off: the plan's steps on dask
            arrays, the route of a program that reads across rows."""
            def run():
                with plan_steps():
                    return fn()
            return run

        size = f"n={rows:,} d={d}, {chunks} chunks"
        for case, reference, lazy_fn in (("gradient", numpy_gradient, dask_gradient),
                                         ("Hessian", numpy_hessian, dask_hessian),
                                         ("gradient + Hessian", numpy_both, dask_both)):
            def on(scheduler, fn=lazy_fn):
                def run():
                    with dask.config.set(scheduler=scheduler):
                        return dask.compute(*fn())
                return run

            contenders = [Contender("indexcalc, NumPy plan", reference, baseline=True),
                          Contender("indexcalc, dask (block by block), threads", on("threads")),
                          Contender("indexcalc, dask (block by block), synchronous", on("synchronous")),
                          Contender("indexcalc, dask plan's steps, threads", steps(on("threads"))),
                          Contender("indexcalc, dask plan's steps, synchronous", steps(on("synchronous")))]
            expected = reference()
            for c in contenders[1:]:
                check(f"{case} {size} {c.name}", c.fn(), expected)
            time_interleaved(contenders, *timing)
            build, steps_build = median_seconds(lazy_fn, 5), median_seconds(steps(lazy_fn), 5)
            notes = {c.name: f"of which {build * 1e3:.1f} ms building the graph" for c in contenders[1:3]}
            notes.update({c.name: f"of which {steps_build * 1e3:.0f} ms building the graph" for c in contenders[3:]})
            add_timed("1", f"logistic {case}, {size}", "float64", contenders, notes, flag_over=1.5)
            sys.stdout.write(".")
            sys.stdout.flush()
    bg.PLANS.extend([("dask gradient", grad_da), ("dask Hessian", hess_da)])


# ============================================================================ 2. out of core


def bench_out_of_core(quick: bool) -> None:
    rows, d, chunk, limit_mb = (500_000, 20, 10_000, 16) if quick else (2_000_000, 20, 20_000, 64)
    limit = limit_mb * 2**20
    size = rows * (d + 1) * 8
    X, y, _ = newton_dask.make_data(rows, d, chunk, seed=0)
    (grad_np, hess_np), (grad_da, hess_da) = numpy_and_dask()
    w = np.full(d, 0.05)

    def one_pass():
        return newton_dask.evaluate(grad_da, hess_da, X, y, w)

    case = f"one Newton pass, n={rows:,} d={d}: data {size / 2**20:.0f} MB = {size / limit:.1f}x a {limit_mb} MB limit"
    with dask.config.set(scheduler="threads"):
        small_X, small_y, _ = newton_dask.make_data(100, d, 50)
        newton_dask.evaluate(grad_da, hess_da, small_X, small_y, w)  # dask's first-use imports, outside the trace
        one_pass()  # the plans for these shapes
        peak = traced_peak(one_pass)
        seconds = median_seconds(one_pass, 3 if quick else 5)
        loss, g, H = one_pass()
    bg.ROWS.append(Row("2", case, "float64", "dask, threads, made by blocks", f"{peak / 2**20:8.1f} MB",
                       f"{peak / limit:6.2f}x", "", f"peak allocated in a pass vs the limit; {seconds:.2f} s a pass "
                       f"untraced, {size / 2**20 / seconds:.0f} MB/s, {X.numblocks[0]} blocks of "
                       f"{chunk * (d + 1) * 8 / 2**20:.1f} MB"))
    with dask.config.set(scheduler="synchronous"):
        peak_sync = traced_peak(one_pass)
        seconds_sync = median_seconds(one_pass, 2 if quick else 3)
    bg.ROWS.append(Row("2", case, "float64", "dask, synchronous, made by blocks", f"{peak_sync / 2**20:8.1f} MB",
                       f"{peak_sync / limit:6.2f}x", "", f"{seconds_sync:.2f} s a pass untraced"))

    Xn, yn = dask.compute(X, y)  # the same rows, materialised for the NumPy plan
    given = {"X": np.ascontiguousarray(Xn), "y": np.ascontiguousarray(yn), "w": w}
    del Xn, yn

    def numpy_pass():
        value, grads = grad_np(given)
        return value, grads["w"], hess_np(given)[0]

    check("out-of-core pass vs the NumPy plan", (loss, g, H), numpy_pass())
    numpy_peak = traced_peak(numpy_pass) + size  # the pass's own allocations, and the data it reads
    numpy_seconds = median_seconds(numpy_pass, 3 if quick else 5)
    bg.ROWS.append(Row("2", case, "float64", "NumPy plan, data in memory", f"{numpy_peak / 2**20:8.1f} MB",
                       f"{numpy_peak / limit:6.2f}x", "", f"the data ({size / 2**20:.0f} MB) and the pass's "
                       f"allocations; {numpy_seconds:.2f} s a pass (the data already made)"))


def main(args) -> int:
    started = time.perf_counter()
    note = bg.limit_threads(args.threads)
    timing = (5, 0.2, 10.0) if args.quick else (9, 0.5, 20.0)  # rounds, seconds per batch, per case
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"indexcalc dask benchmark ({'--quick' if args.quick else 'full'} run); NumPy {np.__version__}, "
          f"dask {dask.__version__}, {bg.blas_name()}, {bg.git_revision()}, sources sha1 {bg.SOURCE_HASH}")
    print(f"BLAS: {note}; {os.cpu_count()} CPUs; load average at start {load}; "
          f"medians over rounds, ratio = median / baseline's")
    sys.stdout.flush()
    bench_in_memory(timing, args.quick)
    bench_out_of_core(args.quick)
    print()
    bg.print_table()
    print()
    print("flagged (a dask plan > 1.5x the NumPy plan on data that fits):" + ("" if bg.FLAGS else " none"))
    for line in bg.FLAGS:
        print("  - " + line)
    if args.plans:
        for case, f in bg.PLANS:
            print(f"\n=== plan: {case}\n{f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
