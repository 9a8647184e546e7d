"""A trained model kept in one `.npz`: its parameters, and what rebuilds the model.

    model.save("weights.npz", params)
    model, params = ic.Model.load("weights.npz")      # no model file needed
    params = model.load_params("weights.npz")         # into a model one already has

The file holds `param.<name>` per parameter (NumPy arrays whatever library trained them)
and `meta`, a JSON string: the format, the equations as written, each parameter's shape
and initialiser, the data tensors, batch index, reduction, loss and output, and the
batched equations, which a loaded file must rebuild exactly. It is written atomically, as
checkpoints are (`checkpoints.write_npz_atomically`), and a checkpoint's parameters load
into the model it was written for too.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .checkpoints import (
    CHECKPOINT_FORMAT, arrays_named, check_output_path, check_params, is_checkpoint, write_npz_atomically,
)
from .datasets import DataError, read_npz
from .errors import IndexCalcError
from .declarations import ModelError, Param
from .training_arrays import to_numpy
from .training_errors import file_path, require_named_arrays

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

MODEL_FORMAT = "indexcalc model 1"


def save(model: Model, path: str | os.PathLike, params: Mapping[str, object], model_file=None) -> None:
    """Write `params` and `model`'s declarations to `path` (refused, before writing, where
    the path cannot be written or holds a file that is not one of ours). `model_file`, the
    `ModelFile` the model came from, is kept beside them (`indexcalc train --save`): its
    metric, data set and one-hot columns are what `predict` without it still uses."""
    require_named_arrays(params, "parameters to save", "{'W': W, 'b': b}")
    path = check_output_path(path, "the weights file", replaceable=is_checkpoint)
    arrays = {f"param.{k}": to_numpy(v) for k, v in params.items()}
    check_params(arrays_named(arrays), model, "the parameters to save")
    meta = {
        "format": MODEL_FORMAT,
        "source": _text(model),
        "params": {name: {"shape": list(p.shape), "init": p.init, "scale": p.scale}
                   for name, p in model.parameters.items()},
        "data": list(model.data), "batch": model.batch, "reduce": model.reduce,
        "loss": model.loss, "output": model.output,
        "equations": str(model.program),
    }
    if model_file is not None:
        meta["model_file"] = {"text": model_file.text, "folder": model_file.folder, "name": model_file.name}
    arrays["meta"] = np.asarray(json.dumps(meta))
    try:
        write_npz_atomically(path, arrays)
    except OSError as err:
        raise ModelError(f"could not write the weights file {path} ({err.strerror or err})") from None


def load(path: str, model_class: type[Model]) -> tuple[Model, dict[str, np.ndarray]]:
    """The model a weights file describes, built as `model_class` (`Model.load` passes its
    own class, so a subclass loads as itself), and its parameters."""
    arrays, meta = _read(path)
    where = f"the weights file {os.fspath(path)}"
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where} is a checkpoint, which holds parameters but not the model's declarations: "
                         f"give the model file too (indexcalc predict FILE.ic --weights {path})")
    try:
        model = model_class(meta["source"],
                      params={name: Param(name, tuple(spec["shape"]), spec["init"], spec["scale"])
                              for name, spec in meta["params"].items()},
                      data=meta["data"], batch=meta["batch"], reduce=meta["reduce"], loss=meta["loss"],
                      output=meta["output"])
    except (KeyError, TypeError, AttributeError):
        raise ModelError(f"{where} is not an indexcalc weights file (its declarations are incomplete)") from None
    except IndexCalcError as err:
        raise ModelError(f"{where} does not rebuild a model: {err.problem}") from None
    return model, _params(arrays, meta, model, where)


def kept_model_file(path: str) -> tuple[str, str, str] | None:
    """The text, folder and name of the model file `save` kept in a weights file, if it
    kept one (None too for a file that is no weights file: `load` says what is wrong)."""
    try:
        _, meta = _read(path)
    except IndexCalcError:
        return None
    kept = meta.get("model_file")
    fields = [kept.get(k) for k in ("text", "folder", "name")] if isinstance(kept, dict) else []
    return tuple(fields) if fields and all(isinstance(f, str) for f in fields) else None


def load_params(model: Model, path: str) -> dict[str, np.ndarray]:
    """The parameters in a weights file (or a checkpoint) written for `model`'s equations."""
    arrays, meta = _read(path)
    return _params(arrays, meta, model, f"the weights file {os.fspath(path)}")


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    path = file_path(path, "the weights file", ModelError)
    try:
        arrays = read_npz(path, "the weights file", kinds="biufU")
    except DataError as err:
        raise ModelError(err.problem) from None
    text = arrays.get("meta")
    meta = None
    if text is not None and text.dtype.kind == "U" and text.ndim == 0:
        try:
            meta = json.loads(str(text))
        except (ValueError, RecursionError):
            pass
    if not isinstance(meta, dict) or meta.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT) \
            or not isinstance(meta.get("equations"), str):
        raise ModelError(f"{path} is not an indexcalc weights file or checkpoint (write one with "
                         f"indexcalc train --save, or Model.save)")
    return arrays, meta


def _params(arrays, meta: dict, model: Model, where: str) -> dict[str, np.ndarray]:
    if meta["equations"] != str(model.program):
        raise ModelError(f"{where} was written for other equations: {meta['equations']!r}, not "
                         f"{str(model.program)!r}")
    params = arrays_named(arrays)
    try:
        check_params(params, model, where)
    except IndexCalcError as err:
        raise ModelError(err.problem) from None
    return params


def _text(model: Model) -> str:
    """The equations as the user wrote them, without the blank lines a model file's
    declarations leave behind (a model built from an expression: its printed form)."""
    if not isinstance(model.source, str):
        return str(model.per_sample)
    return "\n".join(line.rstrip() for line in model.source.splitlines() if line.strip())
