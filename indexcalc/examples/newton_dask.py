#!/usr/bin/env python
"""Full-batch Newton's method for logistic regression on data bigger than memory, with dask.

    python examples/newton_dask.py [--rows N] [--chunk C] [--memory-mb M] [--features D]
                                   [--seed S] [--scheduler threads|synchronous]

The model is written in index notation, as the notes write it: p_n = σ(X_nj w_j) and the
negative of the summed log-likelihood. Its gradient comes from `ic.compile(program,
wrt=["w"])` and its Hessian from `ic.compile(ic.diff(ic.diff(program, "w_g"), "w_h"))`;
both run on dask arrays chunked along the samples n, so every sum over n is a tree
reduction over the chunks and nothing larger than a chunk is ever held. The data are
made block by block by `da.map_blocks`, each block from its own seed, whenever a pass
needs them, and dropped after: no array of all the rows exists, in memory or on disk.

Each Newton step solves the small d×d system H Δ = -g in NumPy; a step that does not
lower the loss enough (Armijo's condition) is halved, which is the damping. The loss,
gradient and Hessian at a point are one `dask.compute`, one pass over the data.

Per pass it prints the loss, the gradient's norm relative to the first pass's, and the
peak memory the pass allocated (tracemalloc, which sees NumPy's buffers), and at the end
whether that peak stayed under --memory-mb. In a program of your own, `compile_model`
and `newton` run on whatever scheduler dask is set to: with a `dask.distributed` Client,
on its workers.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # dask's threads are the parallelism here: one BLAS thread each, set before NumPy loads
    # its BLAS. Two dask threads each driving OpenBLAS's own threads oversubscribe the
    # cores, and OpenBLAS's waiting threads spin: a pass of 200,000 rows took 5 s so on a
    # shared 2-core machine, 0.2 s with one BLAS thread. Set the variables to override.
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import argparse
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# this checkout's indexcalc, when run from one (examples/ is a link to indexcalc/examples/)
ROOT = next((p for p in Path(__file__).absolute().parents if (p / "indexcalc" / "__init__.py").exists()), None)
if ROOT is not None:
    sys.path.insert(0, str(ROOT))
import indexcalc as ic  # noqa: E402

PROGRAM = """
z_n = X_nj w_j
p_n = σ(z_n)
L = -sum_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))
"""


def make_data(rows: int, features: int, chunk: int, seed: int = 0):
    """X (rows × features, the first column 1: the intercept) and labels y in {0, 1}
    drawn from the model with known weights, as dask arrays of `chunk` rows a block.
    Nothing is drawn here: a block is made, from the seed and its block number, when a
    computation needs it. Returns X, y and the true weights."""
    import dask.array as da

    truth = np.random.default_rng(seed).normal(size=features) * (2.0 / np.sqrt(features))

    def block(block_info=None):
        info = block_info[None]
        (start, stop), _ = info["array-location"]
        rng = np.random.default_rng([seed, info["chunk-location"][0]])
        out = np.empty((stop - start, features + 1))
        out[:, 0] = 1.0
        out[:, 1:features] = rng.standard_normal((stop - start, features - 1))
        p = 1.0 / (1.0 + np.exp(-(out[:, :features] @ truth)))
        out[:, features] = rng.random(stop - start) < p
        return out

    sizes = (chunk,) * (rows // chunk) + ((rows % chunk,) if rows % chunk else ())
    data = da.map_blocks(block, chunks=(sizes, (features + 1,)), dtype=np.float64, meta=np.empty((0, 0)))
    return data[:, :features], data[:, features], truth


def compile_model(program: str = PROGRAM, backend: str | None = "dask"):
    """The loss and its gradient by w, and the Hessian, as compiled plans (on dask
    arrays, whatever they are given: w is a NumPy array, and goes over)."""
    parsed = ic.parse(program)
    gradient = ic.compile(parsed, wrt=["w"], backend=backend)
    hessian = ic.compile(ic.diff(ic.diff(parsed, "w_g"), "w_h"), backend=backend)
    return gradient, hessian


@dataclass
class Pass:
    """One pass over the data: where, and what it found."""

    w: np.ndarray
    loss: float
    grad: np.ndarray
    relative: float
    step: float  # the fraction of the Newton step that led here (1: the full step)
    peak: int  # bytes allocated at once during the pass, at the peak (tracemalloc; 0 if not traced)
    seconds: float
    accepted: bool = True


@dataclass
class Result:
    w: np.ndarray
    passes: list[Pass] = field(default_factory=list)
    tol: float = 1e-8

    @property
    def converged(self) -> bool:
        return bool(self.passes) and self.passes[-1].accepted and self.passes[-1].relative < self.tol

    @property
    def steps(self) -> int:
        """Newton steps taken: each pass but the first followed one (full or damped)."""
        return len(self.passes) - 1

    @property
    def peak(self) -> int:
        return max((p.peak for p in self.passes), default=0)


def evaluate(gradient, hessian, X, y, w: np.ndarray):
    """The loss, gradient and Hessian at w, in one dask computation (one pass over X)."""
    import dask

    arrays = {"X": X, "y": y, "w": w}
    loss, grads = gradient(arrays)
    H, _ = hessian(arrays)
    loss, g, H = dask.compute(loss, grads["w"], H)
    return float(loss), np.asarray(g), np.asarray(H)


def newton(gradient, hessian, X, y, w0: np.ndarray, *, tol: float = 1e-8, max_passes: int = 11,
           trace: int = 0, report=None) -> Result:
    """Damped Newton from w0 until the gradient's norm is below `tol` times the first
    pass's. A step is taken whole where it lowers the loss by Armijo's condition and
    halved until it does; each trial is one pass. Stops after `max_passes` passes, or at
    once where the start's loss is not finite (the notes' log(p) and log(1 - p) are
    -inf where σ rounds to 0 or 1, far from the optimum). The
    first `trace` passes record their peak allocation (tracemalloc; it slows dask's
    scheduler two- to threefold, so a caller who needs one pass's figure traces one)."""
    w = np.array(w0, dtype=np.float64)
    result = Result(w, tol=tol)
    base = None  # the last accepted pass and the Newton direction from it
    t = 1.0
    while len(result.passes) < max_passes:
        traced = len(result.passes) < trace
        started = traced and not tracemalloc.is_tracing()  # else: the caller's trace, left running
        if started:
            tracemalloc.start()
        if traced:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        try:
            loss, g, H = evaluate(gradient, hessian, X, y, w)
            peak = tracemalloc.get_traced_memory()[1] - before if traced else 0
        finally:
            if started:
                tracemalloc.stop()
        seconds = time.perf_counter() - start
        scale = np.linalg.norm(g) if not result.passes else np.linalg.norm(result.passes[0].grad)
        now = Pass(w, loss, g, float(np.linalg.norm(g) / scale) if scale else 0.0, t, peak, seconds)
        if base is not None and not loss <= base[0].loss + 1e-4 * t * float(base[0].grad @ base[1]):
            now.accepted = False
            result.passes.append(now)
            if report:
                report(len(result.passes), now)
            t /= 2
            w = base[0].w + t * base[1]
            continue
        result.passes.append(now)
        result.w = w
        if report:
            report(len(result.passes), now)
        if now.relative < tol or not (np.isfinite(loss) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            break  # there, or a start where σ rounds to 0 or 1 (log(0) in the loss): no step from it can be judged
        try:
            direction = np.linalg.solve(H, -g)
        except np.linalg.LinAlgError:  # a singular Hessian (a constant feature): the least-squares step
            direction = np.linalg.lstsq(H, -g, rcond=None)[0]
        base, t = (now, direction), 1.0
        w = w + direction
    return result


def megabytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="samples (default 1,000,000)")
    p.add_argument("--features", type=int, default=20, help="features d, the intercept included (default 20)")
    p.add_argument("--chunk", type=int, default=20_000, help="rows per block (default 20,000)")
    p.add_argument("--memory-mb", type=float, default=32, help="the memory in MB a pass may allocate (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=("threads", "synchronous"), default="threads",
                   help="dask's scheduler (default: threads)")
    args = p.parse_args(argv)
    if args.rows < 1 or args.chunk < 1 or args.features < 2:
        p.error("--rows and --chunk must be at least 1, --features at least 2")

    import dask

    X, y, truth = make_data(args.rows, args.features, args.chunk, args.seed)
    gradient, hessian = compile_model()
    size = args.rows * (args.features + 1) * 8
    limit = args.memory_mb * 2**20
    print(f"data      : {args.rows:,} rows x {args.features} features + labels = {megabytes(size)} as one array "
          f"({size / limit:.1f}x the {megabytes(limit)} limit), never made: {X.numblocks[0]} blocks of "
          f"{megabytes(min(args.chunk, args.rows) * (args.features + 1) * 8)}, each made when a pass reads it")
    print(f"model     : {PROGRAM.strip().replace(chr(10), '; ')}")
    print(f"scheduler : dask {dask.__version__}, {args.scheduler}")
    print()
    print(f"{'pass':>4}  {'loss':>22}  {'|g| / |g0|':>10}  {'step':>6}  {'peak':>10}  {'time':>7}")

    def report(number: int, now: Pass) -> None:
        note = "" if now.accepted else "  (loss not lowered enough: step halved)"
        print(f"{number:>4}  {now.loss:22.12f}  {now.relative:10.2e}  {now.step:6.3g}  "
              f"{megabytes(now.peak):>10}  {now.seconds:6.2f}s{note}")

    with dask.config.set(scheduler=args.scheduler):
        # before the clock and the trace start: the plans, made once per shape (not per
        # pass), and dask's first computation, which imports some 10 MB of its modules
        gradient({"X": X, "y": y, "w": np.zeros(args.features)})
        hessian({"X": X, "y": y, "w": np.zeros(args.features)})
        evaluate(gradient, hessian, *make_data(100, args.features, 50)[:2], np.zeros(args.features))
        start = time.perf_counter()
        result = newton(gradient, hessian, X, y, np.zeros(args.features), trace=11, report=report)
        total = time.perf_counter() - start

    print()
    last = result.passes[-1]
    if result.converged:
        print(f"optimum   : |g| / |g0| = {last.relative:.1e} < 1e-8 after {result.steps} Newton steps "
              f"({len(result.passes)} passes over the data), {total:.1f} s")
    else:
        print(f"NOT CONVERGED: |g| / |g0| = {last.relative:.1e} after {len(result.passes)} passes")
    print(f"weights   : |w - w_true| / |w_true| = {np.linalg.norm(result.w - truth) / np.linalg.norm(truth):.3f} "
          f"(the sampling error of {args.rows:,} rows)")
    within = result.peak < limit
    print(f"memory    : peak allocated in a pass {megabytes(result.peak)} "
          f"({'within' if within else 'OVER'} the {megabytes(limit)} limit; the data is {megabytes(size)}); "
          f"process peak RSS {megabytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)} "
          f"(Python, NumPy and dask themselves included)")
    return 0 if result.converged and within else 1


if __name__ == "__main__":
    sys.exit(main())
