#!/usr/bin/env python
"""indexcalc's compiled MLP gradient on each backend against that library's own autodiff; one table.

    python benchmarks/bench_backends.py            # full run, about 2 minutes
    python benchmarks/bench_backends.py --quick    # fewer rounds, no large MLP
    python benchmarks/bench_backends.py --smoke    # the tiny MLP, one round: does it run?

Rows (see benchmarks/README.md), for the sigmoid MLP + mean squared error cells of
bench_gradients.py (tiny, small, medium, large; float32 and float64):
  hand-written NumPy backprop (the baseline, 1.00x), `ic.compile(...)` (the NumPy plan),
  hand-written `jax.jit(jax.value_and_grad(loss))`, `ic.compile(..., backend="jax")`,
  PyTorch autograd (eager), `ic.compile(..., backend="torch")`; then the ratios issue 11
  sets targets for: indexcalc-jax / jax.jit and indexcalc-torch / torch autograd (at most
  1.1x), and on the large float32 cell indexcalc-jax / NumPy (below 1.0x).

Every contender's loss and gradients are checked against NumPy's before it is timed (rtol
1e-5 in float32, 1e-9 in float64; same names, shapes and dtype). A backend that
`ic.compile` does not offer (a TypeError before the backends exist, an ImportError without
the library) gets an "n/a" row saying why, and the peers are timed anyway.

Timing, thread limits and the table are bench_gradients.py's: contenders alternate in
rounds, the table gives medians, ratios to the NumPy baseline, the spread and the best
round. JAX calls end in `jax.block_until_ready` and are warmed up (traced and compiled)
before timing.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds, skip the large MLP")
    p.add_argument("--smoke", action="store_true", help="only the tiny MLP, one round (checks that it runs)")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    p.add_argument("--plans", action="store_true", help="print indexcalc's NumPy plan for every cell")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    from blas_env import set_blas_threads

    set_blas_threads(ARGS.threads)  # before NumPy loads its BLAS
else:
    ARGS = parse_args([])

import gc  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's indexcalc, whatever is installed
import bench_gradients as bg  # noqa: E402
from bench_gradients import MLPS, Contender, Row  # noqa: E402

import indexcalc as ic  # noqa: E402

RTOL = {"float32": 1e-5, "float64": 1e-9}
TARGET = 1.1  # issue 11: each backend within 1.1x of its library's own autodiff

# The contenders of a cell, in the table's order.
NUMPY = "NumPy backprop"
OURS_NUMPY = "indexcalc numpy plan"
JAX = "jax.jit(jax.value_and_grad)"
OURS_JAX = "indexcalc backend='jax'"
TORCH = "PyTorch autograd (eager)"
OURS_TORCH = "indexcalc backend='torch'"
ORDER = [NUMPY, OURS_NUMPY, JAX, OURS_JAX, TORCH, OURS_TORCH]

TARGETS: list[str] = []  # one line per target: met, MISSED or n/a


# ============================================================================ checking


def to_numpy(x) -> np.ndarray:
    """A JAX array, a torch tensor (on any device) or a NumPy array, as NumPy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def mismatch(loss, grads, ref_loss, ref_grads, dtype: str) -> str | None:
    """What differs from NumPy's loss and gradients (names, shapes, dtypes, numbers beyond
    RTOL, an element's tolerance scaled by the gradient's largest entry), or None."""
    rtol = RTOL[dtype]
    loss = to_numpy(loss)
    if loss.shape != ():
        return f"loss has shape {loss.shape}, not ()"
    if abs(float(loss) - ref_loss) > rtol * abs(ref_loss):
        return f"loss {float(loss)!r} != NumPy's {ref_loss!r} (rtol {rtol:g})"
    if set(grads) != set(ref_grads):
        return f"gradients {sorted(grads)} != NumPy's {sorted(ref_grads)}"
    for name, ref in ref_grads.items():
        got = to_numpy(grads[name])
        if got.shape != ref.shape or got.dtype != ref.dtype:
            return f"gradient {name} is {got.dtype}{list(got.shape)}, not {ref.dtype}{list(ref.shape)}"
        scale = float(np.max(np.abs(ref))) or 1.0
        err = np.abs(got.astype(np.float64) - ref) - rtol * np.abs(ref)
        if np.max(err) > rtol * scale:
            k = tuple(int(i) for i in np.unravel_index(np.argmax(err), ref.shape))
            return f"gradient {name}{list(k)} = {float(got[k])!r}, NumPy's {float(ref[k])!r} (rtol {rtol:g})"
    return None


# ============================================================================ contenders


class Unavailable(Exception):
    """A contender that cannot run here: not installed, or not offered by ic.compile."""


