"""The training loop: epochs of mini-batch steps `w ← w − η loss_{,(gh)}`, and the glue
that trains what a model file declares. The update rules are in `optimisers`, the
checkpoint file and the output-path checks in `checkpoints`.

Training never loses work. A loss that turns NaN or infinite stops the run with a clear
message and the parameters of the last good step; Ctrl-C ends the run cleanly with them,
and an exception from the user's progress function is raised again with the run's Result on it;
checkpoints (parameters, optimiser state, epoch, history, the generator's state) are
written atomically, and a run resumed from one continues exactly as if it had never
stopped, since the shuffling generator is part of the state. Everything that can be
checked before the first epoch is (settings, output paths, data, the checkpoint resumed
from), so that a mistake costs a message, not a run.

A run may live on another array library (`backend="jax"`, "torch", "dask", "cupy"): the
data set goes over once, and the parameters, batches and optimiser state stay that
library's arrays from step to step (`training_arrays`); the shuffling stays NumPy's, so the
batches are NumPy's, and checkpoints stay NumPy `.npz` files, which resume on any backend.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .checkpoints import read_best, read_checkpoint, write_checkpoint
from .datasets import sample_count
from .metrics import accuracy, mae, mse  # noqa: F401  accuracy, mse, mae: `from indexcalc.train import`
from .errors import IndexCalcError
from .expr import Tensor
from .model import Model
from .modelfile import ModelFile, load
from .optimisers import SGD, Adam, optimiser  # noqa: F401  Adam: README's `from indexcalc.train import Trainer, Adam`
from .schedules import Schedule
from .second_order import LBFGS, Newton  # noqa: F401  as Adam: `from indexcalc.train import Trainer, Newton`
from .backends import backend_name_of
from .step import FusedStep, fusable
from .training_arrays import arrays_for
from .training_checks import check_fit_arguments, check_initial_params, settle
from .training_errors import ProgressRaised, Result, TrainingError, call_progress, carrying, is_whole


# ---------------------------------------------------------------- the loop


DIVERGED = 1000.0  # an epoch's loss this many times its best so far (and above the start) is reported


class _Best:
    """The monitored best epoch of a run: its number, score and parameters, taken up
    again from a resumed run's history (and its checkpoint's kept parameters). Accuracy
    is best highest, anything else (a loss, mse, mae) lowest; a tie is no improvement."""

    def __init__(self, monitor: str | None, history: list[dict], params: dict | None):
        self.monitor, self.value, self.epoch, self.params = monitor, None, None, None
        self.highest = bool(monitor) and monitor.endswith("accuracy")
        for record in history if monitor else []:
            self.saw(record, None)
        if self.epoch is not None and params is None:  # a checkpoint without them: start afresh
            self.value = self.epoch = None
        self.params = params

    def saw(self, record: dict, params: dict | None, copy: Callable[[dict], dict] = dict) -> None:
        """Note the epoch's record; keep `copy(params)` if it is the best so far (a shallow
        copy for optimisers that make new arrays, a deep one for the fused step's buffers)."""
        value = record.get(self.monitor) if self.monitor else None
        if value is None or not math.isfinite(value):
            return
        if self.value is None or (value > self.value if self.highest else value < self.value):
            self.value, self.epoch = value, record["epoch"]
            self.params = copy(params) if params is not None else None

    def ran_out(self, patience: int) -> str:
        return f"{self.monitor} has not improved for {patience} epochs since epoch {self.epoch}: stopped early"

    def waited(self, epoch: int) -> int:
        """Epochs since the best, after `epoch` epochs."""
        return epoch - self.epoch if self.epoch is not None else 0


