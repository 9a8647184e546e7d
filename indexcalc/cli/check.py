"""`indexcalc check`: a model's compiled gradients against explicit loops and finite differences."""

from __future__ import annotations

import numpy as np

from ..diff import diff
from ..errors import IndexCalcError


def _command_check(args) -> str:
    from ..modelfile import load
    from ..datasets import load as load_data
    from ..loops import evaluate_loops

    mf = load(args.model)
    train, _ = load_data(mf.dataset, list(mf.model.data), mf.seed, mf.folder) if mf.dataset else ({}, {})
    if not train:
        raise IndexCalcError(f"{args.model} declares no dataset to check on")
    batch = {k: np.asarray(v)[: args.batch] for k, v in train.items()}
    params = mf.model.init_params(mf.seed)
    value, grads = mf.model.loss_and_grads(params, batch)
    rows = [f"checked on {len(next(iter(batch.values())))} samples; largest absolute differences:",
            f"  {'parameter':<12}{'loops':>12}{'finite diff':>14}"]
    for name, g in grads.items():
        by_loops = evaluate_loops(diff(mf.model.program, name, of=mf.model.loss), {**batch, **params})
        numeric = _finite_difference(mf.model, params, batch, name)
        rows.append(f"  {name:<12}{np.max(np.abs(g - by_loops)):>12.2e}{np.max(np.abs(g - numeric)):>14.2e}")
    return "\n".join(rows)


def _finite_difference(model, params, batch, name, eps=1e-6):
    out = np.zeros_like(params[name], dtype=float)
    for index in np.ndindex(*np.shape(params[name])):
        values = []
        for sign in (1, -1):
            moved = {**params, name: np.array(params[name], dtype=float)}
            moved[name][index] += sign * eps
            values.append(model.loss_and_grads(moved, batch)[0])
        out[index] = (values[0] - values[1]) / (2 * eps)
    return out


def register(sub) -> None:
    """The `check` command's parser, on the `indexcalc` command's subparsers."""
    ck = sub.add_parser("check", help="compare a model's compiled gradients with explicit loops and finite differences")
    ck.add_argument("model", help="a model file (.ic)")
    ck.add_argument("--batch", type=int, default=3, help="samples to check on (default 3)")
    ck.set_defaults(run=_command_check)
