"""The training API's arguments, checked where they are given (`Model`, `Trainer`, the
optimisers, `fit`, `predict`, `save`, `load`, the metrics): a value of the wrong kind is
an `IndexCalcError` that names the argument and what it should be, never a Python error
from inside the loop, and a name or a path is taken in any of its usual forms. Two
properties throw any value at any keyword; the tables pin the messages.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import indexcalc as ic
from indexcalc import metrics
from indexcalc.model import Model, ModelError
from indexcalc.modelfile import load
from indexcalc.training_errors import TrainingError
from strategies import sample

EXAMPLES = Path(ic.__file__).parent / "examples"

# The Python API's arguments of the wrong kind: each was an AttributeError, TypeError or
# ValueError from inside (or, for an init of a name that is no parameter, nothing at all).

TANH = "h_i = tanh(W1_ij x_j + b1_i)\nyhat_k = tanh(W2_ki h_i + b2_k)\nloss = (yhat_k - y_k)(yhat_k - y_k)"
SHAPES = {"W1": (4, 2), "b1": 4, "W2": (1, 4), "b2": 1}


def tanh_model(**changes) -> Model:
    return Model(TANH, **{"params": SHAPES, "data": ["x", "y"], "batch": "n", **changes})


def tanh_data() -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(8, 2)), "y": np.ones((8, 1))}


@pytest.mark.parametrize("changes, words", [
    ({"params": [("W1", (4, 2))]}, "params maps each parameter's name to its shape"),
    ({"init": "xavier"}, "init maps parameter names to initialisers"),
    ({"init": {"w1": "xavier"}}, "init names w1, which is not a parameter (the parameters: W1, b1, W2, b2)"),
    ({"data": 3}, "data is the names of the data tensors"),
    ({"data": [1, 2]}, "data is the names of the data tensors"),
    ({"batch": 3}, "the batch index is a letter"),
    ({"batch": "n n"}, "the batch index is a letter"),
    ({"output": "zz"}, "no equation computes the output 'zz' (the model computes h, yhat, loss)"),
    ({"data": "x y x"}, "data names x twice (data: x, y, x)"),
    ({"params": {**SHAPES, "x": 2}}, "x is declared both a parameter and data: a parameter is learnt"),
])
def test_model_arguments_of_the_wrong_kind_are_named(changes, words):
    with pytest.raises(ModelError, match=re.escape(words)):
        tanh_model(**changes)


def test_model_data_may_be_one_string_of_names_as_the_data_line_writes_them():
    assert tanh_model(data="x y").data == tanh_model(data=["x", "y"]).data == ("x", "y")


@pytest.mark.parametrize("make, words", [
    (lambda: ic.Adam(-1), "lr=-1 for adam: the learning rate must be a positive number"),
    (lambda: ic.Adam(float("nan")), "lr=nan for adam"),
    (lambda: ic.SGD("0.1"), "lr='0.1' for sgd"),
    (lambda: ic.SGD(None), "lr=None for sgd"),
    (lambda: ic.SGD(True), "lr=True for sgd"),
    (lambda: ic.Momentum(0.1, beta=1.0), "beta=1.0 for momentum: the momentum must be in [0, 1)"),
    (lambda: ic.Adam(0.1, beta2=-0.1), "beta2=-0.1 for adam"),
    (lambda: ic.Adam(0.1, eps=0), "eps=0 for adam"),
    (lambda: ic.Newton(damping=-1), "damping=-1 for newton"),
    (lambda: ic.Newton(dense_up_to=2.5), "dense_up_to=2.5 for newton"),
    (lambda: ic.LBFGS(memory=0), "memory=0 for lbfgs"),
    (lambda: ic.Trainer(tanh_model(), object()), "has no name, moments, state, step"),
    (lambda: ic.Trainer(tanh_model(), "adamw"), "unknown optimiser 'adamw' (known: sgd, momentum, adam"),
    (lambda: ic.Trainer(TANH, ic.Adam(0.1)), "a Trainer trains an ic.Model"),
])
def test_optimisers_and_trainers_check_their_arguments_where_they_are_made(make, words):
    with pytest.raises(TrainingError, match=re.escape(words)):
        make()


def test_an_optimiser_may_be_given_by_name_with_its_defaults():
    by_name = ic.Trainer(tanh_model(), "adam", batch_size=4).fit(tanh_data(), epochs=2)
    by_object = ic.Trainer(tanh_model(), ic.Adam(), batch_size=4).fit(tanh_data(), epochs=2)
    assert by_name.history == by_object.history


@pytest.mark.parametrize("wrong", [[1, 2], (np.ones(3),), "x", np.ones((8, 2)), 3])
def test_arrays_not_given_by_name_are_refused_by_every_entry_point(wrong, tmp_path):
    model, data = tanh_model(), tanh_data()
    params = model.init_params(0)
    calls = {
        "the training data are a dict": lambda: ic.Trainer(model, ic.Adam(0.1)).fit(wrong, epochs=1),
        "the test data are a dict": lambda: ic.Trainer(model, ic.Adam(0.1)).fit(data, epochs=1, test=wrong),
        "the initial parameters are a dict": lambda: ic.Trainer(model, ic.Adam(0.1)).fit(data, 1, params=wrong),
        "the training data are a dict ": lambda: ic.Trainer(model, ic.LBFGS()).fit(wrong, epochs=1),
        "the data are a dict": lambda: model.predict(params, wrong),
        "the parameters are a dict": lambda: model.predict(wrong, data),
        "the parameters to save are a dict": lambda: model.save(tmp_path / "w.npz", wrong),
    }
    for words, call in calls.items():
        with pytest.raises(ic.IndexCalcError, match=re.escape(words.strip())):
            call()
    with pytest.raises(ModelError, match="outputs are a name or a list of names"):
        model.predict(params, data, outputs=3)


@pytest.mark.parametrize("values, kind", [
    (np.ones((8, 2)) + 1j, "complex numbers"), (np.full((8, 2), None), "Python objects"),
    (np.full((8, 2), "a"), "text"),
])
def test_training_data_that_are_not_real_numbers_are_refused(values, kind):
    with pytest.raises(ic.IndexCalcError, match=f"the training data: x holds {kind}, not real numbers"):
        ic.Trainer(tanh_model(), ic.Adam(0.1)).fit({**tanh_data(), "x": values}, epochs=1)


@pytest.mark.parametrize("settings, words", [
    ({"schedule": 3}, "the schedule is an indexcalc.schedules.Schedule or a name"),
    ({"schedule": lambda epoch: 0.1}, "the schedule is an indexcalc.schedules.Schedule or a name"),
    ({"schedule": "cosin"}, "unknown schedule 'cosin'"),
    ({"metric": "accuracy"}, "the metric is a function of (model, params, data)"),
    ({"metric": lambda output, data: 1.0}, "the metric is a function of (model, params, data)"),
    ({"monitor": 3}, "the monitor is the name of a score"),
    ({"checkpoint": 3}, "the checkpoint is a file path (a str or a pathlib.Path), got 3"),
    ({"fused": "no"}, "fused is True or False"),
    ({"keep_best": 1}, "keep_best is True or False"),
])
def test_trainer_settings_of_the_wrong_kind_are_named(settings, words):
    with pytest.raises(TrainingError, match=re.escape(words)):
        ic.Trainer(tanh_model(), ic.Adam(0.1), **settings)


def test_a_schedule_may_be_given_by_name():
    from indexcalc.schedules import schedule
    by_name = ic.Trainer(tanh_model(), ic.Adam(0.1), schedule="cosine").fit(tanh_data(), epochs=3)
    by_object = ic.Trainer(tanh_model(), ic.Adam(0.1), schedule=schedule("cosine")).fit(tanh_data(), epochs=3)
    assert by_name.history == by_object.history and by_name.history[-1]["lr"] < 0.1


@pytest.mark.parametrize("arguments, words", [
    ({"resume": 3}, "the checkpoint is a file path (a str or a pathlib.Path), got 3"),
    ({"progress": 3}, "progress is a function of (epoch, scores)"),
    ({"params": {"Q": np.ones(3)}}, "the initial parameters name Q, which the model does not declare"),
    ({"params": {"b1": np.full(4, np.nan)}}, "the initial parameters: b1 is not finite real numbers"),
    ({"params": {"b1": np.full(4, 1j)}}, "the initial parameters: b1 is not finite real numbers"),
    ({"train": {"z": 3}}, "the training data: z is a single number"),
    ({"train": {"z": np.ones(5)}}, "the training data have different numbers of samples: x 8, y 8, z 5"),
    ({"test": {"z": 3}}, "the test data: z is a single number"),
])
def test_fit_arguments_that_cannot_work_are_refused_before_the_first_epoch(arguments, words):
    model, data = tanh_model(), tanh_data()
    params = {**model.init_params(0), **arguments.pop("params", {})}
    train = {**data, **arguments.pop("train", {})}
    test = {**data, **arguments.pop("test", {})}
    with pytest.raises(ic.IndexCalcError, match=re.escape(words)):
        ic.Trainer(model, ic.Adam(0.1)).fit(train, epochs=1, test=test, params=params, **arguments)


def test_extra_arrays_with_one_entry_per_sample_ride_along_for_a_metric_of_ones_own():
    seen = []

    def answered(model, params, data):
        seen.append(len(data["tag"]))
        return float(np.mean(data["tag"]))

    answered.name = "tagged"
    data = {**tanh_data(), "tag": np.arange(8.0)}
    result = ic.Trainer(tanh_model(), ic.Adam(0.1), metric=answered).fit(data, epochs=1, test=data)
    assert result.history[-1]["test_tagged"] == 3.5 and 8 in seen
    with pytest.raises(TrainingError, match="the metric returned 'good', not a number"):
        ic.Trainer(tanh_model(), ic.Adam(0.1), metric=lambda m, p, d: "good").fit(tanh_data(), epochs=1)


@pytest.mark.parametrize("seed", ["a", -1, 1.5, True])
def test_init_params_takes_a_whole_seed(seed):
    with pytest.raises(ModelError, match="the seed must be a whole number, 0 or more"):
        tanh_model().init_params(seed)


@pytest.mark.parametrize("bad", [3, None, b"w.npz", 2.5, ["w.npz"]], ids=repr)
def test_a_path_that_is_no_path_is_refused_by_every_entry_point(bad):
    """An int was opened as a file descriptor (and closed: pytest's own output went with
    it); None, bytes or a list failed inside os with a TypeError."""
    from indexcalc.train import train_file
    model, data = tanh_model(), tanh_data()
    calls = {
        "the weights file": lambda: model.save(bad, model.init_params(0)),
        "the weights file ": lambda: ic.Model.load(bad),
        " the weights file": lambda: model.load_params(bad),
        "the model file": lambda: load(bad),
        " the model file": lambda: train_file(bad),
    }
    if bad is not None:  # for these two None says "no checkpoint"
        calls["the checkpoint"] = lambda: ic.Trainer(model, checkpoint=bad)
        calls["cannot resume: the checkpoint"] = lambda: ic.Trainer(model).fit(data, 2, resume=bad)
    for what, call in calls.items():
        with pytest.raises(ic.IndexCalcError, match=re.escape(f"{what.strip()} is a file path")):
            call()


def test_paths_may_be_pathlib_paths_everywhere(tmp_path):
    from indexcalc.train import train_file
    model, data = tanh_model(), tanh_data()
    first = ic.Trainer(model, "adam", checkpoint=tmp_path / "ck.npz").fit(data, 2)
    resumed = ic.Trainer(model, "adam", checkpoint=tmp_path / "ck.npz").fit(data, 3, resume=tmp_path / "ck.npz")
    straight = ic.Trainer(model, "adam").fit(data, 3)
    assert resumed.history == straight.history and first.history == straight.history[:2]
    model.save(tmp_path / "w.npz", resumed.params)
    loaded, params = ic.Model.load(tmp_path / "w.npz")
    assert all(np.array_equal(params[k], resumed.params[k]) for k in params)
    assert all(np.array_equal(model.load_params(tmp_path / "w.npz")[k], params[k]) for k in params)
    assert train_file(EXAMPLES / "xor.ic", epochs=2)[0].history == train_file(str(EXAMPLES / "xor.ic"), epochs=2)[0].history


@pytest.mark.parametrize("metric, reads", [
    (lambda: metrics.accuracy("yhat", "labels"), "accuracy reads labels"),
    (lambda: metrics.accuracy("yhat", "y", "mask"), "accuracy reads mask"),
    (lambda: metrics.mse("yhat", "target"), "mse reads target"),
    (lambda: metrics.mae("yhat", "target"), "mae reads target"),
])
def test_a_metric_that_reads_an_array_not_given_says_which(metric, reads):
    """A KeyError from inside the metric, before."""
    with pytest.raises(ModelError, match=f"the metric {reads}, which is not among the data given \\(x, y\\)"):
        ic.Trainer(tanh_model(), ic.Adam(0.1), metric=metric()).fit(tanh_data(), epochs=1)


# Any value for any keyword of Model, Trainer and fit: it works, or it is an IndexCalcError.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-1, 3), max_size=3), st.tuples(st.integers(-1, 5)),
    st.dictionaries(st.sampled_from(["W1", "b1", "x", "y", "q"]), st.integers(-1, 4), max_size=2),
    st.sampled_from([np.ones(3), np.ones((8, 2)), b"x", object(), "sum", "adam", "cosine", "yhat"]),
)
KEYWORDS_OF = {
    "model": ["params", "data", "batch", "reduce", "init", "loss", "output"],
    "trainer": ["optimizer", "batch_size", "seed", "metric", "checkpoint", "backend", "schedule", "weight_decay",
                "clip", "validation", "monitor", "patience", "keep_best", "fused"],
    "fit": ["train", "epochs", "test", "params", "resume", "progress"],
}


@given(where_key=st.sampled_from([(where, key) for where, keys in KEYWORDS_OF.items() for key in keys]),
       value=ANY_VALUE)
@sample(150)
def test_any_value_of_any_training_keyword_works_or_is_an_indexcalc_error(where_key, value, tmp_path_factory):
    where, key = where_key
    if key == "checkpoint" and isinstance(value, str):  # a path: into a folder of its own
        value = str(tmp_path_factory.mktemp("ck") / (value.replace("/", "_") or "ck.npz"))
    model_settings = {"params": SHAPES, "data": ["x", "y"], **({key: value} if where == "model" else {})}
    fit_settings = {"train": tanh_data(), "epochs": 1, **({key: value} if where == "fit" else {})}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a learning rate of 1e308 may overflow: a warning, not the point
            trainer = ic.Trainer(Model(TANH, **model_settings), **({key: value} if where == "trainer" else {}))
            trainer.fit(**fit_settings)
    except ic.IndexCalcError:
        pass


@given(method=st.sampled_from(["predict params", "predict data", "predict outputs", "evaluate", "loss_and_grads",
                               "save", "save params", "load", "load_params", "init_params seed", "init_params dtype"]),
       value=st.one_of(ANY_VALUE, st.dictionaries(st.sampled_from(["W1", "b1", "x", "q"]), ANY_VALUE, max_size=3)))
@sample(150)
def test_any_value_given_to_a_models_methods_works_or_is_an_indexcalc_error(method, value, tmp_path_factory):
    model, data = tanh_model(), tanh_data()
    params = model.init_params(0)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "w.npz", params)
    if isinstance(value, str):  # a path: in a folder of its own
        value = str(folder / (value.replace("/", "_") or "w.npz"))
    merged = {**params, **value} if isinstance(value, dict) else value
    calls = {
        "predict params": lambda: model.predict(merged, data), "predict data": lambda: model.predict(params, value),
        "predict outputs": lambda: model.predict(params, data, outputs=value),
        "evaluate": lambda: model.evaluate(value, params, data), "loss_and_grads": lambda: model.loss_and_grads(merged, data),
        "save": lambda: model.save(value, params), "save params": lambda: model.save(folder / "out.npz", merged),
        "load": lambda: ic.Model.load(value), "load_params": lambda: model.load_params(value),
        "init_params seed": lambda: model.init_params(value), "init_params dtype": lambda: model.init_params(0, value),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calls[method]()
    except ic.IndexCalcError:
        pass


SAMPLES_FIRST = [  # (a model's equations, its parameters, the data tensor checked and its per-sample shape)
    ("p = w x\nL = (p - y)^2", {"w": ()}, "x", ()),
    ("yhat_i = σ(W_ij x_j + b_i)\nL = (yhat_i - y_i)(yhat_i - y_i)", {"W": (3, 2), "b": 3}, "x", (2,)),
    ("z = σ(sum_ij(K_ij x_ij))\nL = (z - y)^2", {"K": (2, 2)}, "x", (2, 2)),
]


@pytest.mark.parametrize("text, params, name, shape", SAMPLES_FIRST)
@pytest.mark.parametrize("method", ["predict", "evaluate", "loss_and_grads", "fit"])
def test_data_given_without_its_samples_axis_is_named_in_the_users_terms(text, params, name, shape, method):
    """`predict(params, {"x": one_row})` met the batched program's `x_nj has 2 indices`; now
    the data tensor as the user wrote it, the shape it wants, and for one sample `x[None]`,
    which then gives the one-sample answer."""
    model = Model(text, params=params, data=[name, "y"])
    weights = model.init_params(0)
    rng = np.random.default_rng(0)
    target = {"y": rng.normal(size=(1,) + ((3,) if "y_i" in text else ()))}
    call = {"predict": lambda data: model.predict(weights, data),
            "evaluate": lambda data: model.evaluate("L", weights, {**target, **data}),
            "loss_and_grads": lambda data: model.loss_and_grads(weights, {**target, **data})[0],
            "fit": lambda data: ic.Trainer(model, "sgd").fit({**target, **data}, 1).params}[method]
    one = rng.normal(size=shape)
    with pytest.raises(ModelError, match=re.escape(f"one sample is {name}[None], of shape {(1, *shape)}")) as refused:
        call({name: one})
    assert f"got shape {shape}" in str(refused.value) and "_n" not in str(refused.value)
    with pytest.raises(ModelError, match=re.escape("so its array holds the samples first")):
        call({name: one[None, None]})
    answer = call({name: one[None]})
    assert all(np.all(np.isfinite(value)) for value in (answer.values() if isinstance(answer, dict) else [answer]))


def test_predict_of_a_model_that_computes_only_its_loss_says_so_and_gives_the_loss_by_name():
    """It returned an empty dict, which reads as a result."""
    model = Model("L = (w x - y)^2", params={"w": ()}, data=["x", "y"])
    data = {"x": np.array([1.0, 2.0]), "y": np.array([0.0, 1.0])}
    with pytest.raises(ModelError, match=re.escape("predict(params, data, 'L')")):
        model.predict({"w": 1.0}, {"x": data["x"]})
    np.testing.assert_allclose(model.predict({"w": 1.0}, data, "L")["L"], np.mean([1.0, 1.0]))


def test_a_model_that_has_run_pickles_and_gives_the_same_numbers():
    """A model sent to a worker process (multiprocessing, joblib) after a call raised
    PicklingError: its compiled plans held code made at run time. (In this process: a
    fork beside JAX's threads may hang, and the bytes are all another process gets.)"""
    import pickle

    model, data = tanh_model(), tanh_data()
    params = model.init_params(0)
    loss, grads = model.loss_and_grads(params, data)
    predicted = model.predict(params, data)
    copy = pickle.loads(pickle.dumps(model))
    again, again_grads = copy.loss_and_grads(params, data)
    assert again == loss and again_grads.keys() == grads.keys()
    for name in grads:
        np.testing.assert_array_equal(again_grads[name], grads[name])
    for name, value in copy.predict(params, data).items():
        np.testing.assert_array_equal(value, predicted[name])
