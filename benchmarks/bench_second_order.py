#!/usr/bin/env python
"""Iterations and time to a gradient norm of 1e-8 on examples/logistic_newton.ic (logistic
regression, mean loss plus 0.005 |w|², 256 samples): Newton with the derived Hessian,
Newton by conjugate gradients (Hessian–vector products), L-BFGS (SciPy) and Adam, all
full-batch, from the file's start (w = 0).

    python benchmarks/bench_second_order.py [--adam-epochs N]

Each optimiser runs once with a metric that records the gradient's norm after every epoch,
to find the first epoch below the tolerance; then once more, without the metric, for
exactly that many epochs, timed twice: cold (a fresh model, its plans compiled in the run;
Newton's Hessian plans cost most of its cold time) and warm (the same objects again).
Times are one run on a shared machine, with one BLAS thread: read them as ratios to
Newton's, printed beside.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from blas_env import set_blas_threads  # noqa: E402  (imports no NumPy)

set_blas_threads(1)  # before NumPy loads its BLAS: SciPy's L-BFGS-B crawls with threads on a busy machine

import numpy as np  # noqa: E402

ROOT = Path(__file__).absolute().parents[1]
sys.path.insert(0, str(ROOT))
import indexcalc as ic  # noqa: E402
from indexcalc.modelfile import load  # noqa: E402
from indexcalc.optimisers import Adam  # noqa: E402
from indexcalc.train import Trainer  # noqa: E402

TOL = 1e-8


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adam-epochs", type=int, default=3000)
    args = parser.parse_args(argv)
    contenders = {
        "newton": (lambda: ic.Newton(), 20),
        "newton (CG, HVPs)": (lambda: ic.Newton(dense_up_to=1), 20),
        "lbfgs": (lambda: ic.LBFGS(tol=1e-12), 200),
        "adam lr=0.1": (lambda: Adam(0.1), args.adam_epochs),
    }
    rows = []
    for name, (make, cap) in contenders.items():
        mf = load(str(ROOT / "examples" / "logistic_newton.ic"))
        data = mf.load_data(mf.seed).train
        norms: list[float] = []

        def norm(model, params, batch):
            _, grads = model.loss_and_grads(params, batch)
            norms.append(float(np.linalg.norm(np.concatenate([np.ravel(g) for g in grads.values()]))))
            return norms[-1]

        Trainer(mf.model, make(), metric=norm).fit(data, cap)
        norms = norms[1:]  # the first is the loop's check on one sample, before the first epoch
        reached = next((i + 1 for i, n in enumerate(norms) if n < TOL), None)
        if reached is None:
            rows.append((name, None, None, min(norms, default=float("nan"))))
            continue
        fresh, optimiser = load(str(ROOT / "examples" / "logistic_newton.ic")), make()
        times = []
        for _ in range(2):  # cold (the plans compiled), then warm (the same model and optimiser)
            begun = time.perf_counter()
            Trainer(fresh.model, optimiser).fit(data, reached)
            times.append(time.perf_counter() - begun)
        rows.append((name, reached, times, norms[reached - 1]))
    cold, warm = rows[0][2]
    print(f"{'optimiser':20} {'epochs to |g|<1e-8':>19} {'cold s':>8} {'ratio':>7} {'warm s':>8} {'ratio':>7}  |g| there")
    for name, epochs, times, g in rows:
        if epochs is None:
            print(f"{name:20} {'not reached':>19}  best |g| {g:.2e}")
        else:
            print(f"{name:20} {epochs:>19} {times[0]:>8.4f} {times[0] / cold:>6.2f}x {times[1]:>8.4f} "
                  f"{times[1] / warm:>6.2f}x  {g:.2e}")


if __name__ == "__main__":
    main()
