"""`indexcalc check`: a model's compiled gradients against explicit loops and finite differences.

Both references are slow per entry, so by default they are compared on a random sample of
each gradient's entries (`--entries`), the same entries for both, and the report says how
many of how many. The loops evaluate the derivative as `diff` writes it in one formula,
simplified (the chain form's Jacobian-sized intermediates would have to be enumerated
whole), and only at the sampled entries.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import numpy as np

from ..errors import IndexCalcError
from .train import default_model

DEFAULT_ENTRIES = 200
INLINE_LIMIT = 4000  # nodes: past this the derivative's chain form is enumerated instead


def _command_check(args) -> str:
    from ..modelfile import load

    args.model = args.model or default_model()
    mf = load(args.model)
    train = mf.load_data().train if mf.dataset else {}
    if not train:
        raise IndexCalcError(f"{args.model} declares no dataset to check on")
    batch = {k: np.asarray(v)[: args.batch] for k, v in train.items()}
    params = mf.model.init_params(mf.seed)
    _, grads = mf.model.loss_and_grads(params, batch)
    rng = np.random.default_rng(mf.seed)
    rows, counts = [], []
    for name, grad in grads.items():
        grad = np.asarray(grad, dtype=float)
        positions = _sample(grad.shape, args.entries, rng)
        compiled = grad[tuple(positions.T)]
        loops = "skipped" if args.no_loops else f"{_largest(compiled - _by_loops(mf.model, name, {**batch, **params}, positions)):.2e}"
        numeric = _finite_differences(mf.model, params, batch, name, positions)
        rows.append(f"  {name:<12}{loops:>12}{_largest(compiled - numeric):>14.2e}")
        counts.append(f"{name} {len(positions)} of {grad.size}" if len(positions) < grad.size else f"{name} all {grad.size}")
    samples = len(next(iter(batch.values())))
    return "\n".join([f"checked on {samples} samples; largest absolute differences:",
                      f"  {'parameter':<12}{'loops':>12}{'finite diff':>14}", *rows,
                      f"entries compared (random, seed {mf.seed}): {', '.join(counts)}"])


def _sample(shape: tuple[int, ...], entries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Positions (count, ndim) of `entries` random entries of an array of `shape`, in
    order; all of them when `entries` is None or not fewer."""
    total = int(np.prod(shape))
    chosen = np.arange(total) if entries is None or entries >= total else np.sort(rng.choice(total, entries, replace=False))
    return np.stack(np.unravel_index(chosen, shape), axis=1) if shape else np.zeros((len(chosen), 0), dtype=int)


def _largest(differences: np.ndarray) -> float:
    return float(np.max(np.abs(differences), initial=0.0))


def _by_loops(model, name: str, arrays: dict, positions: np.ndarray) -> np.ndarray:
    """The gradient by `name` at `positions`, by the explicit-loop reference."""
    from ..diff import diff
    from ..errors import InlineTooLargeError
    from ..loops import evaluate_loops_at
    from ..simplify import simplify

    try:
        derivative = diff(model.program, name, of=model.loss, inline=True)
    except InlineTooLargeError:
        derivative = None
    if derivative is None or sum(1 for _ in derivative.walk()) > INLINE_LIMIT:
        derivative = simplify(diff(model.program, name, of=model.loss))
    return evaluate_loops_at(derivative, arrays, positions, progress=progress_bars(f"{name} by loops")).values


def _finite_differences(model, params: dict, batch: dict, name: str, positions: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the loss, one entry of `name` moved at a time."""
    moved = np.array(params[name], dtype=float)
    others = {**params, name: moved}
    out = np.empty(len(positions))
    bar = progress_bars(f"{name} by finite differences")(total=len(positions))
    for k, index in enumerate(map(tuple, positions)):
        values = []
        for step in (eps, -eps):
            moved[index] += step
            values.append(float(model.evaluate(model.loss, others, batch)))
            moved[index] -= step
        out[k] = (values[0] - values[1]) / (2 * eps)
        bar.update(1)
    bar.close()
    return out


def progress_bars(label: str) -> Callable[..., Any]:
    """A maker of progress bars for `label` (called as tqdm is, with total= and desc=),
    shown only on what runs longer than a second: tqdm's when it is installed (the
    optional extra `progress`), else plain lines on stderr. What `loops` takes."""

    def make(total: int, desc: str | None = None):
        desc = label if desc is None else f"{label}: {desc}"
        try:
            from tqdm import tqdm
        except ImportError:
            return _Lines(total, desc)
        return tqdm(total=total, desc=desc, delay=1.0, leave=False, unit="entry")

    return make


class _Lines:
    """A progress report without tqdm: a line on stderr at most once a second, from the
    first second on."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done = total, desc, 0
        self.started = self.shown = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.shown >= 1.0:
            self.shown = now
            print(f"  {self.desc}: {self.done} of {self.total} entries ({now - self.started:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def entry_count(text: str) -> int | None:
    """An argparse type: a number of entries to compare, or 'all' (None)."""
    if text == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number or 'all', got {text!r}") from None


def register(sub) -> None:
    """The `check` command's parser, on the `indexcalc` command's subparsers."""
    ck = sub.add_parser("check", help="compare a model's compiled gradients with explicit loops and finite differences")
    ck.add_argument("model", nargs="?", help="a model file (.ic); default: the built-in Fizz Buzz")
    ck.add_argument("--batch", type=positive_int, default=3, help="samples to check on (default 3)")
    ck.add_argument("--entries", type=entry_count, default=DEFAULT_ENTRIES, metavar="N",
                    help=f"random entries of each gradient to compare, or 'all' (default {DEFAULT_ENTRIES})")
    ck.add_argument("--no-loops", action="store_true", help="skip the explicit-loop reference (finite differences only)")
    ck.set_defaults(run=_command_check)
