"""Learning-rate schedules: the factor the optimiser's learning rate is multiplied by in
each epoch, as a model file's `schedule` and `warmup` lines declare it.

    schedule step every=30 factor=0.5    # halved every 30 epochs
    schedule exponential factor=0.95     # × 0.95 each epoch
    schedule cosine floor=0.01           # from 1 down to `floor` over the run, half a cosine
    warmup 5                             # linear warm-up over the first 5 epochs, then the above

The rate changes per epoch, not per step (as Keras's LearningRateScheduler and PyTorch's
epoch schedulers do): an epoch's steps share one rate, the history records it, and a run
resumed from a checkpoint takes it up again from the epoch number alone. Epochs are
counted from 0; the rate of epoch e (0-based) is `lr · factor(e)`. With a warm-up of W
epochs, epoch e < W runs at `lr · (e + 1) / W` and the schedule starts after it, over the
epochs that remain: `lr · factor(e − W)` of a run of `epochs − W` epochs.

Each schedule is one entry of `SCHEDULES`: a function of the epoch, the run's epochs and
its own settings (keywords with defaults), whose settings are checked by `SETTINGS`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from .training_errors import TrainingError, is_whole


def constant(epoch: int, epochs: int) -> float:
    return 1.0


def step(epoch: int, epochs: int, every: float = 10, factor: float = 0.5) -> float:
    """× `factor` every `every` epochs (PyTorch's StepLR)."""
    return factor ** (epoch // int(every))


def exponential(epoch: int, epochs: int, factor: float = 0.95) -> float:
    """× `factor` each epoch (PyTorch's ExponentialLR)."""
    return factor**epoch


def cosine(epoch: int, epochs: int, floor: float = 0.0) -> float:
    """Half a cosine from 1 at the first epoch towards `floor` at the end (SGDR without
    restarts): 1 + (floor − 1)(1 − cos(π e / epochs)) / 2."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


SCHEDULES = {"constant": constant, "step": step, "exponential": exponential, "cosine": cosine}

# What each setting means and the values that make sense for it.
SETTINGS = {
    "every": ("the epochs between steps", lambda v: v >= 1 and float(v).is_integer(), "a positive whole number"),
    "factor": ("the factor", lambda v: 0 < v <= 1, "in (0, 1]"),
    "floor": ("the last epoch's factor", lambda v: 0 <= v <= 1, "in [0, 1]"),
}


@dataclass(frozen=True)
class Schedule:
    """A schedule by name with its settings, and a linear warm-up of `warmup` epochs."""

    name: str = "constant"
    settings: dict = field(default_factory=dict)
    warmup: int = 0

    def factor(self, epoch: int, epochs: int) -> float:
        """The learning rate's factor in epoch `epoch` (from 0) of a run of `epochs`."""
        if epoch < self.warmup:
            return (epoch + 1) / self.warmup
        return SCHEDULES[self.name](epoch - self.warmup, epochs - self.warmup, **self.settings)

    def __str__(self) -> str:
        text = " ".join([self.name, *(f"{k}={v:g}" for k, v in self.settings.items())])
        return text + (f", warm-up {self.warmup}" if self.warmup else "")


def schedule(name: str = "constant", warmup: int = 0, **settings: float) -> Schedule:
    """The schedule `name` with `settings`, each checked by name and value, so that a typo
    is told with the settings that exist."""
    if name not in SCHEDULES:
        raise TrainingError(f"unknown schedule {name!r} (known: {', '.join(SCHEDULES)})", about="schedule")
    valid = [k for k in inspect.signature(SCHEDULES[name]).parameters if k not in ("epoch", "epochs")]
    for key, value in settings.items():
        if key not in valid:
            has = f"its settings are {', '.join(f'{k}=' for k in valid)}" if valid else "it has none"
            raise TrainingError(f"the {name} schedule has no setting {key!r}; {has}", about="schedule")
        meaning, fits, wanted = SETTINGS[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not fits(value):
            raise TrainingError(f"{key}={value} for the {name} schedule: {meaning} must be {wanted}",
                                about="schedule")
    if not (is_whole(warmup) and warmup >= 0):
        raise TrainingError(f"the warm-up takes a whole number of epochs (0 or more), got {warmup!r}",
                            about="warmup")
    return Schedule(name, {k: float(v) for k, v in settings.items()}, int(warmup))
