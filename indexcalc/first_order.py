"""The first-order optimisers: how a step turns gradients into new parameters,
`w ← w − η g` and its refinements (momentum, Adam), and what their settings mean. The
table of optimisers by name, the second-order ones included, is indexcalc.optimisers.

A step puts new arrays in `params` and never writes into the old ones: the training loop
relies on this to keep the last good parameters without copying them. A step's arithmetic
is the arrays' own operators and `xp`'s routines (NumPy's, or the backend's the Trainer
runs on), so the parameters and the state stay on the backend's arrays from step to step.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Mapping

import numpy as np

from .training_errors import TrainingError


class SGD:
    """w ← w − η g: the index-notation note's update rule.

    A step puts new arrays in `params` and never writes into the old ones, so the loop
    keeps the last good parameters by holding on to the old dict, without copying.

    Each optimiser is its `update`: every parameter's new value and new moments from the
    gradients and the old moments (`state`, absent before the first step), in the arrays'
    operators and `xp`'s routines, with the step's host numbers (`scalars`, Adam's bias
    corrections). A backend may wrap it (`run_on`): under jax.jit a step is one dispatch,
    not one per operation."""

    name = "sgd"
    moments: tuple[str, ...] = ()  # per-parameter state arrays, keyed "<moment>.<parameter>"
    xp = np  # the routines an update calls beyond operators: NumPy's, or the backend's (run_on)

    def __init__(self, lr: float = 0.1):
        check_settings(self.name, SETTINGS, lr=lr)
        self.lr = lr
        self.state: dict[str, np.ndarray] = {}
        self._update: Callable | None = None

    def run_on(self, xp, wrap: Callable[[Callable], Callable] | None = None) -> None:
        """Step with `xp`'s routines, the update wrapped as the backend runs a plan."""
        self.xp = xp
        self._update = wrap(self.update) if wrap is not None else None

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        if self._update is None:  # NumPy's: the state as it is
            new, moved = self.update(params, grads, self.state, self.scalars())
        else:  # a wrapped update takes arrays only: Adam's count stays on the host
            scalars = self.scalars()
            arrays = {k: v for k, v in self.state.items() if k != "t"}
            new, moved = self._update({k: params[k] for k in grads}, dict(grads), arrays, scalars)
        params.update(new)
        self.state.update(moved)

    def scalars(self) -> tuple:
        """The step's numbers worked out on the host (none for SGD)."""
        return ()

    def update(self, params: Mapping, grads: Mapping, state: Mapping, scalars: tuple) -> tuple[dict, dict]:
        """The new values of the parameters in `grads`, and the new state arrays."""
        return {name: params[name] - self.lr * g for name, g in grads.items()}, {}


class Momentum(SGD):
    """v ← β v + g; w ← w − η v."""

    name = "momentum"
    moments = ("v",)

    def __init__(self, lr: float = 0.1, beta: float = 0.9):
        super().__init__(lr)
        check_settings(self.name, SETTINGS, beta=beta)
        self.beta = beta

    def update(self, params, grads, state, scalars):
        new, moved = {}, {}
        for name, g in grads.items():
            v = state.get(f"v.{name}")
            v = g if v is None else self.beta * v + g
            moved[f"v.{name}"] = v
            new[name] = params[name] - self.lr * v
        return new, moved


class Adam(SGD):
    """Adam (Kingma & Ba): moment estimates with bias correction."""

    name = "adam"
    moments = ("m", "v")  # and the step count "t"

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        check_settings(self.name, SETTINGS, beta1=beta1, beta2=beta2, eps=eps)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def scalars(self) -> tuple:
        """The step count, advanced, kept as a NumPy integer (a count, on the host), and
        the bias corrections it gives, as Python floats."""
        t = int(self.state.get("t", np.zeros(())) + 1)
        self.state["t"] = np.asarray(t)
        return (1 - self.beta1**t, 1 - self.beta2**t)

    def update(self, params, grads, state, scalars):
        first, second = scalars
        new, moved = {}, {}
        for name, g in grads.items():
            m = self.beta1 * state.get(f"m.{name}", 0.0) + (1 - self.beta1) * g
            v = self.beta2 * state.get(f"v.{name}", 0.0) + (1 - self.beta2) * g * g
            moved[f"m.{name}"], moved[f"v.{name}"] = m, v
            m_hat = m / first
            v_hat = v / second
            new[name] = params[name] - self.lr * m_hat / (self.xp.sqrt(v_hat) + self.eps)
        return new, moved


# What each setting means and the values that make sense for it.
SETTINGS = {
    "lr": ("the learning rate", lambda v: 0 < v < math.inf, "a positive number"),
    "beta": ("the momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta1": ("the first moment's decay", lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": ("the second moment's decay", lambda v: 0 <= v < 1, "in [0, 1)"),
    "eps": ("the denominator's guard", lambda v: 0 < v < math.inf, "a positive number"),
}


def check_settings(name: str, meanings: Mapping[str, tuple], **settings) -> None:
    """Each setting's value against what it means (`meanings`, as `SETTINGS`): the
    constructors call it, so `Adam(-1)` or `SGD("0.1")` is refused where it is written, not
    at the first step."""
    for key, value in settings.items():
        meaning, fits, wanted = meanings[key]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not fits(float(value)):
            raise TrainingError(f"{key}={value!r} for {name}: {meaning} must be {wanted}", about="optimizer")
