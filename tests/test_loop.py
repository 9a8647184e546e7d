"""The training loop's features every framework has (issue 12): learning-rate schedules,
a validation split, early stopping that keeps the best epoch, weight decay, gradient
clipping, mse/mae metrics and the epoch's loss as the mean over samples.

Each is checked against an independent computation: the schedules' rates against their
formulas written out here, a step with decay and clipping against NumPy's arithmetic,
early stopping against a run of exactly the best epoch's length, resuming against an
uninterrupted run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import indexcalc as ic
from carets import caret, line_of
from indexcalc import cli
from indexcalc.model import Model
from indexcalc.modelfile import parse_model
from indexcalc.optimisers import SGD, Adam, Momentum
from indexcalc.schedules import schedule
from indexcalc.train import Trainer, mae, mse, train_file
from indexcalc.training_errors import TrainingError

LINEAR = "yhat_k = W_kj x_j + b_k\nloss = (yhat_k - y_k)(yhat_k - y_k)"


def linear_model(reduce: str = "mean") -> Model:
    return Model(LINEAR, params={"W": (2, 3), "b": 2}, data=["x", "y"], reduce=reduce)


def regression(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return {"x": x, "y": x @ rng.normal(size=(3, 2)) + 0.3 * rng.normal(size=(n, 2))}


def start(seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(2, 3)), "b": rng.normal(size=2)}


def gradient(params, data):
    """The linear model's mean squared-error gradient, by hand."""
    error = data["x"] @ params["W"].T + params["b"] - data["y"]
    return {"W": 2 * error.T @ data["x"] / len(error), "b": 2 * error.mean(0)}


# ---------------------------------------------------------------- schedules

