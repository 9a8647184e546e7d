"""The data sets of issue 10's examples: scikit-learn's handwritten digits (an optional
extra) and the copy / reverse sequence tasks for causal self-attention.

The contract: each is named on a model file's `dataset` line and gives the arrays its
`data` line names, shaped as the docstring of `indexcalc.datasets` says; the digits split
is stratified and the same on every call; the sequence targets really are the copy (or
the reverse) of the first half, scored only where the weights say; and without
scikit-learn the digits are a one-line `DataError` naming the extra to install, while the
core imports and trains without it. Tests that need scikit-learn skip when it is absent
(CI installs only the test extra); the missing-extra tests always run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import indexcalc as ic
from carets import caret, line_of
from indexcalc import datasets
from indexcalc.datasets import DataError
from indexcalc.model import Model, Param
from indexcalc.modelfile import parse_model
from indexcalc.optimisers import Adam
from indexcalc.train import Trainer, train_file



def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # hidden, or None in sys.modules
        return False


HAS_SKLEARN = _importable("sklearn")
needs_sklearn = pytest.mark.skipif(not HAS_SKLEARN, reason='scikit-learn is not installed '
                                   '(pip install "indexcalc[digits]"); CI installs only the test extra')
EXTRA = 'pip install "indexcalc[digits]"'

SOFTMAX_DIGITS = """
data x y
batch n mean
param W[10, 8, 8] zeros
param b[10] zeros
dataset digits
optimizer adam lr=0.05
epochs 8
batch_size 64
metric accuracy z y

z_k = W_krc x_rc + b_k
loss = logsumexp_c(z_c) - y_k z_k
"""


# ---------------------------------------------------------------- digits


@needs_sklearn
def test_digits_shapes_scaling_and_one_hot_targets():
    (x, y), (test_x, test_y) = datasets.digits()
    assert x.shape == (1437, 8, 8) and y.shape == (1437, 10)
    assert test_x.shape == (360, 8, 8) and test_y.shape == (360, 10)
    for images in (x, test_x):
        assert images.dtype == np.float64 and images.min() == 0.0 and images.max() == 1.0
        # scaled by the format's 16 grey levels, not by each image's own brightest pixel
        assert np.allclose(images * 16, np.round(images * 16))
        assert np.all(images.reshape(len(images), -1).max(axis=1) <= 1.0)
    for targets in (y, test_y):
        assert set(np.unique(targets)) == {0.0, 1.0}
        np.testing.assert_array_equal(targets.sum(axis=1), 1.0)


@needs_sklearn
def test_digits_split_is_stratified_complete_and_fixed():
    from sklearn.datasets import load_digits

    everything = load_digits()
    (x, y), (test_x, test_y) = datasets.digits()
    counts = np.bincount(everything.target, minlength=10)
    held_out = test_y.sum(axis=0)
    # stratified: each digit's share of the test set is its share of the whole, give or take one image
    assert np.all(np.abs(held_out - counts * 360 / 1797) <= 1), held_out
    np.testing.assert_array_equal(y.sum(axis=0) + held_out, counts)
    # every image exactly once, with its own label
    ours = np.concatenate([np.concatenate([x, test_x]).reshape(1797, 64),
                           np.concatenate([y, test_y]).argmax(1)[:, None]], axis=1)
    theirs = np.concatenate([everything.images.reshape(1797, 64) / 16, everything.target[:, None]], axis=1)
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])
    # the same split on every call and whatever the training seed: one test set to compare runs on
    (x2, y2), (test_x2, _) = datasets.digits(seed=7)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(test_x, test_x2)
    # the split's own seed does choose it
    (_, _), (other, _) = datasets.digits(split_seed=1)
    assert not np.array_equal(test_x, other)


@needs_sklearn
def test_a_model_file_names_digits_and_trains_on_it():
    mf = parse_model(SOFTMAX_DIGITS)
    data = mf.load_data()
    assert data.train["x"].shape == (1437, 8, 8) and data.test["y"].shape == (360, 10)
    assert "digits" in data.describe() and "x (1437, 8, 8)" in data.describe()
    result, _, _ = train_file(mf)
    assert result.stopped == "done"
    assert result.history[-1]["test_accuracy"] >= 0.9  # softmax regression on the pixels: ~95%


@needs_sklearn
def test_digits_with_the_wrong_number_of_data_tensors_says_what_it_holds():
    text = SOFTMAX_DIGITS.replace("data x y", "data x y m").replace("- y_k z_k", "- y_k z_k + m")
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(text).load_data()
    assert "digits has 2 arrays (images x_rc, one-hot digits y_k)" in str(info.value)
    assert "the model names 3: x, y, m" in str(info.value)


class _HideScikitLearn:
    """A meta-path finder that finds no scikit-learn: the package as if not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _without_sklearn(monkeypatch, how: str) -> None:
    for name in [m for m in sys.modules if m.partition(".")[0] == "sklearn"]:
        monkeypatch.delitem(sys.modules, name)
    if how == "none in sys.modules":
        monkeypatch.setitem(sys.modules, "sklearn", None)
    else:
        monkeypatch.setattr(sys, "meta_path", [_HideScikitLearn(), *sys.meta_path])


