"""Checkpoints: the whole state of a run written atomically, and read back with every
part checked, since a checkpoint is a file a user may have edited, damaged or taken
from another model. Also the checks that an output path can be written before the first
epoch (for the checkpoint and the plot alike), and the removal of the temporaries that a
run killed mid-write leaves behind.

A checkpoint is an `.npz`: `param.<name>` per parameter, `opt.<key>` per optimiser
state array, and `meta`, a JSON string with the format, epoch, history, the shuffling
generator's state, the optimiser's name and the equations. Its arrays are NumPy's whatever
library the run was on (converted as written; the Trainer puts them on its backend as it
resumes), so that a checkpoint written on one backend resumes on any other.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from .datasets import DataError, read_npz
from .first_order import SGD, Adam
from .training_arrays import to_numpy
from .training_errors import TrainingError, file_path, is_whole

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model

CHECKPOINT_FORMAT = "indexcalc checkpoint 1"


def write_checkpoint(path: str, params: Mapping[str, np.ndarray], epoch: int, history: list[dict[str, float]],
                     rng: np.random.Generator, optimizer: SGD, model: Model,
                     best: Mapping[str, np.ndarray] | None = None) -> None:
    """Write the whole state to a temporary file, then rename it over `path`. The
    temporary's name carries this process's id, so that one left by a killed run is
    recognised and removed by the next (`remove_stale_temporaries`). `best`, the
    parameters of a monitored run's best epoch, go in as `best.<name>`."""
    arrays = {f"param.{k}": to_numpy(v) for k, v in params.items()}
    arrays.update({f"best.{k}": to_numpy(v) for k, v in (best or {}).items()})
    arrays.update({f"opt.{k}": to_numpy(v) for k, v in optimizer.state.items()})
    meta = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "history": history, "rng": rng.bit_generator.state,
            "optimizer": optimizer.name, "equations": str(model.program)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    write_npz_atomically(path, arrays)


