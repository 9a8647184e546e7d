"""The weight-update loop: `w ← w − η loss_{,(gh)}`, with momentum and Adam.

Training never loses work. A loss that turns NaN or infinite stops the run with a clear
message and the parameters of the last good step; Ctrl-C ends the run cleanly with them;
checkpoints (parameters, optimiser state, epoch, history, the generator's state) are
written atomically, and a run resumed from one continues exactly as if it had never
stopped, since the shuffling generator is part of the state. Everything that can be
checked before the first epoch is (settings, output paths, data, the checkpoint resumed
from), so that a mistake costs a message, not a run.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .datasets import DataError, read_npz, refuse_if_too_big, sample_count
from .errors import IndexCalcError
from .expr import Tensor
from .model import Model


class TrainingError(IndexCalcError):
    """Training could not go on (a non-finite loss, a checkpoint that does not fit).

    `about` names the model-file declaration it concerns ("param W1", "optimizer"), so
    that a model file can point at the line."""

    def __init__(self, message: str, *, text: str | None = None, pos: int | None = None,
                 about: str | None = None):
        super().__init__(message, text=text, pos=pos)
        self.about = about


class TrainingStopped(TrainingError):
    """The run ended before its last epoch (a non-finite loss, Ctrl-C); the parameters of
    the last good step are kept (and checkpointed, if asked)."""


# ---------------------------------------------------------------- optimisers


class SGD:
    """w ← w − η g: the index-notation note's update rule.

    A step puts new arrays in `params` and never writes into the old ones, so the loop
    keeps the last good parameters by holding on to the old dict, without copying."""

    name = "sgd"
    moments: tuple[str, ...] = ()  # per-parameter state arrays, keyed "<moment>.<parameter>"

    def __init__(self, lr: float = 0.1):
        self.lr = lr
        self.state: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for name, g in grads.items():
            params[name] = params[name] - self.lr * g


class Momentum(SGD):
    """v ← β v + g; w ← w − η v."""

    name = "momentum"
    moments = ("v",)

    def __init__(self, lr: float = 0.1, beta: float = 0.9):
        super().__init__(lr)
        self.beta = beta

    def step(self, params, grads) -> None:
        for name, g in grads.items():
            v = self.state.get(f"v.{name}")
            v = g if v is None else self.beta * v + g
            self.state[f"v.{name}"] = v
            params[name] = params[name] - self.lr * v


class Adam(SGD):
    """Adam (Kingma & Ba): moment estimates with bias correction."""

    name = "adam"
    moments = ("m", "v")  # and the step count "t"

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, params, grads) -> None:
        t = int(self.state.get("t", np.zeros(())) + 1)
        self.state["t"] = np.asarray(t)
        for name, g in grads.items():
            m = self.beta1 * self.state.get(f"m.{name}", 0.0) + (1 - self.beta1) * g
            v = self.beta2 * self.state.get(f"v.{name}", 0.0) + (1 - self.beta2) * g * g
            self.state[f"m.{name}"], self.state[f"v.{name}"] = m, v
            m_hat = m / (1 - self.beta1**t)
            v_hat = v / (1 - self.beta2**t)
            params[name] = params[name] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMISERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}

# What each setting means and the values that make sense for it.
SETTINGS = {
    "lr": ("the learning rate", lambda v: 0 < v < math.inf, "a positive number"),
    "beta": ("the momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta1": ("the first moment's decay", lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": ("the second moment's decay", lambda v: 0 <= v < 1, "in [0, 1)"),
    "eps": ("the denominator's guard", lambda v: 0 < v < math.inf, "a positive number"),
}


def settings_of(name: str) -> list[str]:
    """The settings an optimiser takes (its constructor's keywords)."""
    return [k for k in inspect.signature(OPTIMISERS[name].__init__).parameters if k != "self"]


def optimiser(name: str, **settings: float) -> SGD:
    """The optimiser `name` with `settings`, each checked by name and value, so that a typo
    (`learning_rate=`) is told with the settings that exist rather than a Python error."""
    if name not in OPTIMISERS:
        raise TrainingError(f"unknown optimiser {name!r} (known: {', '.join(OPTIMISERS)})", about="optimizer")
    valid = settings_of(name)
    for key, value in settings.items():
        if key not in valid:
            raise TrainingError(f"{name} has no setting {key!r}; its settings are "
                                f"{', '.join(f'{k}=' for k in valid)}", about="optimizer")
        meaning, fits, wanted = SETTINGS[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not fits(float(value)):
            raise TrainingError(f"{key}={value} for {name}: {meaning} must be {wanted}", about="optimizer")
    return OPTIMISERS[name](**{k: float(v) for k, v in settings.items()})


# ---------------------------------------------------------------- the loop


@dataclass
class Result:
    params: dict[str, np.ndarray]
    history: list[dict[str, float]]
    epochs: int
    stopped: str  # "done", "nan", "interrupted"
    message: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


DIVERGED = 1000.0  # an epoch's loss this many times its best so far (and above the start) is reported


@dataclass
class Trainer:
    """Trains a model on named data arrays, batch by batch, from a seed."""

    model: Model
    optimizer: SGD = field(default_factory=SGD)
    batch_size: int | None = None
    seed: int = 0
    metric: Callable | None = None
    checkpoint: str | None = None

    def __post_init__(self):
        if self.batch_size is not None and not (_whole(self.batch_size) and self.batch_size >= 1):
            raise TrainingError(f"the batch size must be a positive whole number, got {self.batch_size!r}",
                                about="batch_size")
        if not (_whole(self.seed) and self.seed >= 0):
            raise TrainingError(f"the seed must be a whole number, 0 or more, got {self.seed!r}", about="seed")
        state = sum(p.nbytes for p in self.model.parameters.values()) * (2 + len(self.optimizer.moments))
        try:  # parameters, their gradients and the optimiser's moments, before any allocation
            refuse_if_too_big(f"training {', '.join(self.model.parameters)} with {self.optimizer.name}", state)
        except IndexCalcError as err:
            raise TrainingError(err.problem) from None
        if self.checkpoint:  # before any work: a run must not end unable to save it
            check_output_path(self.checkpoint, "the checkpoint", replaceable=is_checkpoint)
            remove_stale_temporaries(self.checkpoint)

    def fit(
        self,
        train: Mapping[str, np.ndarray],
        epochs: int,
        test: Mapping[str, np.ndarray] | None = None,
        params: dict[str, np.ndarray] | None = None,
        resume: str | None = None,
        progress: Callable[[int, dict], None] | None = None,
    ) -> Result:
        """Run `epochs` epochs (in total, counting those of a resumed checkpoint)."""
        if not (_whole(epochs) and epochs >= 0):
            raise TrainingError(f"epochs must be a whole number, 0 or more, got {epochs!r}", about="epochs")
        rng = np.random.default_rng(self.seed)
        history: list[dict[str, float]] = []
        start = 0
        params = dict(params) if params is not None else self.model.init_params(self.seed)
        if resume:
            params, start, history, rng = self._load(resume)
            if epochs < start:
                raise TrainingError(f"the checkpoint {resume} has already trained {start} epochs, more than the "
                                    f"{epochs} asked for in all: ask for more than {start} to go on",
                                    about="epochs")
        given = {k: train[k] for k in self.model.data if k in train}
        if not given:
            raise TrainingError(f"no data given for {', '.join(self.model.data) or 'the model (it names no data)'}",
                                about="data")
        n = sample_count(given, "the training data")
        if test:
            sample_count({k: test[k] for k in self.model.data if k in test}, "the test data")
        size = self.batch_size or n
        begun = time.perf_counter()
        good = last = dict(params)  # shallow: the optimisers make new arrays, never write in place
        kept = (dict(self.optimizer.state), rng.bit_generator.state)
        stopped, message, warnings = "done", "", []
        best = min((r["loss"] for r in history), default=math.inf)
        first = None
        try:
            self._preflight(params, train, test)
            with np.errstate(all="ignore"):  # a non-finite loss is reported below, in the user's terms
                for epoch in range(start, epochs):
                    order = rng.permutation(n)
                    total = 0.0
                    for lo in range(0, n, size):
                        picked = order[lo : lo + size]
                        batch = {k: np.asarray(v)[picked] for k, v in train.items()}
                        loss, grads = self.model.loss_and_grads(params, batch)
                        if not np.isfinite(loss) or not all(np.all(np.isfinite(g)) for g in grads.values()):
                            stopped = "nan"
                            what = f"the loss became {float(loss)}" if not np.isfinite(loss) else \
                                "the gradient became non-finite"
                            message = (f"{what} at epoch {epoch + 1}; training stopped and the parameters of "
                                       f"the last good step are kept (try a smaller learning rate)")
                            break
                        first = float(loss) if first is None else first
                        last = dict(params)  # the optimisers make new arrays, never write in place
                        self.optimizer.step(params, grads)
                        total += float(loss) * len(picked)
                    if stopped == "nan":
                        params = last
                        break
                    record = {"epoch": epoch + 1, "loss": total / n}
                    record.update(self.scores(params, train, "train"))
                    if test:
                        record.update(self.scores(params, test, "test"))
                    history.append(record)
                    if not warnings and record["loss"] > DIVERGED * min(best, first) and record["loss"] > first:
                        warnings.append(
                            f"the loss grew to {record['loss']:.3g} at epoch {epoch + 1}, over {DIVERGED:g} times "
                            f"its best ({min(best, first):.3g}): training is diverging; try a smaller learning "
                            f"rate (now {self.optimizer.lr:g})")
                    best = min(best, record["loss"])
                    good = dict(params)
                    kept = (dict(self.optimizer.state), rng.bit_generator.state)
                    if self.checkpoint:
                        self._save_or_fail(params, epoch + 1, history, rng)
                    if progress:
                        progress(epoch + 1, record)
        except MemoryError:
            saved = f"; {self.checkpoint} holds the last finished epoch" if self.checkpoint and history else ""
            raise TrainingError(f"out of memory in epoch {len(history) + start + 1} (try a smaller batch size)"
                                f"{saved}") from None
        except KeyboardInterrupt:
            stopped, message = "interrupted", "interrupted: the parameters of the last finished epoch are kept"
            params = good
            self.optimizer.state, rng.bit_generator.state = dict(kept[0]), kept[1]
        done = history[-1]["epoch"] if history else start
        if stopped != "done" and self.checkpoint:
            self._save_or_fail(params, done, history, rng)
        return Result(params, history, done, stopped, message, time.perf_counter() - begun, warnings)

    def _preflight(self, params, train, test) -> None:
        """The loss (and metric) on one sample of each split, so that arrays that do not fit
        the equations fail now, not after an epoch's work."""
        self.scores(params, {k: np.asarray(v)[:1] for k, v in train.items()}, "train")
        if test:
            self.scores(params, {k: np.asarray(v)[:1] for k, v in test.items()}, "test")

    def scores(self, params, data: Mapping[str, np.ndarray], prefix: str) -> dict[str, float]:
        """The loss on all of `data`, and the metric if the model has one."""
        loss, _ = self.model.loss_and_grads(params, data)
        out = {f"{prefix}_loss": float(loss)} if prefix != "train" else {}
        if self.metric is not None:
            out[f"{prefix}_accuracy"] = float(self.metric(self.model, params, data))
        return out

    # --- checkpoints
    def _save_or_fail(self, params, epoch: int, history, rng) -> None:
        try:
            self.save(self.checkpoint, params, epoch, history, rng)
        except OSError as err:
            raise TrainingError(f"could not write the checkpoint {self.checkpoint} ({err.strerror or err}); "
                                f"the one written last is intact") from None

    def save(self, path: str, params, epoch: int, history, rng: np.random.Generator) -> None:
        """Write the whole state to a temporary file, then rename it over `path`. The
        temporary's name carries this process's id, so that one left by a killed run is
        recognised and removed by the next (`remove_stale_temporaries`)."""
        arrays = {f"param.{k}": v for k, v in params.items()}
        arrays.update({f"opt.{k}": np.asarray(v) for k, v in self.optimizer.state.items()})
        meta = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "history": history, "rng": rng.bit_generator.state,
                "optimizer": self.optimizer.name, "equations": str(self.model.program)}
        arrays["meta"] = np.asarray(json.dumps(meta))
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

    def _load(self, path: str):
        """The state in a checkpoint, every part checked against this model and optimiser
        before any of it is used: a checkpoint is a file a user may have edited, damaged or
        taken from another model."""
        try:
            arrays = read_npz(path, "the checkpoint", kinds="biufU")
        except DataError as err:
            raise TrainingError(f"cannot resume: {err.problem}") from None
        where = f"the checkpoint {path}"
        meta = _meta(arrays, where)
        if meta.get("optimizer") != self.optimizer.name:
            raise TrainingError(f"{where} was made with {meta.get('optimizer')}, not {self.optimizer.name}",
                                about="optimizer")
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param.")}
        missing = sorted(set(self.model.parameters) - set(params))
        if missing:
            raise TrainingError(f"{where} lacks parameters {', '.join(missing)}: it is from another model "
                                f"(it has {', '.join(params) or 'none'})")
        for name, value in params.items():
            declared = self.model.parameters.get(name)
            if declared is None:
                raise TrainingError(f"{where} has a parameter {name} this model does not declare: "
                                    f"it is from another model")
            if value.shape != declared.shape:
                raise TrainingError(f"{where} holds {name} with shape {value.shape}, but the model declares "
                                    f"{name} with shape {declared.shape}: it is from another model",
                                    about=f"param {name}")
            if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
                raise TrainingError(f"{where}: {name} is not finite floating-point numbers (dtype {value.dtype})")
        if meta["equations"] != str(self.model.program):
            raise TrainingError(f"{where} was written for other equations: {meta['equations']!r}, not "
                                f"{str(self.model.program)!r}")
        self.optimizer.state = _optimiser_state(arrays, self.optimizer, self.model, where)
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = meta["rng"]
        except (ValueError, TypeError, KeyError, OverflowError):
            kind = meta["rng"].get("bit_generator") if isinstance(meta["rng"], dict) else None
            raise TrainingError(f"{where}: its shuffling generator's state is not a {type(rng.bit_generator).__name__}"
                                f" state (it says {kind!r})") from None
        return params, meta["epoch"], meta["history"], rng


CHECKPOINT_FORMAT = "indexcalc checkpoint 1"


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
    if not (_whole(epoch) and epoch >= 0):
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


def _optimiser_state(arrays, optimizer: SGD, model: Model, where: str) -> dict[str, np.ndarray]:
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


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# ---------------------------------------------------------------- output paths


def check_output_path(path: str, what: str, replaceable: Callable[[str], bool] | None = None) -> None:
    """Refuse an output path that cannot be written, before any work is done: a missing
    folder, a file where a folder should be, a folder where the file should be, a folder
    that cannot be written to (tried, not guessed from permission bits), or, with
    `replaceable`, an existing file that is not what would be written there."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise TrainingError(f"{what} {path} is a folder; give a file name in it, e.g. "
                            f"{os.path.join(path, 'checkpoint.npz' if 'checkpoint' in what else 'loss.png')}")
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
        if replaceable is not None and not replaceable(target):
            raise TrainingError(f"{what} {path} exists and is not one; not overwriting it "
                                f"(move it away or choose another name)")


def is_checkpoint(path: str) -> bool:
    """Whether `path` looks like a checkpoint (an .npz with metadata) or is empty, so that
    overwriting it loses nothing a user made by other means."""
    if os.path.getsize(path) == 0:
        return True
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


# ---------------------------------------------------------------- metrics and model files


def accuracy(output: str, target: str) -> Callable:
    """Classification accuracy: argmax over classes, or the side of 0.5 for one output."""

    def measure(model: Model, params, data) -> float:
        predicted = np.asarray(model.evaluate(output, params, data))
        wanted = np.asarray(data[target])
        if predicted.ndim > 1 and predicted.shape[-1] > 1:
            return float(np.mean(predicted.argmax(-1) == wanted.argmax(-1)))
        threshold = 0.0 if np.all(np.isin(wanted, (-1.0, 1.0))) else 0.5
        side = predicted.reshape(len(wanted), -1) > threshold
        return float(np.mean(side == (wanted.reshape(len(wanted), -1) > threshold)))

    return measure


def train_file(model_file, *, epochs: int | None = None, lr: float | None = None, seed: int | None = None,
               batch_size: int | None = None, checkpoint: str | None = None, resume: str | None = None,
               progress: Callable[[int, dict], None] | None = None,
               prepared: Callable[[object], None] | None = None) -> tuple[Result, dict, dict]:
    """Train what a model file declares (settings given here override its own). Errors
    point at the model-file line they concern. `prepared` is called with the data set
    once everything has been checked, just before the first epoch."""
    mf = model_file
    try:
        trainer, data = prepare(mf, lr=lr, seed=seed, batch_size=batch_size, checkpoint=checkpoint)
        if prepared:
            prepared(data)
        result = trainer.fit(data.train, mf.epochs if epochs is None else epochs, test=data.test or None,
                             resume=resume, progress=progress)
    except IndexCalcError as err:
        raise mf.locate(err) from None
    return result, data.train, data.test


def prepare(mf, *, lr: float | None = None, seed: int | None = None, batch_size: int | None = None,
            checkpoint: str | None = None):
    """The Trainer and the checked data set for a model file, before any training."""
    if mf.dataset is None:
        raise TrainingError(f"{mf.name} declares no dataset (dataset xor, ..., or dataset FILE.npz)")
    if checkpoint and _same_file(checkpoint, [mf.name, os.path.join(mf.folder, mf.dataset)]):
        raise TrainingError(f"the checkpoint {checkpoint} would overwrite the model's own files")
    name, settings = mf.optimizer
    chosen = optimiser(name, **(settings if lr is None else {**settings, "lr": lr}))
    seed = mf.seed if seed is None else seed
    trainer = Trainer(mf.model, chosen, batch_size=mf.batch_size if batch_size is None else batch_size,
                      seed=seed, metric=accuracy(*mf.metric) if mf.metric else None, checkpoint=checkpoint)
    data = mf.load_data(seed)
    check_data_ranks(mf.model, data)
    return trainer, data


def check_data_ranks(model: Model, data) -> None:
    """Each data array has the axes its tensor's indices say (a batch axis first, then
    one per index), with a hint for the commonest mismatch: class labels where the
    equations read one-hot rows."""
    uses = {t.name: t for eq in model.program.equations for t in eq.walk()
            if isinstance(t, Tensor) and t.name in model.data and not t.derivs}
    for split, arrays in (("train", data.train), ("test", data.test)):
        for name, value in arrays.items():
            use = uses.get(name)
            if use is None or np.ndim(value) == len(use.indices):
                continue
            written = next(t for eq in model.per_sample.equations for t in eq.walk()
                           if isinstance(t, Tensor) and t.name == name)
            shape = np.shape(value)
            if model.batch:
                shape_note = "one number per sample" if len(shape) == 1 else f"{shape[1:]} per sample"
                shape_note = f"{shape} ({shape_note})"
            else:
                shape_note = str(shape)
            count = len(written.indices)
            message = (f"the {split} array {name} of {data.source} has shape {shape_note}, but the equations "
                       f"write {written}, with {count} {'index' if count == 1 else 'indices'}")
            labels = np.asarray(value)
            if model.batch and labels.ndim == 1 and len(written.indices) == 1 and np.all(labels == np.round(labels)):
                classes = int(labels.max()) + 1
                message += f"; if {name} holds class labels, declare: onehot {name} {max(classes, 2)}"
            raise TrainingError(message, about="dataset")


def _same_file(path: str, others: list[str]) -> bool:
    return any(os.path.exists(path) and os.path.exists(o) and os.path.samefile(path, o) for o in others)
