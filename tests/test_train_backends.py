"""Training on a backend (issue 11, item 2): the same run on jax, torch and dask arrays.

A run on a backend keeps its parameters, batches and optimiser state on that library's
arrays, and gives the NumPy run's parameters and losses (same seed, same batches: rtol
1e-6 in float64). Checkpoints stay NumPy `.npz` files, so one written on torch resumes on
NumPy and the other way round, continuing as an unbroken run would. A non-finite loss
keeps the last good parameters there too. A backend whose library is not installed is
skipped with the reason, and refused by the command in one line naming the extra.

The xor model is loaded once: its compiled plans (under jax.jit, traced once per shape)
are shared by the tests, which keeps this file within a few seconds.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import indexcalc as ic
from carets import caret
from indexcalc import backends, cli
from indexcalc.modelfile import load, parse_model
from indexcalc.model import Model
from indexcalc.optimisers import SGD, Adam, Momentum
from indexcalc.train import Trainer, prepare, train_file
from indexcalc.training_arrays import to_numpy
from indexcalc.training_errors import TrainingError

INSTALLED = [name for name in ("jax", "torch", "dask", "cupy") if importlib.util.find_spec(name)]


def installed(*names: str) -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(name not in INSTALLED, reason=f"{name} is not installed"))
            for name in names]


if "jax" in INSTALLED:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64, compared at rtol 1e-6

XOR_FILE = Path(ic.__file__).parent / "examples" / "xor.ic"
MF = load(str(XOR_FILE))
DATA = MF.load_data(MF.seed)
OPTIMISERS = {"sgd": lambda: SGD(lr=0.5), "momentum": lambda: Momentum(lr=0.2, beta=0.9), "adam": lambda: Adam(lr=0.1)}


def assert_same_run(got, want, what: str) -> None:
    """The same parameters (as the backend's arrays) and the same per-epoch scores."""
    assert got.stopped == want.stopped and got.epochs == want.epochs, (what, got.message)
    for name, value in want.params.items():
        np.testing.assert_allclose(to_numpy(got.params[name]), value, rtol=1e-6, atol=1e-12, err_msg=f"{what}: {name}")
    assert [r.keys() for r in got.history] == [r.keys() for r in want.history]
    for g, w in zip(got.history, want.history):
        for key in w:
            assert g[key] == pytest.approx(w[key], rel=1e-6, abs=1e-12), (what, g["epoch"], key)


def on_backend(result, backend: str) -> None:
    for name, value in result.params.items():
        assert backends.backend_name_of([value]) == backend, (name, type(value))


@lru_cache(maxsize=None)
def numpy_run(optimiser: str, epochs: int, batch_size: int):
    return Trainer(MF.model, OPTIMISERS[optimiser](), batch_size=batch_size, seed=1).fit(DATA.train, epochs)


# ---------------------------------------------------------------- the same run on every backend


@pytest.mark.parametrize("backend", installed("jax", "torch", "dask"))
def test_the_xor_file_trains_on_a_backend_as_on_numpy(backend):
    """The model file's own settings (Adam, the metric, the test set): scores and
    parameters as on NumPy, the parameters still the backend's arrays at the end."""
    epochs = 2 if backend == "dask" else 8
    want = prepare(MF)[0].fit(DATA.train, epochs, test=DATA.test)
    trainer, _ = prepare(MF, backend=backend)
    got = trainer.fit(DATA.train, epochs, test=DATA.test)
    assert_same_run(got, want, backend)
    on_backend(got, backend)
    assert all(backends.backend_name_of([v]) == backend
               for k, v in trainer.optimizer.state.items() if k != "t")  # Adam's moments stay there too


@pytest.mark.parametrize("optimiser", list(OPTIMISERS))
@pytest.mark.parametrize("backend", installed("jax", "torch"))
def test_each_optimiser_on_a_backend_follows_numpys_batches_and_numbers(backend, optimiser):
    """Batches of 3 out of 4 samples: the shuffled order and the short last batch are the
    same as NumPy's, step by step, for SGD, momentum and Adam."""
    want = numpy_run(optimiser, 6, 3)
    got = Trainer(MF.model, OPTIMISERS[optimiser](), batch_size=3, seed=1, backend=backend).fit(DATA.train, 6)
    assert_same_run(got, want, f"{optimiser} on {backend}")
    on_backend(got, backend)


@pytest.mark.parametrize("backend", installed("dask"))
def test_momentum_on_dask_stays_lazy_arrays_and_gives_numpys_numbers(backend):
    want = numpy_run("momentum", 2, 3)
    got = Trainer(MF.model, OPTIMISERS["momentum"](), batch_size=3, seed=1, backend=backend).fit(DATA.train, 2)
    assert_same_run(got, want, "momentum on dask")
    on_backend(got, backend)


# ---------------------------------------------------------------- checkpoints across backends


@pytest.mark.parametrize("first, then", [("torch", "numpy"), ("numpy", "torch")])
def test_a_checkpoint_written_on_one_backend_resumes_on_another(first, then, tmp_path):
    if "torch" not in INSTALLED:
        pytest.skip("torch is not installed")
    path = str(tmp_path / "state.npz")
    Trainer(MF.model, Adam(lr=0.1), batch_size=3, seed=1, checkpoint=path, backend=first).fit(DATA.train, 3)
    with np.load(path) as stored:  # NumPy's arrays, whatever the run was on
        assert stored["param.W1"].dtype == np.float64 and stored["opt.m.W1"].shape == (4, 2)
    rest = Trainer(MF.model, Adam(lr=0.1), batch_size=3, seed=1, backend=then).fit(DATA.train, 6, resume=path)
    straight = numpy_run("adam", 6, 3)
    assert_same_run(rest, straight, f"{first} checkpoint resumed on {then}")
    if then != "numpy":
        on_backend(rest, then)


# ---------------------------------------------------------------- a non-finite loss


@pytest.mark.parametrize("backend", installed("torch", "dask"))  # jax's flag is the same code, jitted
def test_a_non_finite_loss_on_a_backend_keeps_the_last_good_parameters(backend):
    model = Model("z = w_j x_j\nL = exp((z - y)(z - y))", params={"w": 2}, init={"w": "zeros"}, data=["x", "y"])
    data = {"x": np.array([[1.0, 2.0], [-1.0, 0.5], [0.3, 0.3]]), "y": np.array([1.0, -2.0, 0.5])}
    with np.errstate(over="ignore", invalid="ignore"):
        want = Trainer(model, SGD(lr=50.0)).fit(data, 500)
    got = Trainer(model, SGD(lr=50.0), backend=backend).fit(data, 500)
    assert want.stopped == got.stopped == "nan" and got.epochs == want.epochs
    assert "last good" in got.message and ("loss became" in got.message or "gradient" in got.message)
    assert all(np.all(np.isfinite(to_numpy(v))) for v in got.params.values())
    assert_same_run(got, want, f"nan on {backend}")
    on_backend(got, backend)


# ---------------------------------------------------------------- the command and its refusals


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize("backend", installed("torch"))
def test_the_command_trains_on_a_backend_with_numpys_scores(backend, capsys):
    code, numpy_out, _ = run_cli(capsys, "train", XOR_FILE, "--epochs", "5", "--quiet")
    assert code == 0
    code, out, _ = run_cli(capsys, "train", XOR_FILE, "--epochs", "5", "--quiet", "--backend", backend)
    assert code == 0 and f"on {backend}" in out
    scores = [line for line in out.splitlines() if line.startswith("after")]
    assert scores and scores[0].split("): ")[1] == next(
        line for line in numpy_out.splitlines() if line.startswith("after")).split("): ")[1]


def test_a_missing_library_is_one_line_naming_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # as if jax were not installed
    monkeypatch.delitem(backends._LOADED, "jax", raising=False)
    code, out, err = run_cli(capsys, "train", XOR_FILE, "--epochs", "2", "--backend", "jax")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith("indexcalc: error: ")
    assert 'pip install "indexcalc[jax]"' in err
    with pytest.raises(TrainingError, match=r'indexcalc\[jax\]'):
        Trainer(MF.model, backend="jax")


@pytest.mark.skipif("cupy" in INSTALLED, reason="cupy is installed here")
def test_an_uninstalled_backend_is_refused_before_any_work(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", XOR_FILE, "--backend", "cupy", "--checkpoint", tmp_path / "c.npz")
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert 'pip install "indexcalc[cupy]"' in err and list(tmp_path.iterdir()) == []


def test_an_unknown_backend_is_one_line_naming_the_known_ones(capsys):
    code, out, err = run_cli(capsys, "train", XOR_FILE, "--backend", "tensorflow")
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert "'tensorflow'" in err and all(name in err for name in backends.KNOWN)
    with pytest.raises(TrainingError, match="unknown backend"):
        Trainer(MF.model, backend="tensorflow")


def test_a_model_files_backend_line_is_read_and_a_bad_one_refused_with_a_caret():
    text = XOR_FILE.read_text(encoding="utf-8")
    assert parse_model(text.replace("seed 0", "seed 0\nbackend dask")).backend == "dask"
    assert parse_model(text).backend == "numpy"
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(text.replace("seed 0", "seed 0\nbackend cuda"))
    number, quoted, _ = caret(info.value)
    assert quoted.startswith("backend cuda") and "backend torch" in str(info.value)


@pytest.mark.skipif("cupy" in INSTALLED, reason="cupy is installed here")
def test_a_missing_library_named_by_the_file_points_at_its_line_unless_overridden(tmp_path):
    path = tmp_path / "xor.ic"
    path.write_text(XOR_FILE.read_text(encoding="utf-8").replace("seed 0", "seed 0\nbackend cupy"), encoding="utf-8")
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(path)), epochs=1)
    assert caret(info.value)[1].startswith("backend cupy") and "indexcalc[cupy]" in str(info.value)
    result, _, _ = train_file(load(str(path)), epochs=1, backend="numpy")  # the command's --backend wins
    assert result.stopped == "done"


