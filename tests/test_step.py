"""The fused training step (indexcalc.step) against the unfused loop: the same numbers,
the same resume, the same NaN stop."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from indexcalc.model import Model
from indexcalc.optimisers import SGD, Adam, Momentum
from indexcalc.step import FusedStep
from indexcalc.train import Trainer
from model_cases import model_cases
from strategies import sample

XOR = """
h_i = σ(W1_ij x_j + b1_i)
yhat_k = σ(W2_ki h_i + b2_k)
loss = (yhat_k - y_k)(yhat_k - y_k)
"""


def xor_model() -> Model:
    return Model(XOR, params={"W1": (4, 2), "b1": 4, "W2": (1, 4), "b2": 1}, data=["x", "y"])


def data(n=11, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return {"x": x, "y": (x[:, :1] * x[:, 1:] > 0).astype(float)}


OPTIMISERS = [lambda: SGD(lr=0.5), lambda: Momentum(lr=0.2, beta=0.8), lambda: Adam(lr=0.05)]


@pytest.mark.parametrize("make", OPTIMISERS)
def test_the_fused_step_gives_the_unfused_loops_numbers_bit_for_bit(make):
    # batches of 4, 4 and 3: two batch shapes, each its own generated step
    fused = Trainer(xor_model(), make(), batch_size=4, seed=2).fit(data(), 6)
    plain = Trainer(xor_model(), make(), batch_size=4, seed=2, fused=False).fit(data(), 6)
    assert [r["loss"] for r in fused.history] == [r["loss"] for r in plain.history]
    for name, value in plain.params.items():
        np.testing.assert_array_equal(fused.params[name], value)


def test_the_fused_step_leaves_the_callers_arrays_alone_and_keeps_moments_as_the_loop_does():
    model = xor_model()
    given = model.init_params(3)
    before = {k: v.copy() for k, v in given.items()}
    opt, plain_opt = Adam(lr=0.05), Adam(lr=0.05)
    Trainer(model, opt, batch_size=4).fit(data(), 3, params=given)
    Trainer(xor_model(), plain_opt, batch_size=4, fused=False).fit(data(), 3, params=before)
    for name, value in before.items():
        np.testing.assert_array_equal(given[name], value)
    assert set(opt.state) == set(plain_opt.state)
    for key, value in plain_opt.state.items():
        np.testing.assert_array_equal(opt.state[key], value)


def test_a_learning_rate_changed_between_steps_is_used():
    model, batch = xor_model(), data(4)
    params = model.init_params(0)
    opt = SGD(lr=0.1)
    step = FusedStep(model, opt)
    mine = step.own(params)
    for lr in (0.1, 0.3):
        opt.lr = lr
        _, grads = model.loss_and_grads(params, batch)
        params = {k: params[k] - lr * grads[k] for k in params}
        assert step(mine, batch)[1]
    for name, value in params.items():
        np.testing.assert_array_equal(mine[name], value)


def test_a_resumed_fused_run_equals_an_uninterrupted_one(tmp_path):
    path = str(tmp_path / "state.npz")
    Trainer(xor_model(), Adam(lr=0.05), batch_size=4, seed=3, checkpoint=path).fit(data(), 3)
    rest = Trainer(xor_model(), Adam(lr=0.05), batch_size=4, seed=3).fit(data(), 7, resume=path)
    straight = Trainer(xor_model(), Adam(lr=0.05), batch_size=4, seed=3).fit(data(), 7)
    for name, value in straight.params.items():
        np.testing.assert_array_equal(rest.params[name], value)


@pytest.mark.parametrize("make", OPTIMISERS)
def test_a_nan_stop_keeps_the_same_last_good_parameters_as_the_unfused_loop(make):
    exploding = Model("loss = exp(w_i x_i) (y - w_i x_i)", params={"w": 3}, data=["x", "y"])
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(8, 3)) * 5, "y": rng.normal(size=8)}
    runs = []
    for fused in (True, False):
        opt = make()
        opt.lr = 1e4 if isinstance(opt, Adam) else 50.0  # Adam steps by about lr a coordinate
        runs.append(Trainer(exploding, opt, batch_size=2, fused=fused).fit(arrays, 50))
    fused, plain = runs
    assert fused.stopped == plain.stopped == "nan" and fused.message == plain.message
    assert np.all(np.isfinite(fused.params["w"]))
    np.testing.assert_array_equal(fused.params["w"], plain.params["w"])


@pytest.mark.parametrize("source, params", [
    # relu, logsumexp, a constant column of weights: the steps the rewrite hoists and runs in place
    ("h_i = relu(W1_ij x_j + b1_i)\nz_k = W2_ki h_i + b2_k\nloss = logsumexp_c(z_c) - y_k z_k",
     {"W1": (6, 2), "b1": 6, "W2": (2, 6), "b2": 2}),
    # each gradient is (a view of) the other parameter: no parameter may be written before both are read
    ("loss = a_i b_i + 0 x_i y_i", {"a": 2, "b": 2}),
])
def test_rewritten_steps_give_the_unfused_numbers(source, params):
    model = lambda: Model(source, params=params, data=["x", "y"])  # noqa: E731
    arrays = data(9)
    arrays["y"] = np.stack([arrays["y"][:, 0], 1 - arrays["y"][:, 0]], 1)
    fused = Trainer(model(), Adam(lr=0.01), batch_size=4, seed=1).fit(arrays, 4)
    plain = Trainer(model(), Adam(lr=0.01), batch_size=4, seed=1, fused=False).fit(arrays, 4)
    for name, value in plain.params.items():
        np.testing.assert_array_equal(fused.params[name], value)


@pytest.mark.parametrize("make", OPTIMISERS)
def test_ctrl_c_in_a_fused_run_returns_the_last_finished_epoch_and_its_optimiser_state(make):
    def interrupt(epoch, record):
        if epoch == 3:
            raise KeyboardInterrupt

    stopped_opt, whole_opt = make(), make()
    stopped = Trainer(xor_model(), stopped_opt, batch_size=4, seed=2).fit(data(), 10, progress=interrupt)
    whole = Trainer(xor_model(), whole_opt, batch_size=4, seed=2).fit(data(), 3)
    assert stopped.stopped == "interrupted" and stopped.epochs == 3
    for k in whole.params:
        np.testing.assert_array_equal(stopped.params[k], whole.params[k])
    assert stopped_opt.state.keys() == whole_opt.state.keys()
    for k in whole_opt.state:
        np.testing.assert_array_equal(stopped_opt.state[k], whole_opt.state[k])


@sample(24, derandomize=True, database=None)
@given(made=model_cases(), make=st.sampled_from(OPTIMISERS), size=st.sampled_from([None, 2]))
def test_on_generated_models_the_fused_step_gives_the_unfused_loops_numbers_bit_for_bit(made, make, size):
    """The family of the XOR test above: the soak's programs made models (derivative lines,
    softmaxes, matrix functions, shifts), two epochs from the same parameters, whole-batch
    or two samples a step: the same losses and parameters to the last bit, or the same stop."""
    runs = [Trainer(made.model, make(), batch_size=size, seed=1, fused=fused).fit(made.batch(), 2, params=made.params)
            for fused in (True, False)]
    fused, unfused = runs
    assert (fused.stopped, fused.epochs) == (unfused.stopped, unfused.epochs), (fused.message, unfused.message)
    assert [h["loss"] for h in fused.history] == pytest.approx([h["loss"] for h in unfused.history], rel=0, abs=0,
                                                                nan_ok=True)
    for name, value in unfused.params.items():
        np.testing.assert_array_equal(fused.params[name], value)