@dataclass
class _Run:
    """One fit's state from epoch to epoch: its arrays, the shuffling generator, the
    history, the parameters a NaN returns to (those before the last good step) and those
    a Ctrl-C returns to (the last finished epoch's, with the optimiser's state and the
    generator's)."""

    optimizer: SGD
    on: object  # the run's arrays (training_arrays)
    params: dict
    train: Mapping
    held: Mapping  # the validation split ({} without one)
    test: Mapping | None
    n: int  # training samples, the split held out
    size: int  # the batch size
    start: int  # epochs already run (a resumed checkpoint's)
    rng: np.random.Generator
    history: list[dict]
    watch: _Best
    fused: FusedStep | None
    summed: bool  # the loss sums over the batch (else it is a mean)
    first: float | None = None  # the first step's loss
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.last = dict(self.params)
        self.best = min((r["loss"] for r in self.history), default=math.inf)
        self.keep()

    def keep(self) -> None:
        """Remember the parameters, optimiser state and generator state of now."""
        state = self.fused.snapshot() if self.fused is not None else (dict(self.params), dict(self.optimizer.state))
        self.kept = (state, self.rng.bit_generator.state)

    def restore_last_epoch(self) -> None:
        state, generator = self.kept
        self.params, optimizer_state = self.fused.unpack(state) if self.fused is not None else state
        self.optimizer.state, self.rng.bit_generator.state = dict(optimizer_state), generator

    def out_of_patience(self, epoch: int, patience: int | None) -> bool:
        return self.watch.waited(epoch) >= (patience or math.inf)


