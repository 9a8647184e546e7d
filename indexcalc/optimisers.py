"""The optimisers: how a step turns gradients into new parameters, `w ← w − η g` and its
refinements (momentum, Adam), and the checked factory that builds one from a name and
settings, as a model file's `optimizer` line gives them.

A step puts new arrays in `params` and never writes into the old ones: the training loop
relies on this to keep the last good parameters without copying them.
"""

from __future__ import annotations

import inspect
import math
from typing import Mapping

import numpy as np

from .training_errors import TrainingError


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


# The optimisers by the name a model file gives them.
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
