"""Every argument of a training run, checked where it is given.

A Trainer's settings, the arrays handed to `fit` and the initial parameters are refused
with a `TrainingError` that names the argument and what it should be, before any work:
a list where a dict of arrays is wanted, `weight_decay=None`, a metric of two arguments
or a checkpoint path that cannot be written would otherwise fail inside the loop as a
Python error, or after an epoch's work. The training loop (`train`) can then take its
arguments as given. Names become the objects they name here, as a model file's lines do:
`optimizer="adam"` is `Adam()`, `schedule="cosine"` the cosine schedule.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .checkpoints import check_output_path, is_checkpoint, remove_stale_temporaries
from .datasets import refuse_if_too_big
from .errors import IndexCalcError
from .model import Model
from .optimisers import optimiser
from .schedules import Schedule, schedule
from .training_arrays import arrays_for, to_numpy
from .training_errors import TrainingError, file_path, is_whole, require_named_arrays

if TYPE_CHECKING:  # pragma: no cover
    from .train import Trainer


def settle(trainer: "Trainer") -> None:
    """Check a Trainer's settings, turning names into what they name and paths into
    strings, and refuse what cannot run: an unknown or missing backend library, a state
    too big for the machine, a checkpoint that cannot be written."""
    if not isinstance(trainer.model, Model):
        raise TrainingError(f"a Trainer trains an ic.Model (its equations and parameters), got "
                            f"{type(trainer.model).__name__}")
    if isinstance(trainer.optimizer, str):
        trainer.optimizer = optimiser(trainer.optimizer)
    missing = [a for a in ("name", "moments", "state", "step") if not hasattr(trainer.optimizer, a)]
    if missing:
        raise TrainingError(f"the optimizer {trainer.optimizer!r} has no {', '.join(missing)}: give ic.SGD(lr), "
                            f"ic.Momentum, ic.Adam, ic.Newton, ic.LBFGS, a name ('adam'), or a subclass of ic.SGD",
                            about="optimizer")
    _settle_callables(trainer)
    _check_loop_settings(trainer)
    if not isinstance(trainer.backend, str):
        raise TrainingError(f"the backend is a name (numpy, jax, torch, dask, cupy), got {trainer.backend!r}",
                            about="backend")
    try:  # an unknown or missing library before any work, naming the extra to install
        arrays_for(trainer.backend)
    except IndexCalcError as err:
        raise TrainingError(err.problem, about="backend") from None
    if trainer.batch_size is not None and not (is_whole(trainer.batch_size) and trainer.batch_size >= 1):
        raise TrainingError(f"the batch size must be a positive whole number, got {trainer.batch_size!r}",
                            about="batch_size")
    if not (is_whole(trainer.seed) and trainer.seed >= 0):
        raise TrainingError(f"the seed must be a whole number, 0 or more, got {trainer.seed!r}", about="seed")
    parameters = trainer.model.parameters
    state = sum(p.nbytes for p in parameters.values()) * (2 + len(trainer.optimizer.moments))
    try:  # parameters, their gradients and the optimiser's moments, before any allocation
        refuse_if_too_big(f"training {', '.join(parameters)} with {trainer.optimizer.name}", state)
    except IndexCalcError as err:
        raise TrainingError(err.problem) from None
    if trainer.checkpoint is not None:
        trainer.checkpoint = file_path(trainer.checkpoint, "the checkpoint")
    if trainer.checkpoint:  # before any work: a run must not end unable to save it
        check_output_path(trainer.checkpoint, "the checkpoint", replaceable=is_checkpoint)
        remove_stale_temporaries(trainer.checkpoint)


def _settle_callables(trainer: "Trainer") -> None:
    """What a run calls or reads later: a schedule (by name, or a Schedule), a metric of
    (model, params, data), a monitor's name, and the two switches."""
    if isinstance(trainer.schedule, str):
        trainer.schedule = schedule(trainer.schedule)
    if trainer.schedule is not None and not isinstance(trainer.schedule, Schedule):
        raise TrainingError(f"the schedule is an indexcalc.schedules.Schedule or a name ('cosine'), "
                            f"got {trainer.schedule!r}", about="schedule")
    if trainer.metric is not None and not takes_three(trainer.metric):
        raise TrainingError(f"the metric is a function of (model, params, data) that returns a number, as "
                            f"indexcalc.train.accuracy('yhat', 'y') makes; got {trainer.metric!r}", about="metric")
    if trainer.monitor is not None and not isinstance(trainer.monitor, str):
        raise TrainingError(f"the monitor is the name of a score ('val_loss'), got {trainer.monitor!r}",
                            about="monitor")
    for name in ("fused", "keep_best"):
        if not isinstance(getattr(trainer, name), bool):
            raise TrainingError(f"{name} is True or False, got {getattr(trainer, name)!r}")