def test_numpy_parameters_of_another_library_are_refused_by_name():
    if "torch" not in INSTALLED:
        pytest.skip("torch is not installed")
    import torch

    params = {k: torch.as_tensor(v) for k, v in MF.model.init_params(0).items()}
    with pytest.raises(TrainingError, match="backend='torch'"):
        Trainer(MF.model, Adam()).fit(DATA.train, 1, params=params)


@pytest.mark.parametrize("backend", installed("torch"))
def test_a_backends_own_out_of_memory_error_is_the_out_of_memory_message(backend, tmp_path, monkeypatch):
    """A GPU's allocator says so with its own exception (torch's OutOfMemoryError, XLA's
    RESOURCE_EXHAUSTED): the same message as NumPy's MemoryError, the checkpoint kept."""
    real, calls = MF.model.loss_and_grads, []

    def exhausted(params, batch):
        calls.append(1)
        if len(calls) > 2:  # in the second epoch (preflight, then one step per epoch)
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(params, batch)

    monkeypatch.setattr(MF.model, "loss_and_grads", exhausted)
    path = tmp_path / "state.npz"
    with pytest.raises(TrainingError, match=r"out of memory in epoch \d.*holds the last finished epoch"):
        Trainer(MF.model, Adam(lr=0.1), seed=1, checkpoint=str(path), backend=backend).fit(DATA.train, 5)
    assert path.exists()
    monkeypatch.setattr(MF.model, "loss_and_grads", lambda params, batch: (_ for _ in ()).throw(RuntimeError("bad")))
    with pytest.raises(RuntimeError, match="bad"):  # any other error is not called a lack of memory
        Trainer(MF.model, Adam(lr=0.1), seed=1, backend=backend).fit(DATA.train, 1)
