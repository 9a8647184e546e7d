"""The soak's generated programs made models: some tensors parameters, the rest data
written per sample, the last line the loss. For the properties that compare a model's
batched plan with the per-sample program (tests/test_per_sample.py) and the fused
training step with the unfused loop (tests/test_step.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, strategies as st

import indexcalc as ic
from indexcalc.expr import Equation, Program
from indexcalc.model import Model, ModelError
from indexcalc.relabel import letters_in
from families import soak_cases
from strategies import RouteCase

SAMPLES = 3


@dataclasses.dataclass
class ModelCase:
    case: RouteCase  # the program, as the soak draws it
    model: Model
    params: dict[str, np.ndarray]
    data: list[str]  # the data tensors' names
    samples: list[dict]  # per-sample arrays: the case's, then two moved a little

    def batch(self) -> dict[str, np.ndarray]:
        """The samples' data stacked along the batch axis."""
        return {k: np.stack([np.asarray(s[k], dtype=float) for s in self.samples]) for k in self.data}

    def __str__(self) -> str:
        return f"{self.case}\nparameters: {', '.join(self.params)}; batch {self.model.batch} {self.model.reduce}"


@st.composite
def model_cases(draw) -> ModelCase:
    """A program with a scalar last line and two tensors or more, one or more of them
    parameters. Refused by the model only as batching refuses (an exponent that is data,
    a second derivative by data: said so, and skipped); a draw whose parameters the loss
    does not read (only differentiated by) or whose loss is not finite is skipped."""
    case = draw(soak_cases())
    tensors = [k for k, (shape, kind) in case.specs.items() if kind == "tensor" and shape]
    assume(case.scalar and case.wrt and len(tensors) >= 2)
    node = ic.parse(case.text)
    assume(isinstance(node, (Equation, Program)))  # a model is equations; some draws are one expression
    arrays = case.arrays()
    params = draw(st.lists(st.sampled_from(tensors), min_size=1, max_size=len(tensors) - 1, unique=True))
    names = [k for k in case.specs if k not in params]
    n = next(c for c in "nmzyqβγ" if c not in letters_in(node))
    try:
        model = Model(case.text, params={p: arrays[p].shape for p in params}, data=names, batch=n,
                      reduce=draw(st.sampled_from(["mean", "sum"])))
    except ModelError as err:
        assert err.about == "batch" or "more than once" in err.problem, err
        assume(False)
    rng = np.random.default_rng(case.seed)
    samples = [{k: np.asarray(v) + rng.uniform(-0.1, 0.1, np.shape(v)) * (s > 0 and case.specs[k][1] == "tensor")
                if k in names else v for k, v in arrays.items()} for s in range(SAMPLES)]
    try:
        ic.compile(case.text, wrt=params)
    except ic.IndexCalcError:  # a parameter only differentiated by, never read: nothing to compare
        assume(False)
    assume(all(np.all(np.isfinite(ic.evaluate(case.text, s))) for s in samples))
    return ModelCase(case, model, {p: np.asarray(arrays[p], dtype=float) for p in params}, names, samples)