@dataclass
class Trainer:
    """Trains a model on named data arrays, batch by batch, from a seed, on NumPy or on
    another array library (`backend`: "jax", "torch", "dask", "cupy"). On a backend the
    data go over in the parameters' float type; to train on a GPU, pass the initial
    parameters (`fit(params=...)`) as arrays on it."""

    model: Model
    optimizer: SGD | str = field(default_factory=SGD)  # or a name: "adam" is Adam() with its defaults
    batch_size: int | None = None
    seed: int = 0
    metric: Callable | None = None
    checkpoint: str | None = None
    backend: str = "numpy"
    schedule: Schedule | None = None  # the learning rate per epoch (`schedules`)
    weight_decay: float = 0.0  # decoupled (AdamW) for adam, L2 on the gradient otherwise
    clip: float | None = None  # the gradients' global norm at most this
    validation: float = 0.0  # this fraction of the training data held out (drawn from the seed)
    monitor: str | None = None  # a history key ("val_loss", "test_accuracy"): the best epoch is its
    patience: int | None = None  # stop when the monitor has not improved for this many epochs
    keep_best: bool = True  # with a monitor, return the best epoch's parameters
    fused: bool = True  # on NumPy, SGD/momentum/Adam: one generated step, in place (indexcalc.step)

    def __post_init__(self):
        settle(self)
        self._base_lr = getattr(self.optimizer, "lr", None)

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
        resume = check_fit_arguments(train, test, params, resume, progress)
        if hasattr(self.optimizer, "fit"):  # one that runs its own iterations (second_order.LBFGS)
            return self.optimizer.fit(self, train, epochs, test=test, params=params, resume=resume, progress=progress)
        if not (is_whole(epochs) and epochs >= 0):
            raise TrainingError(f"epochs must be a whole number, 0 or more, got {epochs!r}", about="epochs")
        run = self._begin(train, epochs, test, params, resume)
        begun = time.perf_counter()
        stopped, message, raised = "done", "", None
        try:
            self._preflight(run.params, run.train, run.test)
            with np.errstate(all="ignore"):  # a non-finite loss is reported below, in the user's terms
                for epoch in range(run.start, epochs):
                    if run.out_of_patience(epoch, self.patience):  # a resumed run's, run out
                        stopped, message = "early", run.watch.ran_out(self.patience)
                        break
                    lr = self._set_lr(run.on, epoch, epochs)
                    total, failure = self._epoch(run)
                    if failure:
                        stopped, message = "nan", f"{failure} at epoch {epoch + 1}; training stopped and the " \
                            "parameters of the last good step are kept (try a smaller learning rate)"
                        break
                    self._finish_epoch(run, epoch, total, lr, progress)
                    if run.out_of_patience(epoch + 1, self.patience):
                        stopped, message = "early", run.watch.ran_out(self.patience)
                        break
        except ProgressRaised as err:
            raised = err.error
            stopped, message = "progress", err.message
        except Exception as err:  # MemoryError, or a backend's own (CUDA's, XLA's)
            if not run.on.out_of_memory(err):
                raise
            saved = f"; {self.checkpoint} holds the last finished epoch" if self.checkpoint and run.history else ""
            raise TrainingError(f"out of memory in epoch {len(run.history) + run.start + 1} (try a smaller batch "
                                f"size){saved}") from None
        except KeyboardInterrupt:
            stopped, message = "interrupted", "interrupted: the parameters of the last finished epoch are kept"
            run.restore_last_epoch()
        done = run.history[-1]["epoch"] if run.history else run.start
        if stopped not in ("done", "early") and self.checkpoint:
            self._save_or_fail(run.params, done, run.history, run.rng, run.watch.params)
        self._set_lr(run.on, None, epochs)
        params, chosen = run.params, None
        if run.watch.monitor and self.keep_best and run.watch.params is not None:
            params, chosen = run.watch.params, run.watch.epoch
            if stopped in ("nan", "interrupted", "progress"):
                message += f"; the run returns those of epoch {chosen}, the best by {run.watch.monitor}"
        result = Result(params, run.history, done, stopped, message, time.perf_counter() - begun, run.warnings,
                        run.watch.monitor, chosen)
        if raised is not None:
            raise carrying(raised, result)
        return result

    def _begin(self, train, epochs: int, test, params, resume) -> "_Run":
        """The run's state before its first epoch: parameters (given, initialised from the
        seed, or a checkpoint's), the optimiser's state afresh (or the checkpoint's), the
        data checked and placed on the run's arrays, the validation split held out, the
        monitor, and the fused step where it applies."""
        rng = np.random.default_rng(self.seed)
        history: list[dict[str, float]] = []
        start = 0
        given_params = params
        params = dict(params) if params is not None else self.model.init_params(self.seed)
        if hasattr(self.optimizer, "state"):  # a run's moments are its own: another fit's would skew its steps
            self.optimizer.state = {}
        if resume:
            params, start, history, rng = read_checkpoint(resume, self.optimizer, self.model)
            if epochs < start:
                raise TrainingError(f"the checkpoint {resume} has already trained {start} epochs, more than the "
                                    f"{epochs} asked for in all: ask for more than {start} to go on",
                                    about="epochs")
        given = {k: train[k] for k in self.model.data if k in train}
        if not given:
            raise TrainingError(f"no data given for {', '.join(self.model.data) or 'the model (it names no data)'}",
                                about="data")
        self.model.check_samples_first(train)  # one sample without its axis, before its rows are counted
        n = sample_count(dict(train), "the training data")  # every array: each is shuffled and batched
        if test:
            self.model.check_samples_first(test)
            sample_count(dict(test), "the test data")
        if given_params is not None:
            check_initial_params(self.model, given_params)
        on, params, train, test = self._placed(given_params, params, train, test)
        train, held = self._held_out(on, train, n)
        n -= len(next(iter(held.values()))) if held else 0
        monitor = self._monitor_for(held, test)
        watch = _Best(monitor, history, self._kept_best(on, resume) if monitor and resume else None)
        if getattr(self.optimizer, "full_batch", False):  # Newton (second_order): the Hessian of all the data
            self.optimizer.bind(self.model, train, self.batch_size or n, n)
        fused = FusedStep(self.model, self.optimizer) if self.fused and on.name == "numpy" and \
            not self.clip and not self.weight_decay and fusable(self.model, self.optimizer, params) else None
        if fused is not None:  # it writes in place: its own copies, kept by copy; a NaN step writes nothing
            params, train = fused.own(params), fused.data(train)
        return _Run(self.optimizer, on, params, train, held, test, n=n, size=self.batch_size or n, start=start,
                    rng=rng, history=history, watch=watch, fused=fused,
                    summed=self.model.batch is not None and self.model.reduce == "sum")

    def _epoch(self, run: "_Run") -> tuple[float, str | None]:
        """One pass over the shuffled training data, step by step: the sum of the batches'
        losses weighted to a mean over the samples, or what went non-finite (then the run's
        parameters are those before the last good step)."""
        order = run.rng.permutation(run.n)
        total = 0.0
        for lo in range(0, run.n, run.size):
            picked = order[lo : lo + run.size]
            if run.fused is not None:  # forward, backward and the update, in place
                loss, finite = run.fused(run.params, run.on.take(run.train, picked))
            else:
                before = dict(run.params)  # the optimisers make new arrays, never write in place
                loss, finite = self._step(run.on, run.params, run.on.take(run.train, picked))
            if not finite:
                run.params = run.last if run.fused is None else run.fused.before(run.params)
                return total, (f"the loss became {float(loss)}" if not math.isfinite(float(loss)) else
                               "the gradient became non-finite")
            run.first = float(loss) if run.first is None else run.first
            if run.fused is None:
                run.last = before
            # the epoch's loss is the mean over its samples whatever the batch size
            total += float(loss) if run.summed else float(loss) * len(picked)
        return total, None

    def _finish_epoch(self, run: "_Run", epoch: int, total: float, lr: float, progress) -> None:
        """The epoch's record (its loss, the rate, the splits' scores), the best epoch and
        the divergence warning by it, the state a Ctrl-C returns to, the checkpoint."""
        record = {"epoch": epoch + 1, "loss": total / run.n}
        if self.schedule is not None:
            record["lr"] = lr
        record.update(self.scores(run.params, run.train, "train"))
        if run.held:
            record.update(self.scores(run.params, run.held, "val"))
        if run.test:
            record.update(self.scores(run.params, run.test, "test"))
        run.history.append(record)
        run.watch.saw(record, run.params, _copies if run.fused is not None else dict)
        lowest = min(run.best, run.first)
        if not run.warnings and record["loss"] > DIVERGED * lowest and record["loss"] > run.first:
            run.warnings.append(
                f"the loss grew to {record['loss']:.3g} at epoch {epoch + 1}, over {DIVERGED:g} times its best "
                f"({lowest:.3g}): training is diverging; try a smaller learning rate (now {self.optimizer.lr:g})")
        run.best = min(run.best, record["loss"])
        run.keep()
        if self.checkpoint:
            self._save_or_fail(run.params, epoch + 1, run.history, run.rng, run.watch.params)
        if progress:
            call_progress(progress, epoch + 1, record)

    def _step(self, on, params: dict, batch: Mapping) -> tuple[object, bool]:
        """One mini-batch step, in place in `params`: the loss and gradients, the gradients
        clipped to the global norm `clip`, then weight decay and the optimiser's update.
        Returns the batch's loss and whether it and the gradients were finite (if not,
        `params` are left as they were)."""
        loss, grads = on.computed(*self.model.loss_and_grads(params, batch))
        if not on.finite(loss, grads):
            return loss, False
        if self.clip is not None:  # as torch.nn.utils.clip_grad_norm_: one norm over every gradient
            norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
            if norm > self.clip:
                grads = {k: g * (self.clip / norm) for k, g in grads.items()}
        decay, decoupled = self.weight_decay, isinstance(self.optimizer, Adam)
        if decay and not decoupled:  # L2: the gradient of (decay / 2) |w|², added after clipping
            grads = {k: g + decay * params[k] for k, g in grads.items()}
        before = dict(params)
        self.optimizer.step(params, grads)
        if decay and decoupled:  # AdamW (Loshchilov & Hutter): w ← w − η (update + decay · w)
            params.update({k: params[k] - self.optimizer.lr * decay * before[k] for k in grads})
        on.hold(params, self.optimizer.state)
        return loss, True

    def _set_lr(self, on, epoch: int | None, epochs: int) -> float:
        """The optimiser's learning rate for `epoch` by the schedule (None: back to the
        base rate, as the run leaves it). A backend's compiled update (jax.jit) read the
        rate when it was traced, so a change of rate wraps it anew."""
        if self.schedule is None:
            return getattr(self.optimizer, "lr", math.nan)
        lr = self._base_lr * (1.0 if epoch is None else self.schedule.factor(epoch, epochs))
        if lr != self.optimizer.lr:
            self.optimizer.lr = lr
            if getattr(self.optimizer, "_update", None) is not None:
                self.optimizer.run_on(on.update_xp or on.xp, on.wrap)
        return lr

    def _held_out(self, on, train, n: int):
        """The training data without its validation split, and the split (`validation` of
        the samples, drawn from the seed by a generator of their own, so that the
        shuffling is the same with or without one)."""
        if not self.validation:
            return train, {}
        count = round(self.validation * n)
        if not 1 <= count < n:
            raise TrainingError(f"a validation split of {self.validation:g} of {n} samples holds {count}: "
                                f"it must hold at least one and leave one to train on", about="validation")
        order = np.random.default_rng([self.seed, 1]).permutation(n)
        return on.take(train, np.sort(order[count:])), on.take(train, np.sort(order[:count]))

    def _monitor_for(self, held, test) -> str | None:
        """The history key the best epoch is chosen by, checked against the keys the run
        will record (the default with a patience: val_loss with a validation split, else
        the training loss)."""
        monitor = self.monitor
        if monitor is None and self.patience:
            monitor = "val_loss" if held else "loss"
        if monitor is None:
            return None
        metric = getattr(self.metric, "name", "accuracy") if self.metric is not None else None
        splits = ["train"] + (["val"] if held else []) + (["test"] if test else [])
        known = ["loss"] + [f"{s}_loss" for s in splits[1:]] + ([f"{s}_{metric}" for s in splits] if metric else [])
        if monitor not in known:
            hint = {"val": " (declare a validation split: validation 0.1)", "test": " (no test data is given)"}
            raise TrainingError(f"cannot monitor {monitor!r}: this run records {', '.join(known)}"
                                f"{hint.get(monitor.split('_')[0], '')}", about="monitor")
        return monitor

    def _kept_best(self, on, path: str) -> dict | None:
        """The best epoch's parameters a checkpoint keeps, on this run's arrays."""
        best = read_best(path, self.model)
        if best is None or on.name == "numpy":
            return best
        return {k: on.place(v, _float_type(on, v)) for k, v in best.items()}

    def _placed(self, given, params, train, test):
        """The run's arrays (`training_arrays`) and the parameters, optimiser state and data
        on them: NumPy's as they are, or over to the backend once, before the first step.
        The device is the given parameters', where they are the backend's arrays."""
        mine = [v for v in (given or {}).values() if backend_name_of([v]) == self.backend]
        on = arrays_for(self.backend, mine[0] if mine else None)
        if on.name == "numpy" and backend_name_of(params.values()) != "numpy":
            raise TrainingError(f"the parameters are {backend_name_of(params.values())} arrays but the trainer "
                                f"runs on NumPy: give Trainer(..., backend={backend_name_of(params.values())!r})",
                                about="backend")
        if hasattr(self.optimizer, "run_on"):  # an optimiser of one's own may do its own arithmetic
            self.optimizer.run_on(on.update_xp or on.xp, on.wrap)
        dtype = np.dtype("float64")
        if on.name != "numpy":
            params = {k: on.place(v, _float_type(on, v)) for k, v in params.items()}
            dtype = np.result_type(*(_float_type(on, v) for v in params.values())) if params else dtype
            self.optimizer.state = {k: on.place(v, _float_type(on, v)) if "." in k else v
                                    for k, v in self.optimizer.state.items()}  # Adam's step count stays a count
        return on, params, on.data(train, dtype), on.data(test, dtype) if test else test

    def _preflight(self, params, train, test) -> None:
        """The loss (and metric) on one sample of each split, so that arrays that do not fit
        the equations fail now, not after an epoch's work."""
        for split, arrays in (("train", train), ("test", test or {})):
            if arrays:
                one = {k: v[:1] for k, v in arrays.items()}
                if split == "train":  # the loss reads every data tensor (scores evaluate it for the test split)
                    self.model.evaluate(self.model.loss, params, one)
                self.scores(params, one, split)

    def scores(self, params, data: Mapping[str, np.ndarray], prefix: str) -> dict[str, float]:
        """The loss on all of `data`, and the metric if the model has one, by forward plans
        only: a score needs no gradient."""
        out = {}  # the train loss is the epoch's mean over its steps, reported by fit
        if prefix != "train":
            loss = float(self.model.evaluate(self.model.loss, params, data))
            if self.model.batch is not None and self.model.reduce == "sum":  # per sample, as the epoch's
                loss /= sample_count({k: data[k] for k in self.model.data if k in data}, f"the {prefix} data")
            out[f"{prefix}_loss"] = loss
        if self.metric is not None:
            value = self.metric(self.model, params, data)
            try:
                out[f"{prefix}_{getattr(self.metric, 'name', 'accuracy')}"] = float(value)
            except (TypeError, ValueError):
                raise TrainingError(f"the metric returned {value!r}, not a number", about="metric") from None
        return out

    # --- checkpoints (written and read by indexcalc.checkpoints)
    def _save_or_fail(self, params, epoch: int, history, rng, best=None) -> None:
        try:
            self.save(self.checkpoint, params, epoch, history, rng, best=best)
        except OSError as err:
            raise TrainingError(f"could not write the checkpoint {self.checkpoint} ({err.strerror or err}); "
                                f"the one written last is intact") from None

    def save(self, path: str, params, epoch: int, history, rng: np.random.Generator, best=None) -> None:
        """Write this run's whole state to `path`, atomically (see `write_checkpoint`), as
        NumPy arrays whatever the backend; `best`, the monitored best epoch's parameters."""
        write_checkpoint(path, params, epoch, history, rng, self.optimizer, self.model, best=best)