def write_npz_atomically(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """`np.savez` into a temporary beside `path`, renamed over it once complete, so that a
    run killed mid-write leaves the old file whole (and a temporary the next run removes)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_checkpoint(path: str, optimizer: SGD, model: Model
                    ) -> tuple[dict[str, np.ndarray], int, list[dict[str, float]], np.random.Generator]:
    """The parameters, epoch, history and shuffling generator in a checkpoint, every part
    checked against `model` and `optimizer` before any of it is used: a checkpoint is a
    file a user may have edited, damaged or taken from another model. The optimiser's
    state is put into `optimizer` once the parameters and equations have passed."""
    try:
        arrays = read_npz(path, "the checkpoint", kinds="biufU")
    except DataError as err:
        raise TrainingError(f"cannot resume: {err.problem}") from None
    where = f"the checkpoint {path}"
    meta = _meta(arrays, where)
    if meta.get("optimizer") != optimizer.name:
        raise TrainingError(f"{where} was made with {meta.get('optimizer')}, not {optimizer.name}",
                            about="optimizer")
    params = arrays_named(arrays)
    check_params(params, model, where)
    if meta["equations"] != str(model.program):
        raise TrainingError(f"{where} was written for other equations: {meta['equations']!r}, not "
                            f"{str(model.program)!r}")
    optimizer.state = _optimiser_state(arrays, optimizer, model, where)
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = meta["rng"]
    except (ValueError, TypeError, KeyError, OverflowError):
        kind = meta["rng"].get("bit_generator") if isinstance(meta["rng"], dict) else None
        raise TrainingError(f"{where}: its shuffling generator's state is not a {type(rng.bit_generator).__name__}"
                            f" state (it says {kind!r})") from None
    return params, meta["epoch"], meta["history"], rng


def arrays_named(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The `param.<name>` arrays of a checkpoint or weights file, by name."""
    return {k[6:]: v for k, v in arrays.items() if k.startswith("param.")}


def check_params(params: Mapping[str, np.ndarray], model: Model, where: str) -> None:
    """`params` are the parameters `model` declares, each of its shape, finite floats."""
    missing = sorted(set(model.parameters) - set(params))
    if missing:
        raise TrainingError(f"{where} lacks parameters {', '.join(missing)}: it is from another model "
                            f"(it has {', '.join(params) or 'none'})")
    for name, value in params.items():
        declared = model.parameters.get(name)
        if declared is None:
            raise TrainingError(f"{where} has a parameter {name} this model does not declare: "
                                f"it is from another model")
        if value.shape != declared.shape:
            raise TrainingError(f"{where} holds {name} with shape {value.shape}, but the model declares "
                                f"{name} with shape {declared.shape}: it is from another model",
                                about=f"param {name}")
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise TrainingError(f"{where}: {name} is not finite floating-point numbers (dtype {value.dtype})")


def read_best(path: str, model: Model) -> dict[str, np.ndarray] | None:
    """The best epoch's parameters a checkpoint keeps (`best.<name>`), checked against
    `model` as its parameters are, or None if it keeps none (a run without a monitor)."""
    try:
        arrays = read_npz(path, "the checkpoint", kinds="biufU")
    except DataError as err:
        raise TrainingError(f"cannot resume: {err.problem}") from None
    best = {k[5:]: v for k, v in arrays.items() if k.startswith("best.")}
    if not best:
        return None
    for name, declared in model.parameters.items():
        value = best.get(name)
        if value is None or value.shape != declared.shape or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise TrainingError(f"the checkpoint {path}: its best epoch's {name} is not finite numbers of shape "
                                f"{declared.shape}")
    return best


def _meta(arrays: Mapping[str, np.ndarray], where: str) -> dict:
    """The checkpoint's metadata, its shape checked (a crafted file is told, not obeyed)."""
    def bad(problem: str) -> TrainingError:
        return TrainingError(f"cannot resume: {where} is not an indexcalc checkpoint ({problem})")

    text = arrays.get("meta")
    if text is None or text.dtype.kind != "U" or text.ndim != 0:
        raise bad("it has no metadata")
    try:
        meta = json.loads(str(text))
    except (ValueError, RecursionError):
        raise bad("its metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise bad(f"its metadata does not say {CHECKPOINT_FORMAT!r}")
    epoch, history = meta.get("epoch"), meta.get("history")
    if not (is_whole(epoch) and epoch >= 0):
        raise bad(f"its epoch is {epoch!r}, not a whole number")
    if not isinstance(history, list) or len(history) != epoch:
        raise bad(f"its history does not hold one record for each of its {epoch} epochs")
    for number, record in enumerate(history, 1):
        if not (isinstance(record, dict) and record.get("epoch") == number
                and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                        for k, v in record.items())):
            raise bad(f"its history record {number} is not epoch {number} and numbers")
    if not isinstance(meta.get("equations"), str) or not isinstance(meta.get("optimizer"), str):
        raise bad("it does not say its equations and optimiser")
    if not isinstance(meta.get("rng"), dict):
        raise bad("it has no shuffling generator state")
    return meta


def _optimiser_state(arrays: Mapping[str, np.ndarray], optimizer: SGD, model: Model, where: str) -> dict[str, np.ndarray]:
    """The optimiser's arrays: one per moment and parameter, shaped like the parameter,
    and Adam's step count."""
    state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
    shapes = {f"{m}.{p}": param.shape for m in optimizer.moments for p, param in model.parameters.items()}
    for key, value in state.items():
        if key == "t" and isinstance(optimizer, Adam):
            if value.shape != () or value.dtype.kind not in "iu" or value < 0:
                raise TrainingError(f"{where}: Adam's step count is not a whole number ({value!r})")
        elif key not in shapes:
            raise TrainingError(f"{where} holds optimiser state {key!r}, which {optimizer.name} does not keep")
        elif value.shape != shapes[key] or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise TrainingError(f"{where}: the optimiser state {key} is not finite numbers of shape {shapes[key]}")
    return state


# ---------------------------------------------------------------- output paths


def check_output_path(path: str, what: str, replaceable: Callable[[str], bool] | None = None) -> str:
    """Refuse an output path that cannot be written, before any work is done: a missing
    folder, a file where a folder should be, a folder where the file should be, a folder
    that cannot be written to (tried, not guessed from permission bits), or, with
    `replaceable`, an existing file that is neither empty nor what would be written there
    (overwriting an empty file loses nothing). The path, as a str."""
    path = file_path(path, what)
    if path.startswith("-"):  # `--checkpoint -` wrote a file named '-'
        raise TrainingError(f"{what} {path} looks like an option, not a file name "
                            f"(for a file of that name write ./{path})")
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise TrainingError(f"{what} {path} is a folder; give a file name in it, e.g. "
                            f"{os.path.join(path, _example_name(what))}")
    folder = os.path.dirname(target)
    above = folder
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise TrainingError(f"{what} {path} cannot be written: {above} is a file, not a folder")
    if above != folder:
        raise TrainingError(f"{what} {path} cannot be written: the folder {folder} does not exist "
                            f"(create it first)")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".indexcalc-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise TrainingError(f"{what} {path} cannot be written: the folder {folder} is not writable "
                            f"({err.strerror or err})") from None
    if os.path.exists(target):
        if not os.access(target, os.W_OK):
            raise TrainingError(f"{what} {path} exists and cannot be overwritten (it is read-only)")
        if replaceable is not None and os.path.getsize(target) > 0 and not replaceable(target):
            raise TrainingError(f"{what} {path} exists and is not one; not overwriting it "
                                f"(move it away or choose another name)")
    return path


def _example_name(what: str) -> str:
    return next((name for word, name in (("checkpoint", "checkpoint.npz"), ("weights", "weights.npz"),
                                         ("predictions", "predictions.npz"), ("module", "loss_and_grads.py"))
                 if word in what), "loss.png")


def is_checkpoint(path: str) -> bool:
    """Whether `path` looks like a checkpoint (an .npz with metadata), so that overwriting
    it loses nothing a user made by other means."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _temporary_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.{os.getpid()}."


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporaries of `path` that runs killed mid-write left behind (their
    writer's process is gone); a live writer's are left alone. Returns those removed."""
    folder = os.path.dirname(os.path.abspath(path))
    start = f".{os.path.basename(path)}."
    removed = []
    for name in os.listdir(folder):
        if not (name.startswith(start) and name.endswith(".tmp")):
            continue
        pid = name[len(start):].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this run is not writing yet
    if os.name != "posix":
        return True  # no safe liveness probe here: leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
