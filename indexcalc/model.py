"""A model is its equations: layers and loss as index notation, plus what to train.

    model = ic.Model('''
        h_i = σ(W1_ij x_j + b1_i)
        yhat_k = σ(W2_ki h_i + b2_k)
        loss = (yhat_k - y_k)(yhat_k - y_k)
    ''', params={"W1": (4, 2), "b1": 4, "W2": (1, 4), "b2": 1},
        init={"W1": "xavier", "W2": "xavier"}, data=["x", "y"], batch="n", reduce="mean")

The equations may be written per sample, as the notes write them: with `batch="n"`, every
data tensor and everything computed from one gains the index n, and the per-sample loss
is reduced over the batch as `reduce` says (sum or mean: stated, never implied, since the
gradient's scale depends on it). Equations that already carry a batch index work too:
then give `batch` as None and write the reduction in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .compile import Compiled, compile as compile_program
from .errors import IndexCalcError
from .expr import Equation, Expr, Program, Reduce, Tensor
from .notation import parse
from .relabel import letters_in
from .expr import map_tensors

INITIALISERS = ("zeros", "ones", "normal", "uniform", "xavier", "glorot", "he")


class ModelError(IndexCalcError):
    """A model's declarations do not fit its equations."""


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple[int, ...]
    init: str = "normal"
    scale: float = 1.0

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
        elif self.init == "he":
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), self.shape)
        else:
            raise ModelError(f"unknown initialiser {self.init!r} for {self.name} (known: {', '.join(INITIALISERS)})")
        return np.asarray(value, dtype=dtype)


@dataclass
class Model:
    """Equations, parameters, data tensors and how the loss is reduced over a batch."""

    source: str | Expr
    params: Mapping[str, object]
    data: Sequence[str] = ()
    batch: str | None = "n"
    reduce: str = "mean"
    init: Mapping[str, str] = field(default_factory=dict)
    loss: str | None = None
    output: str | None = None

    def __post_init__(self):
        node = parse(self.source) if isinstance(self.source, str) else self.source
        equations = list(node.equations) if isinstance(node, Program) else [node]
        if not all(isinstance(eq, Equation) for eq in equations):
            raise ModelError("a model is a program of equations, one per line: name_ij = ...")
        self.per_sample = Program(tuple(equations))
        self.loss = self.loss or equations[-1].lhs.name
        self.parameters = {name: _param(name, spec, self.init.get(name)) for name, spec in self.params.items()}
        self.data = tuple(self.data)
        self._check_names(equations)
        if self.reduce not in ("mean", "sum"):
            raise ModelError(f"reduce is 'mean' or 'sum' (the loss over the batch), got {self.reduce!r}")
        self.program = self._batched(equations) if self.batch else self.per_sample
        last = self.program.equations[-1]
        if last.lhs.all_indices:
            raise ModelError(f"the loss {last.lhs} must be a scalar")
        self._compiled: Compiled | None = None
        self._forward: dict[str, Compiled] = {}

    def _check_names(self, equations: list[Equation]) -> None:
        defined = {eq.lhs.name for eq in equations}
        read = {t.name for eq in equations for t in eq.rhs.walk() if isinstance(t, Tensor)}
        for name in self.parameters:
            if name not in read:
                raise ModelError(f"parameter {name} does not occur in the equations")
        for name in self.data:
            if name not in read:
                raise ModelError(f"data tensor {name} does not occur in the equations")
        unknown = sorted(read - defined - set(self.parameters) - set(self.data))
        if unknown:
            span = next((t.span for eq in equations for t in eq.rhs.walk()
                         if isinstance(t, Tensor) and t.name in unknown and t.span), None)
            raise ModelError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} neither a parameter, "
                f"nor data, nor computed by an equation",
                text=self.source if span and isinstance(self.source, str) else None,
                pos=span[0] if span else None,
            )
        if self.loss not in defined:
            raise ModelError(f"no equation computes the loss {self.loss!r}")

    def _batched(self, equations: list[Equation]) -> Program:
        """Per-sample equations → batched: n joins every tensor that depends on data."""
        n = self.batch
        used = set().union(*(letters_in(eq) for eq in equations))
        if n in used:
            raise ModelError(f"the batch index {n} is already used in the equations; pick another letter")
        batched = set(self.data)
        out = []
        for eq in equations:
            rhs = map_tensors(eq.rhs, lambda t: Tensor(t.name, (n,) + t.indices, t.derivs, span=t.span) if t.name in batched else t)
            depends = any(isinstance(t, Tensor) and t.name in batched for t in eq.rhs.walk())
            if eq.lhs.name == self.loss:
                name = Tensor(self.loss, eq.lhs.indices)
                if depends:
                    per_sample = Tensor(f"{self.loss}_sample", (n,) + eq.lhs.indices)
                    out.append(Equation(per_sample, rhs))
                    rhs = Reduce(self.reduce, (n,), Tensor(per_sample.name, per_sample.indices))
                out.append(Equation(name, rhs))
                continue
            lhs = eq.lhs
            if depends:
                batched.add(lhs.name)
                lhs = Tensor(lhs.name, (n,) + lhs.indices, lhs.derivs)
            out.append(Equation(lhs, rhs))
        return Program(tuple(out))

    # --- numbers
    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: p.initial(rng, dtype) for name, p in self.parameters.items()}

    @property
    def gradient(self) -> Compiled:
        """The compiled loss and gradients by every parameter."""
        if self._compiled is None:
            self._compiled = compile_program(self.program, wrt=list(self.parameters), of=self.loss)
        return self._compiled

    def loss_and_grads(self, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]):
        return self.gradient({**data, **params})

    def evaluate(self, name: str, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value of any equation's result (the output, say) on a batch."""
        if name not in self._forward:
            self._forward[name] = compile_program(self.program, of=name)
        value, _ = self._forward[name]({**data, **params})
        return value


def _param(name: str, spec, init: str | None) -> Param:
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, (int, np.integer)):
        return Param(name, (int(spec),), init or "normal")
    if isinstance(spec, tuple) and all(isinstance(s, (int, np.integer)) for s in spec):
        return Param(name, tuple(int(s) for s in spec), init or "normal")
    raise ModelError(f"the shape of parameter {name} must be a whole number or a tuple of them, got {spec!r}")
