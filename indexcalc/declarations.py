"""What a model declares beside its equations, and the error when a declaration does not
fit them: each parameter's shape and how it starts (`Param`, the initialisers), and the
names the training layer gives the lines it adds to a model's program (`unused_name`).

In a module of its own, below the model: a weights file (`saved`) rebuilds the
parameters it declares without importing the model, which saves through it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import IndexCalcError

INITIALISERS = ("zeros", "ones", "normal", "uniform", "xavier", "glorot", "he")
SCALED = ("normal", "uniform")  # the initialisers that take a number: normal(std), uniform(a)


class ModelError(IndexCalcError):
    """A model's declarations do not fit its equations.

    `about` names the declaration the error concerns ("param W2", "loss", "metric", ...),
    so that a model file can point at the line where the user wrote it."""

    def __init__(self, message: str, *, text: str | None = None, pos: int | None = None,
                 about: str | None = None):
        super().__init__(message, text=text, pos=pos)
        self.about = about


@dataclass(frozen=True)
class Param:
    """A parameter: its name, its shape, and how its first values are drawn (an
    initialiser, and the number `normal` and `uniform` take), checked when declared."""

    name: str
    shape: tuple[int, ...]
    init: str = "normal"
    scale: float = 1.0

    def __post_init__(self):
        about = f"param {self.name}"
        if not all(isinstance(d, (int, np.integer)) and d >= 1 for d in self.shape):
            raise ModelError(f"the shape of {self.name} must be positive whole numbers, got {self.shape}", about=about)
        if self.init not in INITIALISERS:
            raise ModelError(f"unknown initialiser {self.init!r} for {self.name} (known: {', '.join(INITIALISERS)})",
                             about=about)
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ModelError(f"{self.init}({self.scale:g}) for {self.name}: the number in {self.init}(...) "
                             f"must be positive (a standard deviation or a half-width)", about=about)

    @property
    def nbytes(self) -> int:
        """Bytes of the float64 array, worked out before any allocation."""
        return int(np.prod(self.shape, dtype=object)) * 8

    def initial(self, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
        """Zeros, normal(scale), uniform, Xavier/Glorot uniform, or He normal."""
        fan_in = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1
        fan_out = self.shape[0] if self.shape else 1
        if self.init == "zeros":
            value = np.zeros(self.shape)
        elif self.init == "ones":
            value = np.ones(self.shape)
        elif self.init == "normal":
            value = rng.normal(0.0, self.scale, self.shape)
        elif self.init == "uniform":
            value = rng.uniform(-self.scale, self.scale, self.shape)
        elif self.init in ("xavier", "glorot"):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, self.shape)
        else:  # he
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), self.shape)
        return np.asarray(value, dtype=dtype)


def unused_name(base: str, taken: set[str]) -> str:
    """`base`, or `base1`, `base2`, ... : the first not in `taken`, which it joins. The
    lines a model adds (a batch's derivative, Newton's products) must not take a name the
    user's program uses."""
    name = next(f"{base}{k or ''}" for k in range(1 << 30) if f"{base}{k or ''}" not in taken)
    taken.add(name)
    return name
