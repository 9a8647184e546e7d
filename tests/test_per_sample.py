"""A model's per-sample equations over a batch (indexcalc/per_sample.py): the batched loss
and gradients are the per-sample program's, compiled sample by sample and reduced, on
generated programs; a derivative by data is each sample's own (an input gradient, a
gradient penalty, a Jacobian penalty); what batching cannot write is refused in the
user's terms, with a caret on the line they wrote."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import indexcalc as ic
from indexcalc import per_sample
from indexcalc.model import Model, ModelError
from indexcalc.relabel import letters_in
from model_cases import model_cases
from strategies import sample


def per_sample_reference(text: str, params: dict, samples: list[dict], reduce: str, reads_data: bool):
    """The loss and gradients of `text` compiled on each sample alone, reduced over the
    samples as the model reduces its loss (a loss that reads no data is not reduced)."""
    plan = ic.compile(text, wrt=list(params))
    outs = [plan({**sample, **params}) for sample in samples]
    if not reads_data:
        return float(outs[0][0]), outs[0][1]
    reduced = np.mean if reduce == "mean" else np.sum
    return (float(reduced([float(out[0]) for out in outs])),
            {p: reduced(np.stack([np.asarray(out[1][p], dtype=float) for out in outs]), axis=0) for p in params})


def assert_model_equals_reference(model: Model, text: str, params: dict, samples: list[dict], data: list[str]):
    batch = {k: np.stack([np.asarray(sample[k], dtype=float) for sample in samples]) for k in data}
    reads_data = model.batch in letters_in(model.program.equations[-1])  # else the loss is not reduced
    want, want_grads = per_sample_reference(text, params, samples, model.reduce, reads_data)
    value, grads = model.loss_and_grads(params, batch)
    assert abs(float(value) - want) <= 1e-8 * max(1.0, abs(want)), (value, want)
    for p in params:
        scale = max(1.0, float(np.max(np.abs(want_grads[p]), initial=0)))
        np.testing.assert_allclose(grads[p], want_grads[p], rtol=1e-7, atol=1e-8 * scale, err_msg=p)


@sample(24, derandomize=True, database=None)
@given(made=model_cases())
def test_a_batched_model_gives_the_per_sample_programs_loss_and_gradients_reduced(made):
    """Any generated program with a scalar last line, some of its tensors parameters and
    the rest data (derivative lines by data among them): the model's batched plan against
    the per-sample program compiled on each of three samples."""
    assert_model_equals_reference(made.model, made.case.text, made.params, made.samples, made.data)


CRITIC = "h_i = tanh(W_ij x_j + b_i)\nD = v_i h_i\n"
DERIVATIVES_BY_DATA = {
    "an input gradient": CRITIC + "g_j = D_{,(j)}[x]\nloss = g_j g_j",
    "a gradient penalty": CRITIC + "g_j = D_{,(j)}[x]\nloss = D + (sqrt(g_j g_j) - 1)^2",
    "a Jacobian penalty": CRITIC + "J_ij = h_{i,(j)}[x]\nloss = D + J_ij J_ij",
    "by data, then by a parameter": CRITIC + "G_jkl = D_{,(j)(kl)}[x,W]\nloss = G_jkl G_jkl",
    "by a parameter, then by data": CRITIC + "G_kj = D_{,(k)(j)}[v,x]\nloss = G_kj G_kj + D",
    "by a parameter, per sample": CRITIC + "g_i = D_{,(i)}[b]\nloss = g_i g_i",
    "a saliency step": CRITIC + "x2_j = x_j + 0.1 D_{,(j)}[x]\nloss = (v_i tanh(W_ij x2_j))^2",
}


@pytest.mark.parametrize("formula", [True, False], ids=["as a formula", "as the batch sum's derivative"])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("name", DERIVATIVES_BY_DATA)
def test_a_derivative_by_data_is_each_samples_own(name, reduce, formula, monkeypatch):
    """Per sample, `D_{,(j)}[x]` is ∂D/∂x_j: over the batch ∂D_n/∂x_nj, never the whole
    batch's cross derivatives (which once were refused in terms of equations the user did
    not write). Written out by diff as a formula, or, where diff cannot (made so here), as
    the derivative of the sum over the batch: the same numbers."""
    if not formula:
        monkeypatch.setattr(per_sample, "_formula", lambda *args: None)
    text = DERIVATIVES_BY_DATA[name]
    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=4), "v": rng.normal(size=4)}
    samples = [{"x": rng.normal(size=3)} for _ in range(5)]
    model = Model(text, params={k: v.shape for k, v in params.items()}, data=["x"], reduce=reduce)
    by_data = "[x" in text or ",x]" in text
    assert any("_by_x" in eq.lhs.name for eq in model.program.equations) == (formula and by_data)
    assert_model_equals_reference(model, text, params, samples, ["x"])


@pytest.mark.parametrize("text, data, words, line, at", [
    ("h_i = tanh(W_ij x_j)^a\nloss = sum_i(h_i)", ["x", "a"],
     "batched over n, h_i = tanh(W_ij x_j)^a becomes h_ni = tanh(W_ij x_nj)^a_n: the exponent a_n",
     "h_i = tanh(W_ij x_j)^a", "h_i"),
    ("h_i = tanh(W_ij x_j)\nloss = sum_i(h_i)\ntwice = 2 loss", ["x"],
     "twice reads loss, the loss, after it is reduced over the batch (mean over n): each sample's",
     "twice = 2 loss", "loss"),
    ("h_i = tanh(W_ij x_j)\nD = sum_i(h_i)\nH_jk = D_{,(j)(k)}[x,x]\nloss = sum_jk(H_jk)", ["x"],
     "differentiates by data (x, x) more than once", "H_jk = D_{,(j)(k)}[x,x]", "D_"),
])
def test_what_batching_cannot_write_is_refused_on_the_users_line(text, data, words, line, at):
    """An exponent that is data, a line reading the loss after the batch reduced it (each
    sample's loss, or the batch's? once read the batch's without a word), a second
    derivative by data: refused when the model is built, a caret on what the user wrote."""
    with pytest.raises(ModelError) as caught:
        Model(text, params={"W": (4, 3)}, data=data, loss="loss")
    message = str(caught.value)
    assert words in message
    shown, caret = message.splitlines()[-2:]
    assert shown.endswith(line)
    assert caret.index("^") - (len(shown) - len(line)) == line.index(at)
