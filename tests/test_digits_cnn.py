"""examples/digits_cnn.ic: conv 3x3 + ReLU, 2x2 max-pool, dense, softmax cross-entropy on
scikit-learn's 8x8 digits (issue 10). The full run (`indexcalc train
examples/digits_cnn.ic`, 15 epochs) reaches about 98% test accuracy; here two epochs
must already have learned, and the model's loss and gradients must be those of a
hand-written NumPy CNN. Skipped without scikit-learn (an optional extra; CI lacks it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import indexcalc as ic
from indexcalc.modelfile import load
from indexcalc.train import train_file

EXAMPLE = Path(ic.__file__).parent / "examples" / "digits_cnn.ic"


def numpy_cnn(params, x, y):
    """The loss averaged over the batch, and its gradients, written out by hand: valid 3x3
    convolution (one input channel), ReLU, 2x2 max-pool stride 2 (ties split evenly),
    dense, log-softmax cross-entropy."""
    K, b, W, c = params["K"], params["b"], params["W"], params["c"]
    n = len(x)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # n, i, j, k, l
    u = np.einsum("fkl,nijkl->nfij", K, windows) + b[:, None, None]
    h = np.maximum(u, 0)
    blocks = h.reshape(n, -1, 3, 2, 3, 2)
    m = blocks.max(axis=(3, 5))
    z = np.einsum("dfij,nfij->nd", W, m) + c
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    loss = np.mean(lse - (y * z).sum(axis=1))
    dz = (np.exp(z - lse[:, None]) - y) / n
    ties = blocks == m[:, :, :, None, :, None]
    dm = np.einsum("dfij,nd->nfij", W, dz)
    dh = (ties / ties.sum(axis=(3, 5), keepdims=True) * dm[:, :, :, None, :, None]).reshape(h.shape)
    du = dh * (u > 0)
    grads = {"K": np.einsum("nfij,nijkl->fkl", du, windows), "b": du.sum(axis=(0, 2, 3)),
             "W": np.einsum("nd,nfij->dfij", dz, m), "c": dz.sum(axis=0)}
    return loss, grads


@pytest.fixture(scope="module")
def model_file():
    pytest.importorskip("sklearn", reason='the digits data set needs scikit-learn (pip install "indexcalc[digits]")')
    return load(str(EXAMPLE))


def test_the_model_is_the_numpy_cnn_and_its_plan_has_no_dense_shift(model_file):
    data = model_file.load_data()
    batch = {k: np.asarray(v)[:64] for k, v in data.train.items()}
    params = model_file.model.init_params(1)
    loss, grads = model_file.model.loss_and_grads(params, batch)
    want_loss, want_grads = numpy_cnn(params, batch["x"], batch["y"])
    assert loss == pytest.approx(want_loss, rel=1e-10)
    for name, want in want_grads.items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-8, atol=1e-12, err_msg=name)
    plan = model_file.model.gradient._last
    assert "sliding_window_view(" in plan.source and "_scatter(" in plan.source
    assert not plan.lowering.constants


def test_two_epochs_of_training_learn_the_digits(model_file):
    result, _, _ = train_file(model_file, epochs=2)
    first, last = result.history[0], result.history[-1]
    assert result.stopped == "done"
    assert last["loss"] < first["loss"] and last["loss"] < 0.6
    assert last["test_accuracy"] > 0.85  # chance is 0.1; the full 15 epochs reach about 0.98
