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
gradient's scale depends on it); `per_sample` writes them over the batch. Equations that
already carry a batch index work too: then give `batch` as None and write the reduction
in the loss.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .compile import Compiled, compile as compile_program
from .datasets import refuse_if_too_big
from .errors import IndexCalcError, given_as_one_name, read_as_indices
from .declarations import ModelError, Param
from .expr import Equation, Expr, Program, Tensor
from .notation import parse
from .tokens import is_index_name, is_letter_index
from .training_errors import is_whole, require_named_arrays
from .program import check_program
from .per_sample import batched
from . import saved


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
        equations = list(node.lines)
        if not all(isinstance(eq, Equation) for eq in equations):
            raise ModelError("a model is a program of equations, one per line: name_ij = ...")
        try:  # the user's own equations first, so that messages speak of what they wrote
            check_program(equations)
        except IndexCalcError as err:
            raise self._located(err) from None
        self.per_sample = Program(tuple(equations))
        self._check_arguments()
        self.loss = self.loss or equations[-1].lhs.name
        self.parameters = {name: _param(name, spec, self.init.get(name)) for name, spec in self.params.items()}
        self._check_names(equations)
        self._check_ranks(equations)
        self._check_memory()
        loss = next(eq.lhs for eq in equations if eq.lhs.name == self.loss)
        if loss.indices:
            raise self._located(ModelError(
                f"the loss {loss} must be a scalar (one number) but has the index {', '.join(loss.indices)}; "
                f"sum over it in its equation, e.g. {self.loss} = sum_{loss.indices[0]}(...)",
                pos=loss.span[0] if loss.span else None, about="loss"))
        self.program = self._batched(equations) if self.batch else self.per_sample
        self._compiled: Compiled | None = None
        self._forward: dict[str, Compiled] = {}

    def _located(self, err: IndexCalcError) -> IndexCalcError:
        """The error quoting the equations' text, where it has a position in them."""
        return err.with_source(self.source, None) if isinstance(self.source, str) and err.pos is not None else err

    def _check_arguments(self) -> None:
        """The Python arguments' kinds, before they are used: a list for `params`, a name
        for `init`, an integer for `batch` would otherwise fail inside as Python errors,
        and an `init` for a name that is no parameter would be dropped without a word.
        `data` may be one string of names, as a model file's data line writes them."""
        if not isinstance(self.params, Mapping):
            raise ModelError(f"params maps each parameter's name to its shape, as {{'W': (4, 2), 'b': 4}}; "
                             f"got {type(self.params).__name__}")
        if not isinstance(self.init, Mapping):
            raise ModelError(f"init maps parameter names to initialisers, as {{'W': 'xavier'}}; got {self.init!r}")
        strays = [name for name in self.init if name not in self.params]
        if strays:
            raise ModelError(f"init names {', '.join(map(str, strays))}, which {'is' if len(strays) == 1 else 'are'} "
                             f"not a parameter (the parameters: {', '.join(self.params) or 'none'})")
        data = self.data.replace(",", " ").split() if isinstance(self.data, str) else self.data
        if not (isinstance(data, Sequence) and all(isinstance(name, str) for name in data)):
            raise ModelError(f"data is the names of the data tensors, as ['x', 'y'] or 'x y'; got {self.data!r}",
                             about="data")
        self.data = tuple(data)
        twice = next((name for k, name in enumerate(self.data) if name in self.data[:k]), None)
        if twice is not None:
            raise ModelError(f"data names {twice} twice (data: {', '.join(self.data)})", about="data")
        if self.batch is not None and not (isinstance(self.batch, str)
                                           and (is_letter_index(self.batch) or is_index_name(self.batch))):
            raise ModelError(f"the batch index is a letter ('n'), a name ('sample') or None; got {self.batch!r}",
                             about="batch")
        for name in ("loss", "output"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ModelError(f"{name} is the name of an equation's result, got {getattr(self, name)!r}", about=name)
        if not (isinstance(self.reduce, str) and self.reduce in ("mean", "sum")):
            raise ModelError(f"reduce is 'mean' or 'sum' (the loss over the batch), got {self.reduce!r}", about="batch")
        computed = [eq.lhs.name for eq in self.per_sample.equations]
        if self.output is not None and self.output not in computed:
            raise ModelError(f"no equation computes the output {self.output!r} (the model computes "
                             f"{', '.join(computed)})", about="output")

    def _check_names(self, equations: list[Equation]) -> None:
        defined = {eq.lhs.name for eq in equations}
        read = {t.name for eq in equations for t in eq.rhs.walk() if isinstance(t, Tensor)}
        for name in self.parameters:
            if name in self.data:  # learnt, or given with each sample: two models, so neither is chosen
                raise ModelError(f"{name} is declared both a parameter and data: a parameter is learnt, a data "
                                 f"tensor is given with each sample; declare {name} as one of the two",
                                 about=f"param {name}")
            if name not in read:
                raise ModelError(f"parameter {name} does not occur in the equations{_read_as_indices(name, equations)}",
                                 about=f"param {name}")
            if name in defined:
                raise ModelError(f"{name} is declared a parameter but an equation computes it", about=f"param {name}")
        for name in self.data:
            if name not in read:
                raise ModelError(f"data tensor {name} does not occur in the equations{_read_as_indices(name, equations)}",
                                 about="data")
        unknown = sorted(read - defined - set(self.parameters) - set(self.data))
        if unknown:
            span = next((t.span for eq in equations for t in eq.rhs.walk()
                         if isinstance(t, Tensor) and t.name in unknown and t.span), None)
            raise self._located(ModelError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} neither a parameter, "
                f"nor data, nor computed by an equation", pos=span[0] if span else None))
        if self.loss not in defined:
            raise ModelError(f"no equation computes the loss {self.loss!r}", about="loss")

    def _check_ranks(self, equations: list[Equation]) -> None:
        """A parameter is written with as many indices as its declared shape has axes."""
        for eq in equations:
            for t in eq.rhs.walk():
                p = self.parameters.get(t.name) if isinstance(t, Tensor) and not t.derivs else None
                if p is not None and len(t.indices) != len(p.shape):
                    declared = f"{p.name}[{', '.join(map(str, p.shape))}]"
                    raise ModelError(
                        f"{p.name} is declared with {_axes(len(p.shape))} ({declared}) but written {t} "
                        f"with {_axes(len(t.indices), 'index', 'indices')} in the equations{_lone_name_hint(t, p)}",
                        about=f"param {p.name}")

    def _check_memory(self) -> None:
        """Refuse a parameter too big for this machine before allocating any."""
        if not self.parameters:
            return
        biggest = max(self.parameters.values(), key=lambda p: p.nbytes)
        try:
            refuse_if_too_big(f"parameter {biggest.name}{list(biggest.shape)}", biggest.nbytes)
            total = sum(p.nbytes for p in self.parameters.values())
            refuse_if_too_big(f"the parameters together ({len(self.parameters)} arrays)", total)
        except IndexCalcError as err:
            raise ModelError(err.problem, about=f"param {biggest.name}") from None

    def _batched(self, equations: list[Equation]) -> Program:
        """Per-sample equations → batched: n joins every tensor that depends on data."""
        try:
            return Program(tuple(batched(equations, self.batch, self.data, self.loss, self.reduce)))
        except ModelError as err:
            raise self._located(err) from None

    # --- numbers
    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        """Each parameter drawn by its initialiser from `seed` (a whole number, 0 or more)."""
        if not (is_whole(seed) and seed >= 0):
            raise ModelError(f"the seed must be a whole number, 0 or more, got {seed!r}", about="seed")
        try:
            floats = np.dtype(dtype).kind == "f"
        except (TypeError, ValueError):
            floats = False
        if not floats:
            raise ModelError(f"the parameters' dtype is a floating-point type (np.float64, 'float32'), got {dtype!r}")
        rng = np.random.default_rng(seed)
        return {name: p.initial(rng, dtype) for name, p in self.parameters.items()}

    @property
    def gradient(self) -> Compiled:
        """The compiled loss and gradients by every parameter."""
        if self._compiled is None:
            self._compiled = compile_program(self.program, wrt=list(self.parameters), of=self.loss)
        return self._compiled

    def loss_and_grads(self, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]):
        _require_params_and_data(params, data)
        self.check_samples_first(data)
        return self.gradient({**data, **params})

    def evaluate(self, name: str, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value of any equation's result (the output, say) on a batch, by a compiled
        forward plan (no gradient; one plan per result, each cached per shape)."""
        _require_params_and_data(params, data)
        if not isinstance(name, str):
            raise ModelError(f"the result to evaluate is named by a string, as 'yhat'; got {name!r}")
        plan = self._forward_plan(name)
        self.check_samples_first(data, plan.inputs)
        value, _ = plan({**data, **params})
        return value

    def _forward_plan(self, name: str) -> Compiled:
        """The compiled forward program of one result, made once and kept."""
        if name not in self._forward:
            self._forward[name] = compile_program(self.program, of=name)
        return self._forward[name]

    def check_samples_first(self, data: Mapping[str, object], reads=None) -> None:
        """Each data array that `reads` names (default: every data tensor) holds the samples
        first: `x_j` per sample is an (N, j) array. One sample given without its axis is the
        usual slip; it is named in the user's terms (x_j), not the batched program's (x_nj)."""
        if self.batch is None:
            return
        reads = self.data if reads is None else reads
        for name, indices in self.data_indices.items():
            shape = np.shape(data[name]) if name in reads and name in data else None
            if shape is not None and len(shape) != len(indices) + 1:
                axes = ", ".join(("samples",) + indices) + ("," if not indices else "")
                one = f"; one sample is {name}[None], of shape {(1, *shape)}" if len(shape) == len(indices) else ""
                raise ModelError(f"data {name} is read per sample as {Tensor(name, indices)}, so its array holds "
                                 f"the samples first, ({axes}); got shape {shape}{one}", about="data")

    @functools.cached_property
    def data_indices(self) -> dict[str, tuple[str, ...]]:
        """Each data tensor's indices as the equations read it per sample (an array of it
        holds the samples first where the model has a batch index)."""
        return {t.name: t.indices for eq in self.per_sample.equations for t in eq.rhs.walk()
                if isinstance(t, Tensor) and t.name in self.data and not t.derivs}

    @property
    def outputs(self) -> tuple[str, ...]:
        """What `predict` returns by default: the declared `output`, else the results the
        loss's equation reads (z in `loss = logsumexp_c(z_c) - y_k z_k`, yhat in a squared
        error), else every result but the loss."""
        if self.output:
            return (self.output,)
        computed = [eq.lhs.name for eq in self.per_sample.equations if eq.lhs.name != self.loss]
        loss = next(eq for eq in self.per_sample.equations if eq.lhs.name == self.loss)
        read = {t.name for t in loss.rhs.walk() if isinstance(t, Tensor)}
        return tuple(name for name in computed if name in read) or tuple(computed)

    def predict(self, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray],
                outputs: Sequence[str] | str | None = None) -> dict[str, np.ndarray]:
        """The model's outputs (default: `outputs`) on data of any number of samples, by
        forward plans only: the data the outputs do not read (the targets) may be left out."""
        _require_params_and_data(params, data)
        if not (outputs is None or isinstance(outputs, str)
                or isinstance(outputs, Sequence) and all(isinstance(name, str) for name in outputs)):
            raise ModelError(f"outputs are a name or a list of names, as 'yhat' or ['h', 'yhat']; got {outputs!r}")
        names = (outputs,) if isinstance(outputs, str) else tuple(outputs or self.outputs)
        if not names:  # a model of one line, its loss: an empty answer would look like a result
            raise ModelError(f"the model computes nothing but its loss {self.loss}, so predict has no output to give; "
                             f"ask for the loss by name, predict(params, data, {self.loss!r}), with the targets in data",
                             about="output")
        defined = [eq.lhs.name for eq in self.program.equations]
        for name in names:
            if name not in defined:
                raise ModelError(f"no equation computes {name!r} (the model computes {', '.join(defined)})",
                                 about="output")
        for name in names:
            missing = [k for k in self._forward_plan(name).inputs if k not in data and k not in params]
            if missing:
                raise ModelError(f"no array given for {', '.join(missing)}, which {name} is computed from"
                                 + given_as_one_name(missing[0], [*params, *data]), about="data")
        return {name: self.evaluate(name, params, data) for name in names}

    # --- keeping a trained model (indexcalc.saved)
    def save(self, path: str, params: Mapping[str, np.ndarray]) -> None:
        """Write `params` and this model's equations and declarations to an `.npz`, so that
        `Model.load(path)` alone gives a model that predicts."""
        saved.save(self, path, params)

    @classmethod
    def load(cls, path: str) -> tuple["Model", dict[str, np.ndarray]]:
        """The model and parameters a `save` wrote: `model, params = Model.load(path)`."""
        return saved.load(path, cls)

    def load_params(self, path: str) -> dict[str, np.ndarray]:
        """The parameters in a weights file (or checkpoint) written for these equations."""
        return saved.load_params(self, path)


def _lone_name_hint(t: Tensor, p) -> str:
    """Where `mu_{dim}` was meant as one named index: a lone word in braces is letters."""
    word = "".join(t.indices)
    if len(p.shape) != 1 or len(t.indices) < 2 or not all(len(i) == 1 for i in t.indices) or not is_index_name(word):
        return ""
    return (f" (a word alone in braces, {t.name}_{{{word}}}, is the letters {', '.join(t.indices)}; for one named "
            f"index write a line 'index {word}' before the equations, or write {word} beside another index)")


def _read_as_indices(name: str, equations: list[Equation]) -> str:
    """Where a declared `c_new` is not read but c with the indices n, e, w is: the sentence
    that says so, or nothing."""
    read = (t for eq in equations for t in eq.rhs.walk() if isinstance(t, Tensor))
    return next(filter(None, (read_as_indices(name, t.name, t.indices) for t in read)), "")


def _axes(count: int, one: str = "axis", many: str = "axes") -> str:
    return f"{count} {one if count == 1 else many}"


def _require_params_and_data(params, data) -> None:
    require_named_arrays(params, "parameters", "{'W': W, 'b': b}", error=ModelError)
    require_named_arrays(data, "data", error=ModelError)


def _param(name: str, spec, init: str | None) -> Param:
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, (int, np.integer)):
        return Param(name, (int(spec),), init or "normal")
    if isinstance(spec, tuple) and all(isinstance(s, (int, np.integer)) for s in spec):
        return Param(name, tuple(int(s) for s in spec), init or "normal")
    raise ModelError(f"the shape of parameter {name} must be a whole number or a tuple of them, got {spec!r}",
                     about=f"param {name}")
