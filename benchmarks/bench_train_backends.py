#!/usr/bin/env python
"""Training on a backend against training on NumPy: wall time per epoch of `Trainer.fit`.

    python benchmarks/bench_train_backends.py                 # xor and fizzbuzz, every installed backend
    python benchmarks/bench_train_backends.py --rounds 5 --backends numpy,torch

For each model file (indexcalc/examples/xor.ic, fizzbuzz.ic: the file's optimiser, batch
size, metric and test set) and each installed backend: one warm-up fit (it plans, and on
jax traces and compiles), then `--rounds` fits, their order rotating over the backends
from round to round; the table gives the median seconds per epoch, the ratio to NumPy's,
and whether the final parameters agree with NumPy's (rtol 1e-6; float64 throughout, JAX
in x64 mode). An epoch is its steps plus the loss and accuracy on train and test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

CASES = [("xor.ic", 30), ("fizzbuzz.ic", 4)]  # (model file, epochs per fit)
from blas_env import BLAS_ENV  # noqa: E402  (imports no NumPy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1: stable timings)")
    parser.add_argument("--backends", default="numpy,jax,torch,dask")
    parser.add_argument("--dask-epochs", type=int, default=2, help="epochs per fit on dask (it is slow on small data)")
    args = parser.parse_args()
    for name in BLAS_ENV:
        os.environ[name] = str(args.threads)
    import numpy as np

    wanted = [b for b in args.backends.split(",") if b == "numpy" or importlib.util.find_spec(b)]
    if "jax" in wanted:
        import jax

        jax.config.update("jax_enable_x64", True)
    if "torch" in wanted:
        import torch

        torch.set_num_threads(args.threads)
    import indexcalc as ic
    from indexcalc.modelfile import load
    from indexcalc.train import prepare
    from indexcalc.training_arrays import to_numpy

    examples = Path(ic.__file__).resolve().parent / "examples"
    print(f"threads {args.threads}; per epoch: the median time between epoch ends, the first epoch of each fit "
          f"(planning, tracing) left out; {args.rounds} fits per backend, order rotating")
    print(f"{'case':<30} {'backend':<8} {'s/epoch':>10} {'vs numpy':>9}  same parameters as numpy")
    for file_name, epochs in CASES:
        mf = load(str(examples / file_name))
        data = mf.load_data(mf.seed)
        counts = {b: (args.dask_epochs if b == "dask" else epochs) for b in wanted}

        def fit(backend):
            ends = []
            trainer, _ = prepare(mf, backend=backend)
            result = trainer.fit(data.train, counts[backend], test=data.test or None,
                                 progress=lambda epoch, record: ends.append(time.perf_counter()))
            return [b - a for a, b in zip(ends, ends[1:])], result

        times, finals = {b: [] for b in wanted}, {}
        for r in range(args.rounds):
            for b in wanted[r % len(wanted):] + wanted[: r % len(wanted)]:
                gaps, finals[b] = fit(b)
                times[b].extend(gaps)
        base = statistics.median(times["numpy"]) if "numpy" in wanted else None
        for b in wanted:
            per_epoch = statistics.median(times[b])
            same = ""
            if "numpy" in wanted:
                trainer, _ = prepare(mf)
                want = trainer.fit(data.train, counts[b], test=data.test or None).params
                same = all(np.allclose(to_numpy(finals[b].params[k]), want[k], rtol=1e-6, atol=1e-12) for k in want)
            ratio = f"{per_epoch / base:8.2f}x" if base else ""
            print(f"{file_name + f' ({counts[b]} epochs/fit)':<30} {b:<8} {per_epoch:10.4f} {ratio:>9}  {same}")


if __name__ == "__main__":
    main()
