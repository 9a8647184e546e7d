"""Models users keep (issue 12): forward-only predictions, scores without gradients, a
trained model saved to one .npz and loaded alone, and `indexcalc train --save` /
`indexcalc predict` on the command line."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import indexcalc as ic
from indexcalc import cli
from indexcalc.expr import Program
from indexcalc.model import Model, ModelError
from indexcalc.modelfile import load
from indexcalc.train import Trainer, accuracy, prepare, train_file

EXAMPLES = Path(ic.__file__).parent / "examples"
XOR = (EXAMPLES / "xor.ic").read_text(encoding="utf-8")
BLOBS = (EXAMPLES / "blobs.ic").read_text(encoding="utf-8")


def reference(model: Model, name: str, params, data) -> np.ndarray:
    """`name` by the interpreter (ic.evaluate, not a compiled plan) of the batched forward
    program up to the equation computing it."""
    equations = model.program.equations
    upto = next(i for i, eq in enumerate(equations) if eq.lhs.name == name)
    return ic.evaluate(Program(tuple(equations[: upto + 1])), {**data, **params})


def mlp() -> Model:
    return Model("h_i = σ(W1_ij x_j + b1_i)\nyhat_k = W2_ki h_i + b2_k\nloss = (yhat_k - y_k)(yhat_k - y_k)",
                 params={"W1": (5, 3), "b1": 5, "W2": (2, 5), "b2": 2}, data=["x", "y"], batch="n", reduce="mean")


def samples(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 3)), "y": rng.normal(size=(n, 2))}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---------------------------------------------------------------- predict


def test_default_outputs_are_what_the_loss_reads_or_the_declared_output():
    assert mlp().outputs == ("yhat",)
    assert load(str(EXAMPLES / "fizzbuzz.ic")).model.outputs == ("z",)
    declared = Model("h_i = σ(W_ij x_j)\nloss = sum_i(h_i h_i)", params={"W": (2, 2)}, data=["x"], output="h")
    assert declared.outputs == ("h",)


@pytest.mark.parametrize("n", [1, 7, 40])
def test_predict_equals_the_interpreted_forward_program_for_any_number_of_samples_without_targets(n):
    model, data = mlp(), samples(n)
    params = model.init_params(3)
    got = model.predict(params, {"x": data["x"]}, outputs=["h", "yhat"])  # no targets: the outputs do not read y
    for name in ("h", "yhat"):
        np.testing.assert_allclose(got[name], reference(model, name, params, data), rtol=1e-12, atol=1e-14)
    assert got["yhat"].shape == (n, 2)


def test_predict_refuses_an_unknown_output_and_missing_data():
    model = mlp()
    with pytest.raises(ModelError, match="no equation computes 'z'"):
        model.predict(model.init_params(), samples(3), outputs="z")
    with pytest.raises(ModelError, match="no array given for x"):
        model.predict(model.init_params(), {"y": np.zeros((3, 2))})


# ---------------------------------------------------------------- scores without gradients


def gradient_scores(self, params, data, prefix):
    """Trainer.scores as it was: a forward and backward pass, the gradients thrown away."""
    loss, _ = self.model.loss_and_grads(params, data)
    out = {f"{prefix}_loss": float(loss)} if prefix != "train" else {}
    if self.metric is not None:
        out[f"{prefix}_accuracy"] = float(self.metric(self.model, params, data))
    return out


@pytest.mark.parametrize("text", [XOR.replace("epochs 300", "epochs 20"), BLOBS])
def test_scores_from_forward_plans_equal_the_gradient_based_scores(text, monkeypatch):
    mf = ic.modelfile.parse_model(text, folder=str(EXAMPLES))
    trainer, data = prepare(mf)
    new = trainer.fit(data.train, 15, test=data.test or None)
    assert {k for r in new.history for k in r} >= {"loss", "train_accuracy"}
    monkeypatch.setattr(Trainer, "scores", gradient_scores)
    trainer, data = prepare(mf)
    old = trainer.fit(data.train, 15, test=data.test or None)
    assert new.history == old.history


def test_scores_compute_no_gradient(monkeypatch):
    model, data = mlp(), samples(10)
    trainer = Trainer(model, metric=None)
    monkeypatch.setattr(Model, "loss_and_grads", lambda *a: pytest.fail("a score computed gradients"))
    scores = trainer.scores(model.init_params(), data, "test")
    assert scores["test_loss"] == pytest.approx(float(reference(model, "loss", model.init_params(), data)), rel=1e-12)


# ---------------------------------------------------------------- save and load


def test_save_load_predict_round_trip_equals_the_interpreted_forward_program(tmp_path):
    model, data = mlp(), samples(9)
    params = model.init_params(5)
    model.save(tmp_path / "w.npz", params)
    loaded, kept = Model.load(str(tmp_path / "w.npz"))
    assert str(loaded.program) == str(model.program) and loaded.outputs == model.outputs
    for name, value in params.items():
        np.testing.assert_array_equal(kept[name], value)
    got = loaded.predict(kept, {"x": data["x"]})["yhat"]
    np.testing.assert_allclose(got, reference(model, "yhat", params, data), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(model.load_params(str(tmp_path / "w.npz"))["W1"], params["W1"])


def test_a_subclass_of_model_loads_as_itself(tmp_path):
    """`Model.load` builds the class it is called on: a user's subclass, with its own
    methods, comes back from its weights file as that subclass, not as a plain Model."""

    class Mine(Model):
        def first_output(self, params, data):
            return self.predict(params, data)[self.outputs[0]]

    model, data = mlp(), samples(4)
    params = model.init_params(2)
    model.save(tmp_path / "w.npz", params)
    loaded, kept = Mine.load(tmp_path / "w.npz")
    assert type(loaded) is Mine
    np.testing.assert_array_equal(loaded.first_output(kept, {"x": data["x"]}),
                                  model.predict(params, {"x": data["x"]})["yhat"])


def test_a_checkpoints_parameters_load_into_its_model_but_a_checkpoint_alone_is_no_model(tmp_path):
    mf = ic.modelfile.parse_model(XOR.replace("epochs 300", "epochs 3"), folder=str(EXAMPLES))
    result, _, _ = train_file(mf, checkpoint=str(tmp_path / "c.npz"))
    params = mf.model.load_params(str(tmp_path / "c.npz"))
    for name, value in result.params.items():
        np.testing.assert_array_equal(params[name], value)
    with pytest.raises(ModelError, match="checkpoint.*give the model file too"):
        Model.load(str(tmp_path / "c.npz"))


def tampered(path: Path, change) -> Path:
    with np.load(path) as stored:
        arrays = dict(stored)
    change(arrays)
    np.savez(path, **arrays)
    return path


def meta_edit(**fields):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta.update(fields)
        arrays["meta"] = np.asarray(json.dumps(meta))
    return change


@pytest.mark.parametrize("change, words", [
    (lambda a: a.pop("meta"), "not an indexcalc weights file"),
    (lambda a: a.__setitem__("meta", np.asarray("{not json")), "not an indexcalc weights file"),
    (lambda a: a.pop("param.b2"), "lacks parameters b2"),
    (lambda a: a.__setitem__("param.W1", np.zeros((3, 5))), "shape (3, 5)"),
    (lambda a: a.__setitem__("param.b1", np.full(5, np.nan)), "not finite"),
    (meta_edit(params=None), "declarations are incomplete"),
    (meta_edit(source="h_i = W1_ij x_j\nloss = h_i h_i"), "does not rebuild a model"),
    (meta_edit(equations="loss = x_n"), "other equations"),
])
def test_a_damaged_or_edited_weights_file_is_refused_naming_the_problem(tmp_path, change, words):
    model = mlp()
    model.save(tmp_path / "w.npz", model.init_params())
    path = tampered(tmp_path / "w.npz", change)
    with pytest.raises(ic.IndexCalcError) as caught:
        Model.load(str(path))
    assert words in str(caught.value)


def test_save_refuses_a_path_it_cannot_write_or_a_file_that_is_not_ours(tmp_path):
    model, params = mlp(), mlp().init_params()
    (tmp_path / "notes.txt").write_text("mine")
    for path, words in ((tmp_path, "is a folder"), (tmp_path / "no" / "w.npz", "does not exist"),
                        (tmp_path / "notes.txt", "not overwriting")):
        with pytest.raises(ic.IndexCalcError, match=words):
            model.save(str(path), params)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ic.IndexCalcError, match="lacks parameters"):
        model.save(str(tmp_path / "w.npz"), {"W1": params["W1"]})


# ---------------------------------------------------------------- the command line


def test_train_save_then_predict_gives_the_python_apis_predictions(tmp_path, capsys):
    model_file = tmp_path / "fizz.ic"
    model_file.write_text((EXAMPLES / "fizzbuzz.ic").read_text(encoding="utf-8").replace("epochs 120", "epochs 3"))
    code, out, _ = run_cli(capsys, "train", model_file, "--quiet", "--save", tmp_path / "w.npz")
    assert code == 0 and "saved the parameters of epoch" in out  # the file monitors test_accuracy: its best
    np.savez(tmp_path / "new.npz", x=ic.datasets.fizzbuzz(0)[1][0][:17])  # test inputs, no targets
    code, out, _ = run_cli(capsys, "predict", model_file, "--weights", tmp_path / "w.npz",
                           "--data", tmp_path / "new.npz", "-o", tmp_path / "out.npz")
    assert code == 0 and "17 samples" in out and "z (17, 4)" in out and "classes" in out
    mf = load(str(model_file))
    result, _, _ = train_file(mf)
    expected = mf.model.predict(result.params, {"x": ic.datasets.fizzbuzz(0)[1][0][:17]})["z"]
    with np.load(tmp_path / "out.npz") as written:
        np.testing.assert_array_equal(written["z"], expected)
    code, out, _ = run_cli(capsys, "predict", model_file, "--weights", tmp_path / "w.npz")  # its own test split
    wanted = accuracy(*mf.metric)(mf.model, result.params, mf.load_data().test)
    assert code == 0 and f"accuracy {wanted:.4g}" in out and "test split" in out
    code, out, _ = run_cli(capsys, "predict", "--weights", tmp_path / "w.npz", "--data", tmp_path / "new.npz")
    assert code == 0 and "z (17, 4)" in out  # the weights file alone rebuilds the model


@pytest.mark.parametrize("name", ["xor.ic", "blobs.ic", "fizzbuzz.ic", "logistic_newton.ic", "causal_attention.ic",
                                  "linear_layer.ic+mse"])
def test_predict_from_the_weights_alone_reports_what_the_model_file_would(name, tmp_path, capsys):
    """train --save keeps the model file in the weights: its data set, one-hot columns and
    metric (accuracy, mse) are there for a predict without it."""
    name, _, metric = name.partition("+")
    text = re.sub(r"(?m)^epochs \d+", "epochs 1", (EXAMPLES / name).read_text(encoding="utf-8"))
    model_file = tmp_path / name
    model_file.write_text(text + ("metric mse P Y\n" if metric else ""))
    weights = tmp_path / "w.npz"
    code, _, _ = run_cli(capsys, "train", model_file, "--quiet", "--save", weights)
    assert code == 0
    code, with_file, _ = run_cli(capsys, "predict", model_file, "--weights", weights)
    assert code == 0 and "against" in with_file  # the metric, on the file's own data set
    model_file.unlink()  # what it said is in the weights file
    code, alone, _ = run_cli(capsys, "predict", "--weights", weights)
    assert code == 0 and alone == with_file


def test_a_weights_file_without_a_readable_model_file_predicts_with_its_own_model(tmp_path, capsys):
    xor = load(str(EXAMPLES / "xor.ic"))
    weights = tmp_path / "w.npz"
    ic.saved.save(xor.model, weights, xor.model.init_params(0), model_file=xor)
    with np.load(weights) as stored:
        arrays = dict(stored)
    meta = json.loads(str(arrays["meta"]))
    meta["model_file"]["text"] = meta["model_file"]["text"].replace("metric accuracy", "metric nonsense")
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(weights, **arrays)
    code, out, _ = run_cli(capsys, "predict", "--weights", weights, "--data", "xor")
    assert code == 0 and "yhat (4, 1)" in out and "accuracy" not in out
    xor.model.save(str(weights), xor.model.init_params(0))  # Model.save keeps no model file
    code, out, err = run_cli(capsys, "predict", "--weights", weights)
    assert code == 1 and "no data to predict on" in err


def test_a_nan_stop_saves_the_last_good_parameters_and_says_so(tmp_path, capsys):
    text = (EXAMPLES / "linear_layer.ic").read_text(encoding="utf-8").replace("lr=0.002", "lr=10")
    (tmp_path / "exploding.ic").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run_cli(capsys, "train", tmp_path / "exploding.ic", "--quiet", "--save", tmp_path / "w.npz")
    assert code == 1 and "the loss became" in err and "saved the last good parameters" in out
    model, params = Model.load(str(tmp_path / "w.npz"))
    assert all(np.all(np.isfinite(v)) for v in params.values())


@pytest.mark.parametrize("argv, words", [
    (["predict", "{xor}", "--weights", "{tmp}/none.npz"], "cannot read the weights file"),
    (["predict", "{xor}", "--weights", "{xor}"], "not an .npz file"),
    (["predict", "{fizz}", "--weights", "{w}"], "other equations"),
    (["predict", "--weights", "{w}"], "no data to predict on"),
    (["predict", "{xor}", "--weights", "{w}", "--data", "{tmp}/none.npz"], "neither built in nor a file"),
    (["predict", "{xor}", "--weights", "{w}", "--data", "{tmp}/other.npz"], "no array named x"),
    (["predict", "{xor}", "--weights", "{w}", "--data", "{tmp}/wide.npz"], "size 2"),
    (["predict", "{xor}", "--weights", "{w}", "--data", "fizzbuzz"], "size 10"),
    (["predict", "{xor}", "--weights", "{w}", "--output-name", "zz"], "no equation computes 'zz'"),
    (["predict", "{xor}", "--weights", "{w}", "-o", "{tmp}"], "is a folder"),
    (["predict", "{xor}", "--weights", "{w}", "-o", "{xor}"], "not overwriting"),
    (["predict", "{xor}", "--weights", "{w}", "-o", "{w}"], "would overwrite an input"),
    (["train", "{xor}", "--quiet", "--save", "{tmp}/no/w.npz"], "does not exist"),
    (["train", "{xor}", "--quiet", "--save", "{xor}"], "not overwriting"),
    (["train", "{xor}", "--quiet", "--save", "{tmp}/c.npz", "--checkpoint", "{tmp}/c.npz"], "the run's own files"),
])
def test_cli_refusals_are_one_line_and_non_zero(tmp_path, capsys, argv, words):
    xor = tmp_path / "xor.ic"
    xor.write_text(XOR.replace("epochs 300", "epochs 2"))
    weights = tmp_path / "w.npz"
    model = load(str(xor)).model
    model.save(str(weights), model.init_params())
    np.savez(tmp_path / "other.npz", a=np.zeros((3, 2)))
    np.savez(tmp_path / "wide.npz", x=np.zeros((3, 5)))
    paths = {"xor": xor, "fizz": EXAMPLES / "fizzbuzz.ic", "w": weights, "tmp": tmp_path}
    code, out, err = run_cli(capsys, *[a.format(**paths) for a in argv])
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("indexcalc: error: "), err
    assert all(w in err for w in words.split(" nor ")) if " nor " in words else words in err, err


MODEL_FILES = sorted(p.name for p in EXAMPLES.glob("*.ic")
                     if p.name not in ("mlp_batch.ic", "sigmoid_layer.ic", "softmax_classifier.ic"))  # formulas only


@pytest.mark.parametrize("name", MODEL_FILES)
def test_every_example_model_rebuilds_from_its_weights_file_alone(name, tmp_path):
    model = load(str(EXAMPLES / name)).model
    model.save(tmp_path / "w.npz", model.init_params(1))
    loaded, params = Model.load(tmp_path / "w.npz")
    assert str(loaded.program) == str(model.program) and loaded.outputs == model.outputs
    assert loaded.parameters == model.parameters and loaded.data == model.data