@pytest.mark.parametrize("how", ["none in sys.modules", "not on the path"])
def test_digits_without_scikit_learn_is_one_line_naming_the_extra(monkeypatch, how):
    _without_sklearn(monkeypatch, how)
    with pytest.raises(DataError) as info:
        datasets.digits()
    message = str(info.value)
    assert isinstance(info.value, ic.IndexCalcError)
    assert "\n" not in message
    assert message == f"the data set digits needs scikit-learn, which is not installed: {EXTRA}"


def test_a_model_file_naming_digits_without_scikit_learn_points_at_its_dataset_line(monkeypatch):
    _without_sklearn(monkeypatch, "none in sys.modules")
    with pytest.raises(DataError) as info:
        parse_model(SOFTMAX_DIGITS).load_data()
    problem, *where = str(info.value).splitlines()
    assert EXTRA in problem and "scikit-learn" in problem
    number, quoted, _ = caret(info.value)
    assert number == line_of(SOFTMAX_DIGITS, "dataset") and quoted.startswith("dataset digits")


def test_a_broken_scikit_learn_is_told_apart_from_a_missing_one(monkeypatch):
    if not HAS_SKLEARN:
        pytest.skip("scikit-learn is not installed, so it cannot be broken")
    monkeypatch.setitem(sys.modules, "sklearn.model_selection", None)
    with pytest.raises(DataError) as info:
        datasets.digits()
    message = str(info.value)
    assert "\n" not in message and "installed but cannot be imported" in message and EXTRA in message