# ---------------------------------------------------------------- model files


def _copies(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays copied: what a step that writes in place cannot change."""
    return {k: np.copy(v) for k, v in arrays.items()}


def _float_type(on, value) -> np.dtype:
    """A parameter's float type on the backend: its own, or float64 for whole numbers."""
    own = backend_name_of([value]) == on.name
    dtype = on.backend.dtype_of(value) if own else np.asarray(value).dtype
    return dtype if dtype.kind == "f" else np.dtype("float64")


def train_file(model_file, *, epochs: int | None = None, lr: float | None = None, seed: int | None = None,
               batch_size: int | None = None, checkpoint: str | None = None, resume: str | None = None,
               progress: Callable[[int, dict], None] | None = None,
               prepared: Callable[[object], None] | None = None, backend: str | None = None,
               monitor: str | None = None, patience: int | None = None) -> tuple[Result, dict, dict]:
    """Train what a model file declares (settings given here override its own). Errors
    point at the model-file line they concern. `prepared` is called with the data set
    once everything has been checked, just before the first epoch. `model_file` is a
    `modelfile.ModelFile` or the path of one."""
    mf = model_file if isinstance(model_file, ModelFile) else load(model_file)
    try:
        trainer, data = prepare(mf, lr=lr, seed=seed, batch_size=batch_size, checkpoint=checkpoint, backend=backend,
                                monitor=monitor, patience=patience)
        if prepared:
            prepared(data)
        result = trainer.fit(data.train, mf.epochs if epochs is None else epochs, test=data.test or None,
                             resume=resume, progress=progress)
    except IndexCalcError as err:
        given = {word for word, value in (("monitor", monitor), ("patience", patience)) if value is not None}
        if getattr(err, "about", None) in given:
            err.about = None  # the caller's choice, not the file's line
        raise mf.locate(err) from None
    return result, data.train, data.test


def prepare(mf, *, lr: float | None = None, seed: int | None = None, batch_size: int | None = None,
            checkpoint: str | None = None, backend: str | None = None, monitor: str | None = None,
            patience: int | None = None):
    """The Trainer and the checked data set for a model file, before any training."""
    if mf.dataset is None:
        raise TrainingError(f"{mf.name} declares no dataset (dataset xor, ..., or dataset FILE.npz)")
    if checkpoint and _same_file(checkpoint, [mf.name, os.path.join(mf.folder, mf.dataset)]):
        raise TrainingError(f"the checkpoint {checkpoint} would overwrite the model's own files")
    name, settings = mf.optimizer
    chosen = optimiser(name, **(settings if lr is None else {**settings, "lr": lr}))
    seed = mf.seed if seed is None else seed
    try:
        trainer = Trainer(mf.model, chosen, batch_size=mf.batch_size if batch_size is None else batch_size,
                          seed=seed, metric=mf.measure(),
                          checkpoint=checkpoint, backend=mf.backend if backend is None else backend,
                          schedule=mf.schedule, weight_decay=mf.weight_decay, clip=mf.clip,
                          validation=mf.validation, monitor=mf.monitor if monitor is None else monitor,
                          patience=mf.patience if patience is None else patience)
    except TrainingError as err:
        if backend is not None and err.about == "backend":  # the caller's choice, not the file's line
            raise TrainingError(err.problem) from None
        raise
    data = mf.load_data(seed)
    check_data_ranks(mf.model, data)
    return trainer, data


def check_data_ranks(model: Model, data) -> None:
    """Each data array has the axes its tensor's indices say (a batch axis first, then
    one per index), with a hint for the commonest mismatch: class labels where the
    equations read one-hot rows."""
    for split, arrays in (("train", data.train), ("test", data.test)):
        for name, value in arrays.items():
            indices = model.data_indices.get(name)
            if indices is None or np.ndim(value) == len(indices) + bool(model.batch):
                continue
            written = Tensor(name, indices)
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
