"""`indexcalc predict`: a trained model's outputs on data, by its forward program only.

    indexcalc train examples/xor.ic --save weights.npz
    indexcalc predict examples/xor.ic --weights weights.npz --data new.npz -o out.npz

The model is the model file's (its weights must be for the same equations), or, without
one, the model saved in the weights file, with the metric, data set and one-hot columns of
the model file `train --save` kept there. `--data` is a built-in data set (its test split,
where it has one) or an `.npz` of arrays named as the data tensors; the targets may be
left out. Without `--data`, the model file's own data set. Every path is checked before
any work, and every refusal is one line.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..errors import IndexCalcError

SHOWN = 10  # predicted classes printed


def _command_predict(args) -> str:
    from ..checkpoints import check_output_path, write_npz_atomically
    from ..model import Model
    from ..modelfile import load
    from ..training_arrays import to_numpy

    mf = load(args.model) if args.model else _kept_model_file(args.weights)
    if args.output:
        check_output_path(args.output, "the predictions file", replaceable=_is_npz)
        for other in (args.model, args.weights, args.data):
            if other and os.path.exists(other) and os.path.exists(args.output) and os.path.samefile(other, args.output):
                raise IndexCalcError(f"-o {args.output} would overwrite an input of this command: choose another name")
    if mf is not None:
        model = mf.model
        params = model.load_params(args.weights)
    else:
        model, params = Model.load(args.weights)
    data, source = _data(args, mf, model)
    try:
        outputs = model.predict(params, data, args.outputs)
    except IndexCalcError as err:
        raise mf.locate(err) if mf else err from None
    outputs = {k: to_numpy(v) for k, v in outputs.items()}
    count = len(next(iter(data.values())))
    lines = [f"predicted on {count} samples of {source}: "
             + ", ".join(f"{k} {tuple(v.shape)}" for k, v in outputs.items())]
    lines += _classes(mf, model, params, data, outputs)
    if args.output:
        try:
            write_npz_atomically(args.output, outputs)
        except OSError as err:
            raise IndexCalcError(f"could not write {args.output} ({err.strerror or err})") from None
        lines.append(f"written: {args.output} ({', '.join(outputs)})")
    return "\n".join(lines)


def _kept_model_file(weights: str):
    """The model file `train --save` kept in the weights file, if it kept one and it still
    reads: without it the weights' own model predicts, with no metric."""
    from ..modelfile import parse_model
    from ..saved import kept_model_file

    kept = kept_model_file(weights)
    if kept is None:
        return None
    text, folder, name = kept
    try:
        return parse_model(text, folder=folder, name=name)
    except IndexCalcError:
        return None


def _data(args, mf, model) -> tuple[dict[str, np.ndarray], str]:
    """The data arrays present (a prediction needs no targets), checked, one-hot applied."""
    from ..datasets import BUILT_IN, DataSet, apply_onehot, open_dataset, read_npz, sample_count
    from ..train import check_data_ranks

    name = args.data or (mf.dataset if mf else None)
    if name is None:
        raise IndexCalcError("no data to predict on: give --data (a built-in data set or an .npz file)")
    if name in BUILT_IN:
        split = open_dataset(name, list(model.data), mf.seed if mf else 0)
        arrays, source = (split.test, f"{name} (its test split)") if split.test else (split.train, name)
    else:
        path = name if args.data or os.path.isabs(name) else os.path.join(mf.folder, name)
        if not os.path.exists(path):
            raise IndexCalcError(f"the data {name!r} is neither built in ({', '.join(BUILT_IN)}) "
                                 f"nor a file ({path} does not exist)")
        found = read_npz(path, "the data file")
        arrays, source = {k: found[k] for k in model.data if k in found}, name
        if not arrays:
            raise IndexCalcError(f"{path} has no array named {' or '.join(model.data)} (it has "
                                 f"{', '.join(found) or 'none'}): name its arrays as the model's data tensors")
    sample_count(arrays, f"the arrays of {source}")
    data = DataSet(arrays, {}, source)
    if mf is not None:
        data = apply_onehot(data, {k: c for k, c in mf.onehot.items() if k in arrays})
    check_data_ranks(model, data)
    return data.train, source


def _classes(mf, model, params, data, outputs) -> list[str]:
    """For a model file with a metric: the predicted classes (of a classifier, one with an
    accuracy), and the metric where the targets are present (mse for an mse line: it
    was reported as an accuracy)."""
    if mf is None or not mf.metric or mf.metric[0] not in outputs:
        return []
    output = outputs[mf.metric[0]]
    lines = []
    if mf.metric_name == "accuracy" and output.ndim > 1 and output.shape[-1] > 1:
        classes = output.argmax(-1).ravel()
        more = " ..." if classes.size > SHOWN else ""
        lines.append(f"classes ({mf.metric[0]} argmax): {' '.join(map(str, classes[:SHOWN]))}{more}")
    if all(k in data for k in mf.metric[1:]):
        lines.append(f"{mf.metric_name} {mf.measure()(model, params, data):.4g} (against {mf.metric[1]})")
    return lines


def _is_npz(path: str) -> bool:
    """An `.npz` file, which -o may overwrite; anything else it refuses."""
    return zipfile.is_zipfile(path)


def register(sub) -> None:
    """The `predict` command's parser, on the `indexcalc` command's subparsers."""
    pr = sub.add_parser(
        "predict", help="a trained model's outputs on data (see train --save)",
        description="Run a trained model's forward program on data: the outputs' shapes, and for a "
        "classifier its classes (and accuracy, where the data hold the targets).",
    )
    pr.add_argument("model", nargs="?", help="the model file (.ic); default: the model saved in --weights")
    pr.add_argument("--weights", required=True, help="the .npz written by indexcalc train --save (or a checkpoint)")
    pr.add_argument("--data", help="a built-in data set (its test split) or an .npz of arrays named as the "
                    "data tensors (default: the model file's data set)")
    pr.add_argument("--output-name", dest="outputs", action="append", metavar="NAME",
                    help="an equation's result to predict (repeatable; default: what the loss reads)")
    pr.add_argument("-o", "--output", help="write the predicted arrays to this .npz")
    pr.set_defaults(run=_command_predict)