def ours(backend: str, peers, program: str, wrt: list[str], arrays: dict[str, np.ndarray]):
    """`ic.compile(program, wrt, backend=...)` called on that backend's own arrays, as its
    users would call it: (a function of no arguments, the compiled callable)."""
    if backend == "numpy":
        f = ic.compile(program, wrt=wrt)
        return (lambda: f(arrays)), f
    module = peers[backend].module
    if module is None:
        raise Unavailable(f"{backend} {peers[backend].status}")
    try:
        f = ic.compile(program, wrt=wrt, backend=backend)
    except (TypeError, ImportError, ic.IndexCalcError) as err:  # TypeError: no backend= keyword yet
        raise Unavailable(f"{type(err).__name__}: {err}") from None
    if backend == "jax":
        jax = module
        native = {k: jax.numpy.asarray(v) for k, v in arrays.items()}
        return (lambda: jax.block_until_ready(f(native))), f
    native = {k: module.from_numpy(v.copy()) for k, v in arrays.items()}
    return (lambda: f(native)), f


def library_type(out, backend: str) -> str:
    """'' when every returned array is the backend's own type, else which type came back."""
    want = {"numpy": ("numpy",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}[backend]
    loss, grads = out
    for x in [loss, *grads.values()]:
        if type(x).__module__.split(".")[0] not in want:
            return f"returns {type(x).__module__}.{type(x).__name__}, not a {backend} array"
    return ""


def contenders_for(cell: str, sizes: list[int], batch: int, dtype: str, peers) -> tuple[list, dict, dict]:
    """The cell's contenders, each checked against NumPy: (timed contenders, row notes,
    reasons for those not timed). A wrong number is not timed; it is flagged."""
    layers = len(sizes) - 1
    program = bg.mlp_program(sizes)
    wrt = [f"{p}{l}" for l in range(1, layers + 1) for p in "Wb"]
    arrays = bg.mlp_arrays(sizes, batch, np.dtype(dtype))
    ref_loss, ref_grads = bg.numpy_mlp(arrays, layers)
    ref_loss = float(ref_loss)
    timed = [Contender(NUMPY, lambda: bg.numpy_mlp(arrays, layers), baseline=True)]
    notes: dict[str, str] = {}
    skipped: dict[str, str] = {}

    def add(name: str, build: Callable[[], tuple[Callable, Callable]], backend: str | None = None) -> None:
        try:
            run, convert = build()
            out = run()
            wrong = mismatch(*convert(out), ref_loss, ref_grads, dtype)
        except Unavailable as err:
            skipped[name] = f"n/a (backend not available: {err})"
            return
        except Exception as err:  # a contender that fails must not hide the others' rows
            wrong = f"raised {type(err).__name__}: {err}"
        if wrong:
            skipped[name] = f"FAILED: {wrong}"
            bg.FLAGS.append(f"{cell} {dtype}: {name} {wrong}")
            return
        if backend:
            notes[name] = library_type(out, backend)
        timed.append(Contender(name, run))

    def ours_(backend: str):
        run, f = ours(backend, peers, program, wrt, arrays)
        if backend == "numpy":
            bg.PLANS.append((f"{cell} {dtype}", f))
        return run, lambda out: out

    def peer(key: str):
        if peers[key].module is None:
            raise Unavailable(f"{key} {peers[key].status}")
        return {"jax": bg.jax_mlp, "torch": bg.torch_mlp}[key](peers[key].module, arrays, layers)

    add(OURS_NUMPY, lambda: ours_("numpy"), "numpy")
    add(JAX, lambda: peer("jax"))
    add(OURS_JAX, lambda: ours_("jax"), "jax")
    add(TORCH, lambda: peer("torch"))
    add(OURS_TORCH, lambda: ours_("torch"), "torch")
    return timed, notes, skipped


# ============================================================================ cells


SHORT = {NUMPY: "NumPy", JAX: "jax.jit", OURS_JAX: "indexcalc jax", TORCH: "torch autograd",
         OURS_TORCH: "indexcalc torch"}


def ratio_row(case: str, dtype: str, by_name: dict[str, Contender], ours_name: str, theirs_name: str,
              target: float, strict: bool = False) -> None:
    """One row: our time over theirs, round by round (the two ran in the same rounds, so a
    round's ratio saw the same load on the machine): the median of those ratios, their
    spread, and the best rounds' ratio; the verdict is the median's."""
    what = f"{SHORT[ours_name]} / {SHORT[theirs_name]}"
    goal = f"target {'<' if strict else '≤'} {target:g}x"
    missing = [name for name in (ours_name, theirs_name) if name not in by_name]
    if missing:
        verdict = f"{goal}: n/a ({' and '.join(missing)} not timed, see above)"
        bg.ROWS.append(Row("1", case, dtype, what, "", "n/a", "", verdict))
        TARGETS.append(f"{case} {dtype}: {what}, {verdict}")
        return
    a, b = by_name[ours_name], by_name[theirs_name]
    per_round = [x / y for x, y in zip(a.times, b.times)]
    ratio, best, of_medians = statistics.median(per_round), a.best / b.best, a.median / b.median
    spread = ""
    if len(per_round) >= 4:
        q = statistics.quantiles(per_round, n=4)
        spread = f"{100 * (q[2] - q[0]) / ratio:5.1f}%"
    met = ratio < target if strict else ratio <= target
    verdict = f"{goal}: {'met' if met else 'MISSED'}"
    bg.ROWS.append(Row("1", case, dtype, what, "", f"{ratio:6.2f}x", spread,
                       f"{verdict} (median of per-round ratios; of the medians {of_medians:.2f}x)", f"{best:5.2f}x"))
    TARGETS.append(f"{case} {dtype}: {what} = {ratio:.2f}x (medians {of_medians:.2f}x, best rounds {best:.2f}x), "
                   f"{verdict}")


def bench_cell(label: str, sizes: list[int], batch: int, dtype: str, peers, timing) -> None:
    case = f"MLP {label} {'-'.join(map(str, sizes))} n={batch}"
    started = time.perf_counter()
    timed, notes, skipped = contenders_for(case, sizes, batch, dtype, peers)
    checked = time.perf_counter()
    gc.freeze()  # the objects so far out of the collector's sight: with jax and torch loaded, the
    try:         # gc.collect() before each timed batch took 0.2 s (a full run 13 minutes, not 2)
        rounds = bg.time_interleaved(timed, *timing)
    finally:
        gc.unfreeze()
    notes[NUMPY] = (f"{rounds} rounds; cell {time.perf_counter() - started:.0f} s "
                    f"(builds and checks {checked - started:.1f} s)")
    start = len(bg.ROWS)
    bg.add_timed("1", case, dtype, timed, {k: v for k, v in notes.items() if v})
    rows = {r.contender: r for r in bg.ROWS[start:]}
    del bg.ROWS[start:]
    for name in ORDER:  # the timed rows and the others' reasons, in one order every cell
        bg.ROWS.append(rows.get(name) or Row("1", case, dtype, name, "n/a" if "n/a" in skipped[name] else "FAILED",
                                             "", "", skipped[name]))
    by_name = {c.name: c for c in timed}
    ratio_row(case, dtype, by_name, OURS_JAX, JAX, TARGET)
    ratio_row(case, dtype, by_name, OURS_TORCH, TORCH, TARGET)
    if label == "large" and dtype == "float32":  # issue 11: JAX is ahead of NumPy here, so must we be
        ratio_row(case, dtype, by_name, OURS_JAX, NUMPY, 1.0, strict=True)


# ============================================================================ main


def header(peers, args, thread_note, timing) -> None:
    rounds, batch_seconds, budget = timing
    run = "--smoke" if args.smoke else "--quick" if args.quick else "full"
    print(f"indexcalc backends benchmark ({run} run, one process, one table)")
    print(bg.machine_line())
    print(bg.versions_line())
    print(f"BLAS      : {args.threads} thread(s) requested; {thread_note}")
    print("peers     : " + "; ".join(f"{p.label}: {p.status}" for p in peers.values()))
    print(f"XLA       : XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')!r}; jax.jit and backend='jax' share "
          "whatever threads XLA takes")
    print(f"method    : contenders of a cell alternate in up to {rounds} rounds (rotating order; at least\n"
          f"            {min(9, rounds)}, fewer when a cell would take over {budget:g} s), each round timing a batch of\n"
          f"            ~{batch_seconds * 1e3:.0f} ms of calls. 'median/call' is the median over rounds, 'ratio' = that\n"
          "            median / NumPy's (> 1 is slower), 'IQR' the spread over rounds; 'best round' its fastest\n"
          "            round and ratio. A target row's ratio is the median over rounds of the two contenders'\n"
          "            ratio within a round (same load on the machine), its IQR beside it, the best rounds' ratio\n"
          "            in the last column, and the ratio of the two medians in the note.\n"
          "            Every contender is checked against NumPy first (rtol 1e-5 float32, 1e-9 float64).")
    print()


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    thread_note = bg.limit_threads(args.threads)
    peers = {k: v for k, v in bg.find_peers(args.threads).items() if k in ("jax", "torch")}
    if args.smoke:
        timing = (1, 0.001, 0.1)
    else:
        timing = (15, 0.005, 2.5) if args.quick else (61, 0.01, 30.0)  # rounds, seconds per batch, per cell
    header(peers, args, thread_note, timing)
    sys.stdout.flush()
    for label, sizes, batch in MLPS:
        if (args.smoke and label != "tiny") or (args.quick and label == "large"):
            why = "--smoke" if args.smoke else "--quick"
            bg.ROWS.append(Row("1", f"MLP {label} {'-'.join(map(str, sizes))} n={batch}", "both", "all", "", "",
                               "", f"skipped: {why}"))
            continue
        for dtype in ("float64", "float32"):  # bench_gradients.py's order
            bench_cell(label, sizes, batch, dtype, peers, timing)
    bg.print_table()
    print("\ntargets (issue 11):")
    for line in TARGETS:
        print("  - " + line)
    print("\nfailed checks: " + ("\n  - " + "\n  - ".join(bg.FLAGS) if bg.FLAGS else "none"))
    if args.plans:
        for case, f in bg.PLANS:
            print(f"\n=== plan: {case}\n{f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 1 if bg.FLAGS else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
