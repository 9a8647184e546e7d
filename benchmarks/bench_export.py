#!/usr/bin/env python
"""The exported NumPy module against the compiled plan it came from (issue 11's export
target: "the exported NumPy module runs at the compiled plan's speed (same code)").

    python benchmarks/bench_export.py            # about 20 s here
    python benchmarks/bench_export.py --quick    # a few seconds

For bench_gradients.py's tiny and small MLP cells (sigmoid layers, mean squared error),
float64 and float32: the compiled plan's call `f(arrays)` and the exported module's
`loss_and_grads(arrays)` (written by `f.source()` to a file and imported from it, as a
user would), both checked equal first, then timed in alternating rounds (a batch of calls
each, the order swapped every round). The table gives the median time per call and the
ratio exported / compiled. Single-threaded BLAS (set before NumPy loads).
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import importlib.util  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import indexcalc as ic  # noqa: E402
from bench_gradients import MLPS, mlp_arrays, mlp_program  # noqa: E402


def exported(f, arrays, folder: str, name: str):
    """The module `f.source()` writes, imported from a file: its function."""
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f.source("numpy", arrays))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.loss_and_grads


def per_call(run, arrays, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run(arrays)
    return (time.perf_counter() - start) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds")
    args = p.parse_args()
    rounds, budget = (5, 0.02) if args.quick else (25, 0.1)  # rounds; seconds per batch of calls
    print(f"indexcalc {ic.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}, "
          f"{rounds} rounds, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', '?')}")
    print(f"{'cell':<8} {'dtype':<8} {'compiled plan':>14} {'exported':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for cell, sizes, batch in [m for m in MLPS if m[0] in ("tiny", "small")]:
            for dtype in (np.float64, np.float32):
                arrays = mlp_arrays(sizes, batch, dtype)
                f = ic.compile(mlp_program(sizes), wrt=[k for k in arrays if k[0] in "Wb"])
                g = exported(f, arrays, folder, f"{cell}_{np.dtype(dtype).name}")
                (value, grads), (value2, grads2) = f(arrays), g(arrays)
                assert value == value2 and all(np.array_equal(grads[k], grads2[k]) for k in grads), cell
                calls = max(1, int(budget / per_call(f, arrays, 20)))
                times = {"compiled": [], "exported": []}
                for r in range(rounds):
                    order = [("compiled", f), ("exported", g)]
                    for label, run in order if r % 2 == 0 else order[::-1]:
                        times[label].append(per_call(run, arrays, calls))
                a, b = statistics.median(times["compiled"]), statistics.median(times["exported"])
                print(f"{cell:<8} {np.dtype(dtype).name:<8} {a * 1e6:>11.1f} µs {b * 1e6:>7.1f} µs {b / a:>6.2f}")


if __name__ == "__main__":
    main()