def test_the_core_never_imports_scikit_learn():
    code = ("import sys, indexcalc, indexcalc.datasets, indexcalc.train, indexcalc.modelfile; "
            "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_digits_extra_is_declared_for_pip():
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(req.startswith("scikit-learn") for req in extras["digits"])
    core = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert not any("scikit" in req for req in core)


# ---------------------------------------------------------------- copy and reverse


def _tokens(onehot: np.ndarray) -> np.ndarray:
    return onehot.argmax(axis=-1)


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_sequence_shapes_and_one_hot_rows(name):
    (x, y, m), (test_x, test_y, test_m) = datasets.BUILT_IN[name](0)
    assert x.shape == y.shape == (2000, 12, 6) and m.shape == (2000, 12)
    assert test_x.shape == test_y.shape == (500, 12, 6) and test_m.shape == (500, 12)
    for onehot in (x, y, test_x, test_y):
        assert set(np.unique(onehot)) == {0.0, 1.0}
        np.testing.assert_array_equal(onehot.sum(axis=-1), 1.0)


@pytest.mark.parametrize("name, answer_of", [("copy", lambda first: first),
                                             ("reverse", lambda first: first[:, ::-1])])
def test_the_answer_is_the_copy_or_the_reverse_of_the_first_half(name, answer_of):
    for x, y, m in datasets.BUILT_IN[name](3):
        tokens, targets = _tokens(x), _tokens(y)
        first = tokens[:, :6]
        assert np.all(first < 5)  # symbols 0 … 4
        np.testing.assert_array_equal(tokens[:, 6], 5)  # then the separator
        np.testing.assert_array_equal(targets[:, :-1], tokens[:, 1:])  # y is x shifted by one
        # the weighted targets are exactly the answer, and nothing else is weighted
        np.testing.assert_array_equal(m, np.repeat([[0.0] * 6 + [1.0] * 6], len(m), axis=0))
        np.testing.assert_array_equal(targets[:, 6:], answer_of(first))
        # and each is there to look back at: copy reads t - 6, reverse 11 - t (both ≤ t)
        for t in range(6, 12):
            back = t - 6 if name == "copy" else 11 - t
            assert back <= t
            np.testing.assert_array_equal(targets[:, t], tokens[:, back])


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_sequences_are_distinct_reproducible_and_follow_the_seed(name):
    (x, _, _), (test_x, _, _) = datasets.BUILT_IN[name](0)
    rows = {tuple(r) for r in _tokens(x)[:, :6]}
    held_out = {tuple(r) for r in _tokens(test_x)[:, :6]}
    assert len(rows) == 2000 and len(held_out) == 500 and not rows & held_out
    again = datasets.BUILT_IN[name](0)
    np.testing.assert_array_equal(x, again[0][0])
    np.testing.assert_array_equal(test_x, again[1][0])
    assert not np.array_equal(x, datasets.BUILT_IN[name](1)[0][0])
    # every symbol in every position, about equally often
    counts = np.stack([np.bincount(col, minlength=5) for col in _tokens(x)[:, :6].T])
    assert counts.min() > 300


def test_sequences_refuse_more_distinct_draws_than_there_are():
    with pytest.raises(DataError, match="only 16 of length 2"):
        datasets.sequences(0, n=10, test=10, length=2, symbols=4)


SEQUENCE = """
data x y m
batch n mean
param W[6, 6] zeros
dataset reverse

z_tv = W_vu x_tu
ce_t = logsumexp_u(z_tu) - y_tv z_tv
loss = m_t ce_t / 6
"""


def test_a_model_file_names_the_sequence_arrays_and_the_loop_feeds_all_three():
    mf = parse_model(SEQUENCE)
    data = mf.load_data()
    assert list(data.train) == ["x", "y", "m"] and data.test["m"].shape == (500, 12)
    assert "m (2000, 12)" in data.describe()
    result, _, _ = train_file(mf, epochs=1)
    assert result.stopped == "done" and np.isfinite(result.history[-1]["loss"])


def test_a_data_line_naming_two_of_the_three_says_what_the_third_is():
    text = SEQUENCE.replace("data x y m", "data x y").replace("loss = m_t ce_t / 6", "loss = sum_t(ce_t)")
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(text).load_data()
    message = str(info.value)
    assert "reverse has 3 arrays (tokens x_tv, next tokens y_tv, answer weights m_t)" in message
    assert "the model names 2: x, y" in message
    number, _, _ = caret(info.value)
    assert number == line_of(text, "dataset")


def test_one_layer_causal_attention_learns_to_reverse():
    """The sizes are learnable by the model the issue asks for: one attention layer with a
    learned position embedding. The causal mask is given here as an array C_ij = [j <= i]
    (the notation's Iverson bracket will write it in the equations); accuracy is over the
    answer tokens, weighted by m."""
    (x, y, m), (test_x, test_y, test_m) = datasets.BUILT_IN["reverse"](0)
    causal = np.tril(np.ones((12, 12)))

    def arrays(x, y, m):
        return {"x": x, "y": y, "m": m, "C": np.broadcast_to(causal, (len(x), 12, 12))}

    d = 16
    model = Model("""
        e_td = E_dv x_tv + P_td
        q_ia = Q_ad e_id
        k_ja = K_ad e_jd
        u_jb = U_bd e_jd
        s_ij = q_ia k_ja / 4
        a_ij = C_ij exp(s_ij) / sum_k(C_ik exp(s_ik))
        h_ib = a_ij u_jb
        z_tv = O_vb h_tb + c_v
        ce_t = logsumexp_u(z_tu) - y_tv z_tv
        loss = m_t ce_t / 6
    """, params={"E": Param("E", (d, 6), "xavier"), "P": Param("P", (12, d), "normal", 0.5),
                 "Q": Param("Q", (d, d), "xavier"), "K": Param("K", (d, d), "xavier"),
                 "U": Param("U", (d, d), "xavier"), "O": Param("O", (6, d), "xavier"),
                 "c": Param("c", (6,), "zeros")}, data=["x", "y", "m", "C"], batch="n")

    def answer_accuracy(model, params, data):
        hit = model.evaluate("z", params, data).argmax(-1) == data["y"].argmax(-1)
        return float((hit * data["m"]).sum() / data["m"].sum())

    trainer = Trainer(model, Adam(0.01), batch_size=50, seed=0, metric=answer_accuracy)
    result = trainer.fit(arrays(x, y, m), 3, test=arrays(test_x, test_y, test_m))
    assert result.history[-1]["test_accuracy"] >= 0.95, result.history
