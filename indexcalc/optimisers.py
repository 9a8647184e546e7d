"""The optimisers by the name a model file gives them, and the checked factory that builds
one from a name and settings, as a model file's `optimizer` line gives them.

The first-order ones (SGD, momentum, Adam) live in indexcalc.first_order, Newton and
L-BFGS in indexcalc.second_order, which builds on them; this table is above both, so
neither imports the other's way round.
"""

from __future__ import annotations

import inspect

from .first_order import SGD, Adam, Momentum, check_settings
from .second_order import LBFGS, SETTINGS, Newton
from .training_errors import TrainingError

__all__ = ["SGD", "Momentum", "Adam", "Newton", "LBFGS", "OPTIMISERS", "SETTINGS", "optimiser", "settings_of"]

OPTIMISERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam, "newton": Newton, "lbfgs": LBFGS}


def settings_of(name: str) -> list[str]:
    """The settings an optimiser takes (its constructor's keywords)."""
    return [k for k in inspect.signature(OPTIMISERS[name].__init__).parameters if k != "self"]


def optimiser(name: str, **settings: float) -> SGD:
    """The optimiser `name` with `settings`, each checked by name and value, so that a typo
    (`learning_rate=`) is told with the settings that exist rather than a Python error."""
    if name not in OPTIMISERS:
        raise TrainingError(f"unknown optimiser {name!r} (known: {', '.join(OPTIMISERS)})", about="optimizer")
    valid = settings_of(name)
    for key in settings:
        if key not in valid:
            raise TrainingError(f"{name} has no setting {key!r}; its settings are "
                                f"{', '.join(f'{k}=' for k in valid)}", about="optimizer")
    check_settings(name, SETTINGS, **settings)
    return OPTIMISERS[name](**{k: float(v) for k, v in settings.items()})