def _check_loop_settings(trainer: "Trainer") -> None:
    """The schedule, weight decay, clipping, validation and early-stopping settings."""
    optimizer = trainer.optimizer
    if trainer.schedule is not None and not isinstance(getattr(optimizer, "lr", None), (int, float)):
        raise TrainingError(f"{optimizer.name} has no learning rate to schedule", about="schedule")
    for name, value, fits, wanted in (
        ("weight_decay", trainer.weight_decay, lambda v: 0 <= v < math.inf, "a number, 0 or more"),
        ("clip", trainer.clip, lambda v: v is None or 0 < v < math.inf, "a positive number"),
        ("validation", trainer.validation, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    ):
        number = (value is None and name == "clip") or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not (number and fits(value)):
            raise TrainingError(f"{name} must be {wanted}, got {value!r}", about=name)
    if trainer.patience is not None and not (is_whole(trainer.patience) and trainer.patience >= 1):
        raise TrainingError(f"the patience must be a positive whole number of epochs, got {trainer.patience!r}",
                            about="patience")
    # a second-order step solves with the loss's own Hessian: a decay or clip added to the
    # gradient alone would be ignored by half of it, and L-BFGS runs SciPy's iterations
    unused = {"weight_decay": trainer.weight_decay, "clip": trainer.clip}
    if hasattr(optimizer, "fit"):
        unused.update(schedule=trainer.schedule, validation=trainer.validation, monitor=trainer.monitor,
                      patience=trainer.patience)
    if getattr(optimizer, "full_batch", False):
        for name, value in unused.items():
            if value:
                hint = " (write the decay into the loss)" if name == "weight_decay" else ""
                raise TrainingError(f"{name} does not apply to {optimizer.name}{hint}", about=name)


def check_fit_arguments(train, test, params, resume, progress) -> str | None:
    """`fit`'s arguments of the right kinds: dicts of arrays by name, a path to resume
    from (returned as a string), a progress function."""
    require_named_arrays(train, "training data")
    for what, arrays, example in (("test data", test, "{'x': X, 'y': Y}"),
                                  ("initial parameters", params, "{'W': W, 'b': b}")):
        if arrays is not None:
            require_named_arrays(arrays, what, example)
    if progress is not None and not callable(progress):
        raise TrainingError(f"progress is a function of (epoch, scores), got {progress!r}")
    return None if resume is None else file_path(resume, "cannot resume: the checkpoint")


def check_initial_params(model: Model, params: Mapping) -> None:
    """Initial parameters a caller passes: the model's names (a typo would otherwise be
    trained from the seed's values beside the stray array), finite real numbers."""
    strays = [name for name in params if name not in model.parameters]
    if strays:
        raise TrainingError(f"the initial parameters name {', '.join(map(str, strays))}, which the model does "
                            f"not declare (it declares {', '.join(model.parameters)})", about="params")
    for name, value in params.items():
        value = to_numpy(value)
        if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
            raise TrainingError(f"the initial parameters: {name} is not finite real numbers "
                                f"(dtype {value.dtype})", about=f"param {name}")


def takes_three(function) -> bool:
    """Whether `function` can be called with three positional arguments."""
    if not callable(function):
        return False
    try:
        inspect.signature(function).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some built-ins): let the call decide
        return True
    return True