BASE = 0.1
EPOCHS = 10
FORMULAS = [  # (the schedule, the rate of epoch e written out)
    (schedule("step", every=3, factor=0.5), lambda e: BASE * 0.5 ** (e // 3)),
    (schedule("exponential", factor=0.9), lambda e: BASE * 0.9**e),
    (schedule("cosine", floor=0.1), lambda e: BASE * (0.1 + 0.45 * (1 + math.cos(math.pi * e / 10)))),
    (schedule("cosine", warmup=3), lambda e: BASE * ((e + 1) / 3 if e < 3 else 0.5 * (1 + math.cos(math.pi * (e - 3) / 7)))),
    (schedule("step", warmup=2, every=4, factor=0.1), lambda e: BASE * ((e + 1) / 2 if e < 2 else 0.1 ** ((e - 2) // 4))),
    (schedule(warmup=4), lambda e: BASE * min(1.0, (e + 1) / 4)),
]


@pytest.mark.parametrize("chosen, formula", FORMULAS, ids=[str(s) for s, _ in FORMULAS])
def test_each_schedule_steps_at_its_formulas_rate(chosen, formula):
    """A loss linear in w has the same gradient g everywhere: full-batch SGD ends at
    w0 − (Σ_e lr_e) g, so the rates the steps used are checked, not only those recorded."""
    model = Model("loss = w_i x_i", params={"w": 3}, data=["x"])
    x = np.random.default_rng(1).normal(size=(8, 3))
    w0 = {"w": np.array([0.5, -1.0, 2.0])}
    result = Trainer(model, SGD(lr=BASE), schedule=chosen).fit({"x": x}, EPOCHS, params=w0)
    rates = [formula(e) for e in range(EPOCHS)]
    assert [r["lr"] for r in result.history] == pytest.approx(rates, rel=1e-12)
    np.testing.assert_allclose(result.params["w"], w0["w"] - sum(rates) * x.mean(0), rtol=1e-12)


def test_a_model_file_declares_the_schedule_and_warm_up():
    base = "data x y\nparam W[2, 3]\nparam b[2]\n{}\n" + LINEAR
    mf = parse_model(base.format("schedule step every=3 factor=0.5\nwarmup 2"))
    assert mf.schedule == schedule("step", warmup=2, every=3, factor=0.5)
    assert parse_model(base.format("schedule cosine")).schedule == schedule("cosine")
    assert parse_model(base.format("warmup 5")).schedule == schedule(warmup=5)
    assert parse_model(base.format("")).schedule is None


@pytest.mark.parametrize("backend", ["jax", "torch", "dask"])
def test_a_schedule_decay_and_clip_on_a_backend_give_numpys_numbers(backend):
    """jax.jit reads the rate when it traces the update: a new rate must reach it; the
    clip's norm and the decay run on the backend's arrays."""
    pytest.importorskip(backend)
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    from indexcalc.training_arrays import to_numpy

    data, chosen = regression(), schedule("step", every=1, factor=0.5)
    settings = dict(batch_size=10, schedule=chosen, clip=0.5, weight_decay=0.1)
    want = Trainer(linear_model(), Adam(lr=0.05), **settings).fit(data, 4, params=start())
    got = Trainer(linear_model(), Adam(lr=0.05), backend=backend, **settings).fit(data, 4, params=start())
    for name in want.params:
        np.testing.assert_allclose(to_numpy(got.params[name]), want.params[name], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- weight decay and clipping


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_weight_decay_and_clipping_are_numpys_step(kind, clip):
    """Three full-batch steps against the same arithmetic in NumPy: the gradient clipped
    to the global norm, then L2 (sgd, momentum: g + λw) or decoupled decay (adam:
    w ← w − η (m̂ / (√v̂ + ε) + λ w))."""
    data, decay, lr = regression(), 0.1, 0.05
    make = {"sgd": lambda: SGD(lr=lr), "momentum": lambda: Momentum(lr=lr, beta=0.8), "adam": lambda: Adam(lr=lr)}
    result = Trainer(linear_model(), make[kind](), weight_decay=decay, clip=clip).fit(data, 3, params=start())
    w, m, v, clipped = start(), {}, {}, 0
    for t in range(1, 4):
        g = gradient(w, data)
        norm = math.sqrt(sum(float((a * a).sum()) for a in g.values()))
        if clip is not None and norm > clip:
            g, clipped = {k: a * clip / norm for k, a in g.items()}, clipped + 1
        for k in w:
            if kind == "sgd":
                w[k] = w[k] - lr * (g[k] + decay * w[k])
            elif kind == "momentum":
                m[k] = 0.8 * m.get(k, 0) + g[k] + decay * w[k]
                w[k] = w[k] - lr * m[k]
            else:
                m[k] = 0.9 * m.get(k, 0) + 0.1 * g[k]
                v[k] = 0.999 * v.get(k, 0) + 0.001 * g[k] ** 2
                step = (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
                w[k] = w[k] - lr * (step + decay * w[k])
    assert clip is None or clipped == 3  # the clip did act
    for k in w:
        np.testing.assert_allclose(result.params[k], w[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_a_clip_above_the_norm_changes_nothing():
    data = regression()
    plain = Trainer(linear_model(), SGD(lr=0.01)).fit(data, 3, params=start())
    loose = Trainer(linear_model(), SGD(lr=0.01), clip=1e6).fit(data, 3, params=start())
    for k in plain.params:
        np.testing.assert_array_equal(plain.params[k], loose.params[k])


# ---------------------------------------------------------------- early stopping and the best epoch


def noisy_run(**kwargs):
    """A linear fit to few, noisy samples, monitored on fresh ones: the test loss bottoms
    out and rises again (overfitting with a large step), so patience runs out."""
    data, test = regression(n=12, seed=2), regression(n=200, seed=9)
    trainer = Trainer(linear_model(), Adam(lr=0.3), batch_size=3, seed=4, **kwargs)
    return trainer, data, test


def test_early_stopping_stops_patience_epochs_after_the_best_and_returns_its_parameters():
    trainer, data, test = noisy_run(monitor="test_loss", patience=3)
    result = trainer.fit(data, 60, test=test)
    scores = [r["test_loss"] for r in result.history]
    best = int(np.argmin(scores)) + 1
    assert result.stopped == "early" and result.best_epoch == best and result.monitor == "test_loss"
    assert result.epochs == best + 3 < 60, scores
    # the parameters returned are those of a run of exactly the best epoch's length
    shorter = noisy_run()[0].fit(data, best, test=test)
    for k in shorter.params:
        np.testing.assert_allclose(result.params[k], shorter.params[k], rtol=0, atol=1e-13)
    assert result.history[best - 1]["test_loss"] == pytest.approx(shorter.history[-1]["test_loss"], rel=1e-12)
    # without keep_best, the last epoch's
    last = noisy_run(monitor="test_loss", patience=3, keep_best=False)[0].fit(data, 60, test=test)
    longer = noisy_run()[0].fit(data, best + 3, test=test)
    np.testing.assert_allclose(last.params["W"], longer.params["W"], rtol=0, atol=1e-13)


def test_accuracy_is_best_highest_and_a_tie_is_no_improvement():
    from indexcalc.train import _Best

    history = [{"epoch": 1, "a_accuracy": 0.5, "l": 2.0}, {"epoch": 2, "a_accuracy": 0.7, "l": 1.0},
               {"epoch": 3, "a_accuracy": 0.7, "l": 1.0}, {"epoch": 4, "a_accuracy": 0.6, "l": 3.0}]
    high, low = _Best("a_accuracy", history, {}), _Best("l", history, {})
    assert (high.epoch, low.epoch) == (2, 2) and high.waited(4) == 2


def test_a_validation_split_is_drawn_from_the_seed_and_monitored():
    data = regression(n=50)
    seen = []

    class Watching(Model):
        def loss_and_grads(self, params, batch):
            seen.append(len(batch["x"]))
            return super().loss_and_grads(params, batch)

    model = Watching(LINEAR, params={"W": (2, 3), "b": 2}, data=["x", "y"])
    result = Trainer(model, SGD(lr=0.05), validation=0.2, seed=3).fit(data, 2)
    assert {"val_loss"} <= result.history[0].keys()
    assert 40 in seen and 10 not in seen  # 40 samples trained on; the 10 held out scored by the forward plan
    # the held-out loss is the model's loss on the 10 samples the seed's generator drew
    held = np.sort(np.random.default_rng([3, 1]).permutation(50)[:10])
    again = Trainer(linear_model(), SGD(lr=0.05), validation=0.2, seed=3).fit(data, 2)
    loss, _ = linear_model().loss_and_grads(again.params, {k: v[held] for k, v in data.items()})
    assert again.history[-1]["val_loss"] == pytest.approx(float(loss), rel=1e-12)
    # patience without a monitor watches the validation loss
    assert Trainer(linear_model(), SGD(lr=0.05), validation=0.2, patience=2).fit(data, 3).monitor == "val_loss"


def test_resume_continues_schedule_monitor_and_patience_as_an_uninterrupted_run(tmp_path):
    path = str(tmp_path / "state.npz")
    chosen = schedule("cosine", warmup=2)
    trainer, data, test = noisy_run(monitor="test_loss", patience=3, schedule=chosen, weight_decay=0.01, clip=1.0)
    straight = trainer.fit(data, 60, test=test)
    assert straight.stopped == "early" and straight.best_epoch + 2 < straight.epochs  # the cut below is after the best
    cut = straight.best_epoch + 1
    first = noisy_run(monitor="test_loss", patience=3, schedule=chosen, weight_decay=0.01, clip=1.0,
                      checkpoint=path)[0]
    first.fit(data, cut, test=test)  # stops at the cut, before the patience runs out
    again = noisy_run(monitor="test_loss", patience=3, schedule=chosen, weight_decay=0.01, clip=1.0)[0]
    rest = again.fit(data, 60, test=test, resume=path)
    assert (rest.stopped, rest.epochs, rest.best_epoch) == (straight.stopped, straight.epochs, straight.best_epoch)
    for got, want in zip(rest.history, straight.history):
        assert got == pytest.approx(want, rel=1e-10, abs=1e-14)
    for k in straight.params:
        np.testing.assert_allclose(rest.params[k], straight.params[k], rtol=0, atol=1e-13)


# ---------------------------------------------------------------- metrics and the epoch's loss


def test_mse_and_mae_are_numpys():
    data, params = regression(), start()
    error = data["x"] @ params["W"].T + params["b"] - data["y"]
    model = linear_model()
    assert mse("yhat", "y")(model, params, data) == pytest.approx(np.mean(error**2), rel=1e-12)
    assert mae("yhat", "y")(model, params, data) == pytest.approx(np.mean(np.abs(error)), rel=1e-12)
    result = Trainer(model, SGD(lr=0.01), metric=mae("yhat", "y")).fit(data, 1, test=data)
    assert {"train_mae", "test_mae"} <= result.history[0].keys()


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_the_epochs_loss_is_the_mean_over_samples_whatever_the_batch_size(reduce):
    """With a rate too small to move the parameters, every batch size reports the mean
    per-sample loss at the start (Keras's convention), for a summed loss too."""
    data, params = regression(n=30), start()
    error = data["x"] @ params["W"].T + params["b"] - data["y"]
    per_sample = float(np.mean((error**2).sum(1)))
    for size in (1, 7, None):
        result = Trainer(linear_model(reduce), SGD(lr=1e-14), batch_size=size).fit(data, 1, params=params)
        assert result.history[0]["loss"] == pytest.approx(per_sample, rel=1e-9), size


# ---------------------------------------------------------------- model files and the command line

XOR = """data x y
batch n mean
param W1[4, 2] xavier
param b1[4] zeros
param W2[1, 4] xavier
param b2[1] zeros
dataset xor
optimizer adam lr=0.1
epochs 300
batch_size 4
seed 0
metric accuracy yhat y

h_i = σ(W1_ij x_j + b1_i)
yhat_k = σ(W2_ki h_i + b2_k)
loss = (yhat_k - y_k)(yhat_k - y_k)
"""

BAD_DECLARATIONS = [
    ("schedule linear", ["unknown schedule 'linear'", "step"]),
    ("schedule step every=0", ["every=0", "positive whole number"]),
    ("schedule step every=2.5", ["every=2.5"]),
    ("schedule exponential factor=2", ["factor=2", "(0, 1]"]),
    ("schedule cosine period=3", ["no setting 'period'", "floor="]),
    ("schedule step every", ["name=number"]),
    ("warmup 0", ["warmup takes a positive whole number"]),
    ("weight_decay -1", ["weight_decay", "0 or more"]),
    ("weight_decay lots", ["weight_decay", "'lots'"]),
    ("clip 0", ["clip takes a positive number"]),
    ("clip nan", ["clip takes a positive number"]),
    ("validation 1.5", ["validation", "[0, 1)"]),
    ("patience 0", ["patience takes a positive whole number"]),
    ("monitor val_loss test_loss", ["monitor NAME"]),
    ("metric mse yhat y y", ["metric accuracy OUTPUT TARGET WEIGHT"]),
    ("metric rmse yhat y", ["mse, mae"]),
]


@pytest.mark.parametrize("line, words", BAD_DECLARATIONS, ids=[b[0] for b in BAD_DECLARATIONS])
def test_a_bad_declaration_is_refused_at_its_line(line, words):
    text = XOR.replace("seed 0\n", f"seed 0\n{line}\n").replace("metric accuracy yhat y\n", "", "metric" in line)
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(text)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert caret(info.value)[0] == line_of(text, line)


@pytest.mark.parametrize("line, words", [
    ("monitor val_accuracy", ["cannot monitor 'val_accuracy'", "validation 0.1"]),
    ("monitor test_mse", ["cannot monitor 'test_mse'", "train_accuracy"]),
    ("validation 0.01", ["holds 0", "at least one"]),
])
def test_a_monitor_or_split_the_run_cannot_have_is_refused_at_its_line(line, words):
    text = XOR.replace("seed 0\n", f"seed 0\n{line}\n")
    with pytest.raises(TrainingError) as info:
        train_file(parse_model(text, folder=str(ic.__path__[0])))
    for word in words:
        assert word in str(info.value), str(info.value)
    assert caret(info.value)[0] == line_of(text, line)


def test_the_command_line_prints_the_kept_epoch_and_an_early_stop_exits_zero(tmp_path, capsys):
    text = XOR.replace("seed 0\n", "seed 0\nmonitor loss\npatience 2\nschedule exponential factor=0.5\n")
    (tmp_path / "xor.ic").write_text(text, encoding="utf-8")
    assert cli.main(["train", str(tmp_path / "xor.ic"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "has not improved for 2 epochs" in out and "kept epoch" in out and "the best by loss" in out, out


def test_monitor_and_patience_on_the_command_line_override_the_files(tmp_path, capsys):
    text = XOR.replace("seed 0\n", "seed 0\nmonitor train_accuracy\n")
    (tmp_path / "xor.ic").write_text(text, encoding="utf-8")
    assert cli.main(["train", str(tmp_path / "xor.ic"), "--quiet", "--monitor", "loss", "--patience", "1",
                     "--epochs", "40"]) == 0
    assert "the best by loss" in capsys.readouterr().out
    assert cli.main(["train", str(tmp_path / "xor.ic"), "--quiet", "--monitor", "val_mse"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot monitor 'val_mse'" in err and "line" not in err, err


def test_a_run_stopped_early_and_resumed_for_longer_stops_again_with_its_best(tmp_path):
    path = str(tmp_path / "state.npz")
    trainer, data, test = noisy_run(monitor="test_loss", patience=2, checkpoint=path)
    stopped = trainer.fit(data, 60, test=test)
    assert stopped.stopped == "early"
    again = noisy_run(monitor="test_loss", patience=2)[0].fit(data, 80, test=test, resume=path)
    assert (again.stopped, again.epochs, again.best_epoch) == ("early", stopped.epochs, stopped.best_epoch)
    assert "has not improved for 2 epochs" in again.message
    for k in stopped.params:  # the best epoch's, read back from the checkpoint
        np.testing.assert_array_equal(again.params[k], stopped.params[k])


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_the_test_and_validation_losses_are_per_sample_means_as_the_epochs_is(reduce):
    data, held = regression(n=40), regression(n=9, seed=4)
    result = Trainer(linear_model(reduce), SGD(lr=0.01), seed=1).fit(data, 1, params=start(), test=held)
    residual = held["x"] @ result.params["W"].T + result.params["b"] - held["y"]
    per_sample = np.mean(np.sum(residual**2, axis=1))  # NumPy's, on the 9 held-out samples
    assert math.isclose(result.history[0]["test_loss"], per_sample, rel_tol=1e-12)
