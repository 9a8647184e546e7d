"""The training surface of issue 9: every bad file, path, option and model file ends in an
`IndexCalcError` in the user's terms (on the CLI one `indexcalc: error:` line and a non-zero
exit), pointing at the model-file line where there is one; nothing is accepted that means
something else, and no work is lost.

Each family is tested as a family: parametrized members, and a hypothesis generator where
the members are many (damaged files, declaration lines).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, strategies as st

import indexcalc as ic
from strategies import sample
from carets import caret, line_of
from indexcalc import cli
from indexcalc.checkpoints import remove_stale_temporaries
from indexcalc.cli import train as cli_train
from indexcalc.datasets import one_hot, read_npz
from indexcalc.model import Model, ModelError
from indexcalc.modelfile import KEYWORDS, load, parse_model
from indexcalc.optimisers import SGD, Adam, optimiser
from indexcalc.train import Trainer, train_file
from indexcalc.training_errors import TrainingError

EXAMPLES = Path(ic.__file__).parent / "examples"
XOR = (EXAMPLES / "xor.ic").read_text(encoding="utf-8")
GB = 10**9


def xor_file(tmp_path: Path, text: str = XOR, name: str = "xor.ic") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_one_error_line(err: str, *words: str) -> None:
    """stderr holds `indexcalc: error: ...` (a caret block may follow it), with `words`."""
    lines = err.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("indexcalc: error: "))
    rest = lines[first + 1:]
    assert rest == [] or (len(rest) == 2 and rest[0].lstrip().startswith("line ") and rest[1].strip() == "^"), err
    for word in words:
        assert word in err, f"{word!r} not in:\n{err}"


def small_data(n: int = 12, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return {"x": x, "y": (x.sum(1, keepdims=True) > 0).astype(float)}


def xor_model() -> Model:
    return parse_model(XOR).model


def checkpoint(tmp_path: Path, epochs: int = 2, optimizer=None) -> Path:
    path = tmp_path / "state.npz"
    Trainer(xor_model(), optimizer or Adam(lr=0.05), batch_size=5, checkpoint=str(path)).fit(small_data(), epochs)
    return path


def rewrite_npz(path: Path, change) -> None:
    """Apply `change` to the dict of a checkpoint's arrays and write it back."""
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    change(arrays)
    np.savez(path, **arrays)


def change_meta(edit):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        edit(meta)
        arrays["meta"] = np.asarray(json.dumps(meta))

    return change


# ---------------------------------------------------------------- files


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_member_claiming(shape: tuple[int, ...]) -> bytes:
    """An .npy whose header claims `shape` of float64 but which holds 16 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 16


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GOOD = npz_bytes(x=np.zeros((4, 2)), y=np.zeros((4, 1)))
BAD_FILES = {
    "an .npy": (lambda: (buffer := io.BytesIO(), np.save(buffer, np.zeros(3)), buffer.getvalue())[-1], ".npy"),
    "garbage": (lambda: b"this is not an archive", "not an .npz"),
    "empty": (lambda: b"", "not an .npz"),
    "truncated at a half": (lambda: GOOD[: len(GOOD) // 2], "damaged"),
    "truncated in the header": (lambda: GOOD[:40], "damaged"),
    "an 80 GB header": (lambda: zip_of({"x.npy": npy_member_claiming((100_000, 100_000)),
                                        "y.npy": npy_member_claiming((2,))}), "80.0 GB"),
    "pickled objects": (lambda: npz_bytes(x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2)), "objects"),
    "text arrays": (lambda: npz_bytes(x=np.array(["a", "b"]), y=np.zeros(2)), "not an array of real numbers"),
    "a member that is no array": (lambda: zip_of({"x.txt": b"hello"}), "not a NumPy array"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_data_file_is_an_error_at_the_dataset_line(kind, tmp_path):
    make, words = BAD_FILES[kind]
    (tmp_path / "d.npz").write_bytes(make())
    text = XOR.replace("dataset xor", "dataset d.npz")
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(xor_file(tmp_path, text))), epochs=1)
    assert words in str(info.value)
    number, quoted, _ = caret(info.value)
    assert (number, quoted) == (line_of(text, "dataset d.npz"), "dataset d.npz")


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_checkpoint_is_refused_before_training(kind, tmp_path):
    make, words = BAD_FILES[kind]
    words = {"text arrays": "no metadata"}.get(kind, words)  # text is allowed in a checkpoint: its metadata
    path = tmp_path / "state.npz"
    path.write_bytes(make())
    with pytest.raises(TrainingError, match="cannot resume") as info:
        Trainer(xor_model(), Adam()).fit(small_data(), 3, resume=str(path))
    assert words in str(info.value)


def test_a_huge_header_is_refused_without_allocating(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    path.write_bytes(zip_of({"x.npy": npy_member_claiming((10**6, 10**6))}))

    def no_allocation(*args, **kwargs):
        raise AssertionError("read_array was called")

    monkeypatch.setattr(np.lib.format, "read_array", no_allocation)
    with pytest.raises(ic.IndexCalcError, match=r"x claims shape \(1000000, 1000000\) \(8.0 TB\)"):
        read_npz(str(path), "the data file")


PRISTINE: list = []  # a real checkpoint's bytes and the model that wrote it, made once


@sample(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_checkpoint_is_refused_or_harmless(tmp_path_factory, data):
    """Bytes flipped, cut or inserted anywhere in a real checkpoint: the resume either
    refuses with an IndexCalcError or goes on from a state that checks out."""
    folder = tmp_path_factory.mktemp("damaged")
    if not PRISTINE:
        PRISTINE.append(checkpoint(folder).read_bytes())
        PRISTINE.append(xor_model())
    damaged = bytearray(PRISTINE[0])
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(damaged) - 1)))
        if how == "flip":
            damaged[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del damaged[at:at + data.draw(st.integers(1, 64))]
        else:
            damaged[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    path = folder / "state.npz"
    path.write_bytes(bytes(damaged))
    try:
        result = Trainer(PRISTINE[1], Adam(lr=0.05), batch_size=5).fit(small_data(), 3, resume=str(path))
    except ic.IndexCalcError:
        return
    assert result.epochs == 3 and all(np.all(np.isfinite(v)) for v in result.params.values())


def _mt19937(meta):
    state = np.random.MT19937(1).state
    state["state"]["key"] = state["state"]["key"].tolist()
    meta["rng"] = state


CRAFTED_META = {
    "meta not JSON": (lambda a: a.__setitem__("meta", np.asarray("{epoch: 3")), "not JSON"),
    "meta a number": (lambda a: a.__setitem__("meta", np.asarray(3.0)), "no metadata"),
    "meta missing": (lambda a: a.pop("meta"), "no metadata"),
    "meta deeply nested": (lambda a: a.__setitem__("meta", np.asarray("[" * 100_000)), "not JSON"),
    "meta a list": (lambda a: a.__setitem__("meta", np.asarray("[1, 2]")), "does not say"),
    "no format": (change_meta(lambda m: m.pop("format")), "does not say"),
    "epoch a string": (change_meta(lambda m: m.__setitem__("epoch", "2")), "epoch"),
    "epoch negative": (change_meta(lambda m: m.__setitem__("epoch", -1)), "epoch"),
    "epoch true": (change_meta(lambda m: m.__setitem__("epoch", True)), "epoch"),
    "epoch fractional": (change_meta(lambda m: m.__setitem__("epoch", 1.5)), "epoch"),
    "history not a list": (change_meta(lambda m: m.__setitem__("history", {"a": 1})), "history"),
    "history too short": (change_meta(lambda m: m["history"].pop()), "history"),
    "history with text": (change_meta(lambda m: m["history"][0].__setitem__("loss", "low")), "history record 1"),
    "history misnumbered": (change_meta(lambda m: m["history"][1].__setitem__("epoch", 7)), "history record 2"),
    "rng of another kind": (change_meta(_mt19937), "PCG64"),
    "rng garbage": (change_meta(lambda m: m.__setitem__("rng", {"bit_generator": "PCG64", "state": 3})), "PCG64"),
    "rng missing": (change_meta(lambda m: m.pop("rng")), "generator"),
    "equations missing": (change_meta(lambda m: m.__setitem__("equations", 5)), "equations"),
    "another optimiser": (change_meta(lambda m: m.__setitem__("optimizer", "sgd")), "made with sgd"),
    "optimiser state misshapen": (lambda a: a.__setitem__("opt.m.W1", np.zeros((2, 2))), "opt" and "m.W1"),
    "optimiser state unknown": (lambda a: a.__setitem__("opt.q.W1", np.zeros((4, 2))), "does not keep"),
    "adam's count negative": (lambda a: a.__setitem__("opt.t", np.asarray(-3)), "step count"),
    "adam's count a matrix": (lambda a: a.__setitem__("opt.t", np.zeros((2, 2))), "step count"),
    "a parameter NaN": (lambda a: a.__setitem__("param.b1", np.full(4, np.nan)), "not finite"),
    "a parameter of integers": (lambda a: a.__setitem__("param.b1", np.zeros(4, dtype=int)), "not finite"),
    "a parameter missing": (lambda a: a.pop("param.W2"), "lacks parameters W2"),
    "a parameter extra": (lambda a: a.__setitem__("param.V", np.zeros(2)), "does not declare"),
}


@pytest.mark.parametrize("kind", list(CRAFTED_META))
def test_crafted_checkpoint_contents_are_refused_in_words(kind, tmp_path):
    change, words = CRAFTED_META[kind]
    path = checkpoint(tmp_path)
    rewrite_npz(path, change)
    with pytest.raises(TrainingError) as info:
        Trainer(xor_model(), Adam(lr=0.05), batch_size=5).fit(small_data(), 4, resume=str(path))
    assert words in str(info.value), str(info.value)


# ---------------------------------------------------------------- resume


def test_a_checkpoint_of_other_shapes_is_refused_naming_both_at_the_param_line(tmp_path):
    small = xor_file(tmp_path, XOR.replace("W1[4, 2]", "W1[8, 2]").replace("b1[4]", "b1[8]").replace("W2[1, 4]", "W2[1, 8]"),
                     "wide.ic")
    path = tmp_path / "wide.npz"
    train_file(load(str(small)), epochs=2, checkpoint=str(path))
    with pytest.raises(TrainingError) as info:
        train_file(load(str(xor_file(tmp_path))), epochs=4, resume=str(path))
    message = str(info.value)
    assert "(8, 2)" in message and "(4, 2)" in message and "W1" in message
    number, quoted, _ = caret(info.value)
    assert quoted == "param W1[4, 2] xavier" and number == line_of(XOR, "param W1")


def test_a_checkpoint_of_other_equations_is_refused(tmp_path):
    relu = xor_file(tmp_path, XOR.replace("h_i = σ(", "h_i = tanh("), "tanh.ic")
    path = tmp_path / "tanh.npz"
    train_file(load(str(relu)), epochs=2, checkpoint=str(path))
    with pytest.raises(TrainingError, match="written for other equations") as info:
        train_file(load(str(xor_file(tmp_path))), epochs=4, resume=str(path))
    assert "tanh" in str(info.value)


def test_resume_with_fewer_epochs_than_done_says_so(tmp_path, capsys):
    path = tmp_path / "state.npz"
    model = xor_file(tmp_path)
    assert run_cli(capsys, "train", model, "--epochs", 6, "--quiet", "--checkpoint", path)[0] == 0
    code, out, err = run_cli(capsys, "train", model, "--epochs", 4, "--quiet", "--resume", path)
    assert code == 1 and "after" not in out
    assert_one_error_line(err, "already trained 6 epochs", "more than 6")
    code, out, _ = run_cli(capsys, "train", model, "--epochs", 6, "--quiet", "--resume", path)
    assert code == 0 and "after 6 epochs" in out  # as many as done: nothing to train, the scores again


# ---------------------------------------------------------------- output paths


def bad_output(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A path that cannot be written, and words the message must hold."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "notes.npz").write_bytes(npz_bytes(important=np.ones(3)))
    return {
        "a missing folder": (str(tmp_path / "nothere" / "out.npz"), "does not exist"),
        "under a file": (str(tmp_path / "afile" / "out.npz"), "is a file, not a folder"),
        "onto a folder": (str(tmp_path / "adir"), "is a folder"),
        "a read-only folder": ("/sys/out.npz", "not writable"),
        "an option's dash": ("-", "looks like an option"),
    }[kind]


OUTPUT_KINDS = ["a missing folder", "under a file", "onto a folder", "a read-only folder", "an option's dash"]


@pytest.mark.parametrize("kind", OUTPUT_KINDS + ["a file that is no checkpoint", "the model file"])
def test_a_bad_checkpoint_path_is_refused_before_the_first_epoch(kind, tmp_path, capsys):
    model = xor_file(tmp_path)
    if kind == "a file that is no checkpoint":
        target, words = str(tmp_path / "notes.npz"), "is not one; not overwriting"
        (tmp_path / "notes.npz").write_bytes(npz_bytes(important=np.ones(3)))
    elif kind == "the model file":
        target, words = str(model), "would overwrite the model's own files"
    else:
        target, words = bad_output(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    code, out, err = run_cli(capsys, "train", model, "--epochs", 3, "--quiet", "--checkpoint", target)
    assert code == 1 and out == ""  # not even the "training ..." line: nothing ran
    assert_one_error_line(err, "checkpoint", words)
    assert sorted(os.listdir(tmp_path)) == before and model.read_text(encoding="utf-8") == XOR


class FakePyplot:
    """Enough of matplotlib.pyplot for the CLI's plot, recording where it saves."""

    def __init__(self, fail: Exception | None = None):
        self.saved, self.fail = [], fail

    def subplots(self, **_):
        pyplot = self

        class Figure:
            def tight_layout(self):
                pass

            def savefig(self, path):
                if pyplot.fail:
                    raise pyplot.fail
                pyplot.saved.append(path)

        class Axes:
            def __getattr__(self, name):
                return lambda *a, **k: None

        return Figure(), Axes()

    def figure(self):
        class Canvas:
            def get_supported_filetypes(self):
                return {"png": "Portable Network Graphics", "pdf": "PDF", "pgf": "PGF code for LaTeX"}

        class Figure:
            canvas = Canvas()

        return Figure()

    def close(self, figure):
        pass


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_a_bad_plot_path_is_refused_before_the_first_epoch(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_train, "_matplotlib", lambda: FakePyplot())
    target, words = bad_output(tmp_path, kind)
    code, out, err = run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 3, "--quiet", "--plot", target)
    assert code == 1 and out == ""
    assert_one_error_line(err, "the plot", words)


def test_a_plot_never_replaces_a_file_that_is_no_image_nor_takes_a_format_it_cannot_write(tmp_path, capsys,
                                                                                         monkeypatch):
    """`--plot notes.pdf` replaced whatever notes.pdf held, and an extension matplotlib does not
    write (or, as pgf, writes only with LaTeX installed) failed after the training."""
    fake = FakePyplot()
    monkeypatch.setattr(cli_train, "_matplotlib", lambda: fake)
    model = xor_file(tmp_path)
    mine = tmp_path / "notes.pdf"
    mine.write_text("my own notes", encoding="utf-8")
    for target, words in ((model, "exists and is not one; not overwriting it"), (mine, "not overwriting it"),
                          (tmp_path / "loss.ic", "the plot is written as pdf, png, chosen by the file name's extension"),
                          (tmp_path / "loss.pgf", "the plot is written as pdf, png"),
                          (tmp_path / "loss", "the plot is written as pdf, png")):
        code, out, err = run_cli(capsys, "train", model, "--epochs", 3, "--quiet", "--plot", target)
        assert code == 1 and out == "", err
        assert_one_error_line(err, words)
    assert model.read_text(encoding="utf-8") == XOR and mine.read_text(encoding="utf-8") == "my own notes"
    assert fake.saved == []
    image = tmp_path / "loss.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8))  # an earlier plot: replaced
    assert run_cli(capsys, "train", model, "--epochs", 3, "--quiet", "--plot", image)[0] == 0
    assert fake.saved == [str(image)]


def test_a_plot_that_fails_after_training_keeps_the_scores_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    fake = FakePyplot(fail=OSError(28, "No space left on device"))
    monkeypatch.setattr(cli_train, "_matplotlib", lambda: fake)
    path = tmp_path / "state.npz"
    code, out, err = run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 3, "--quiet", "--plot",
                             tmp_path / "p.png", "--checkpoint", path)
    assert code == 1 and "after 3 epochs" in out and path.exists()
    assert_one_error_line(err, "could not draw the plot", "No space left")
    fake.fail = None
    assert run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 3, "--quiet", "--plot", tmp_path / "p.png")[0] == 0
    assert fake.saved == [str(tmp_path / "p.png")]


def test_plot_without_matplotlib_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 3, "--quiet", "--plot", tmp_path / "p.png")
    assert code == 1 and out == ""
    assert_one_error_line(err, "--plot needs matplotlib", "pip install")


# ---------------------------------------------------------------- model files


HUGE = "param W2[100000, 100000] xavier"
MODEL_FILE_CASES = [
    # (replace, by, words in the message, the line the caret must be on)
    ("optimizer adam lr=0.1", "optimizer", ["write the optimizer as"], "optimizer"),
    ("optimizer adam lr=0.1", "optimizer adam learning_rate=0.1",
     ["no setting 'learning_rate'", "lr=, beta1=, beta2=, eps="], "optimizer"),
    ("optimizer adam lr=0.1", "optimizer adam lr=-1", ["learning rate must be a positive number"], "optimizer"),
    ("optimizer adam lr=0.1", "optimizer adam lr=nan", ["learning rate"], "optimizer"),
    ("optimizer adam lr=0.1", "optimizer momentum beta=1.5", ["momentum must be in [0, 1)"], "optimizer"),
    ("optimizer adam lr=0.1", "optimizer adam", None, None),
    ("metric accuracy yhat y", "metric accuracy yhat q", ["target q is not a data tensor", "x, y"], "metric"),
    ("metric accuracy yhat y", "metric accuracy p y", ["output p is not computed", "h, yhat, loss"], "metric"),
    ("param b2[1] zeros", "param b2[1] normal(-1)", ["normal(-1)", "positive"], "param b2"),
    ("param b2[1] zeros", "param b2[1] uniform(0)", ["positive"], "param b2"),
    ("param b2[1] zeros", "param b2[1] normal(1e)", ["not a number"], "param b2"),
    ("param b2[1] zeros", "param b2[1] zeros(2)", ["zeros takes no number"], "param b2"),
    ("param b2[1] zeros", "param b2[²] zeros", ["whole numbers"], "param b2"),
    ("param b2[1] zeros", "param b2[1] zeros\nparam v99[1]", ["v99 does not occur"], "param v99"),
    ("param W2[1, 4] xavier", "param W2[4] xavier", ["W2[4]", "W2_ki", "2 indices"], "param W2"),
    ("param W2[1, 4] xavier", "param W2[1, 4, 2] xavier", ["3 axes"], "param W2"),
    ("param W2[1, 4] xavier", HUGE, ["W2", "80.0 GB"], "param W2"),
    ("param W1[4, 2] xavier", "param W1[4, 20000000000] xavier", ["W1", "640.0 GB"], "param W1"),
    ("epochs 300", "epochs 0", ["positive whole number"], "epochs"),
    ("epochs 300", "epochs ²", ["positive whole number"], "epochs"),
    ("batch_size 4", "batch_size 0", ["positive whole number"], "batch_size"),
    ("seed 0", "seed -1", ["0 or more"], "seed"),
    ("dataset xor", "dataset", ["write the data set as"], "dataset"),
    ("data x y", "data", ["write the data tensors as"], "data"),
    ("data x y", "data x y x", ["data names x twice"], "data"),
    ("optimizer adam lr=0.1", "optimizer adam lr=0.1 lr=0.2", ["setting lr is given twice (lr=0.1 and lr=0.2)"],
     "optimizer"),
    ("param b2[1] zeros", "param b2[1] zeros\nparam x[2]", ["x is declared both a parameter and data"], "param x"),
    ("metric accuracy yhat y", "metric accuracy yhat y\nonehot q 3", ["q is not a data tensor"], "onehot"),
    ("metric accuracy yhat y", "metric accuracy yhat y\nonehot y 1", ["at least 2 classes"], "onehot"),
    ("metric accuracy yhat y", "metric accuracy yhat y\nonehot y", ["onehot TARGET CLASSES"], "onehot"),
    ("loss = (yhat_k - y_k)(yhat_k - y_k)", "loss_k = (yhat_k - y_k)(yhat_k - y_k)",
     ["loss_k must be a scalar", "sum_k"], "loss_k ="),
    ("h_i = σ(W1_ij x_j + b1_i)", "h_ni = σ(W1_ij x_nj + b1_i)", ["batch index n is already used", "per sample"],
     "h_ni ="),
    ("yhat_k = σ(W2_ki h_i + b2_k)", "yhat_k = σ(W2_c h_i + b2_k)", ["W2_c h_i", "b2_k"], "yhat_k ="),
]


def test_a_model_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Notepad writes one; it was 'unexpected invisible character'."""
    from indexcalc.modelfile import load

    (tmp_path / "bom.ic").write_bytes(b"\xef\xbb\xbf" + XOR.encode("utf-8"))
    (tmp_path / "plain.ic").write_text(XOR, encoding="utf-8")
    with_mark, without = load(str(tmp_path / "bom.ic")), load(str(tmp_path / "plain.ic"))
    assert with_mark.model.program == without.model.program
    assert with_mark.optimizer == without.optimizer


@pytest.mark.parametrize("replace, by, words, at", MODEL_FILE_CASES, ids=[c[1].split("\n")[-1] for c in MODEL_FILE_CASES])
def test_a_bad_model_file_points_at_the_line_in_the_users_terms(replace, by, words, at):
    text = XOR.replace(replace, by)
    if words is None:  # an optimizer without settings takes its defaults
        assert parse_model(text).optimizer == ("adam", {})
        return
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(text)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "loss_sample" not in message
    number, quoted, _ = caret(info.value)
    assert number == line_of(text, at), message


def test_the_users_own_index_letters_are_named_not_the_batch_index():
    err = pytest.raises(ic.IndexCalcError, parse_model, XOR.replace("W2_ki h_i", "W2_c h_i")).value
    problem = err.problem
    assert "{c, i}" in problem and "{k}" in problem and not re.search(r"\bn\b", problem), problem
    number, quoted, column = caret(err)
    assert quoted == "yhat_k = σ(W2_c h_i + b2_k)" and column >= quoted.index("W2_c")


DECLARATION_WORDS = ["param", "optimizer", "epochs", "batch_size", "seed", "metric", "onehot", "batch", "dataset",
                     "data", "loss", "schedule", "warmup", "weight_decay", "clip", "validation", "monitor", "patience",
                     "backend"]
PIECES = ["W1", "b2", "y", "x", "q", "[4, 2]", "[1]", "[²]", "[0]", "[-1]", "[]", "normal(", "normal(-1)", "(1e)",
          "uniform(0.5)", "xavier", "he", "adam", "sgd", "momentum", "lr=", "lr=0.1", "lr=-2", "beta=2", "eps=0",
          "learning_rate=1", "accuracy", "yhat", "3", "0", "-1", "1e9", "nan", "inf", "²", "٣", "mean", "sum",
          "none", "n", "=", ",", "#", "onehot", "fizzbuzz", "d.npz", "10000000000", "cosine", "step",
          "every=3", "factor=0.5", "floor=2", "1e-4", "0.1", "val_loss", "mse", "mae", "numpy", "jax", "dask",
          "cupy", "NumPy", "newton", "lbfgs", "memory=5", "damping=0.1"]


@sample(300)
@given(word=st.sampled_from(DECLARATION_WORDS), pieces=st.lists(st.sampled_from(PIECES), max_size=5),
       replace=st.booleans())
def test_any_declaration_line_is_read_or_refused_with_a_caret(word, pieces, replace):
    line = " ".join([word, *pieces])
    lines = XOR.splitlines()
    same = [i for i, l in enumerate(lines) if l.split(" ")[0] == word]
    if replace and same:
        lines[same[0]] = line
    else:
        lines.insert(1, line)
    text = "\n".join(lines) + "\n"
    try:
        parse_model(text)
    except ic.IndexCalcError as err:
        number, _, _ = caret(err)  # every model-file message points into the file
        assert 1 <= number <= len(lines)


def test_training_that_would_not_fit_in_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(ic.datasets, "memory_size", lambda: 10**9)
    model = Model("loss = w_i w_i", params={"w": 40_000_000})  # 320 MB: fits, but not four times over
    Trainer(model, SGD())  # the parameters and their gradients: 640 MB
    with pytest.raises(TrainingError, match=r"training w with adam would take 1.3 GB, more than .* \(1.0 GB\)"):
        Trainer(model, Adam())
    with pytest.raises(ModelError, match=r"parameter w\[200000000\] would take 1.6 GB"):
        Model("loss = w_i w_i", params={"w": 200_000_000})


def test_running_out_of_memory_in_an_epoch_is_an_error_and_the_checkpoint_stays(tmp_path):
    model, path = xor_model(), tmp_path / "state.npz"
    real, calls = model.loss_and_grads, []

    def exhausted(params, batch):
        calls.append(1)
        if len(calls) > 7:  # 3 steps per epoch (scores compute no gradient): in epoch 3
            raise MemoryError
        return real(params, batch)

    model.loss_and_grads = exhausted
    with pytest.raises(TrainingError, match="out of memory in epoch 3 .* holds the last finished epoch"):
        Trainer(model, SGD(), batch_size=4, checkpoint=str(path)).fit(small_data(), 5)
    with np.load(path) as stored:
        assert json.loads(str(stored["meta"]))["epoch"] == 2


# ---------------------------------------------------------------- the command line's numbers


@pytest.mark.parametrize("option, value", [
    ("--seed", "-1"), ("--seed", "x"), ("--seed", "²"), ("--batch-size", "-1"), ("--batch-size", "0"),
    ("--epochs", "0"), ("--epochs", "-3"), ("--epochs", "1.5"), ("--lr", "nan"), ("--lr", "-0.1"),
    ("--lr", "0"), ("--lr", "inf"), ("--lr", "fast"),
])
def test_a_bad_number_for_train_is_one_line_and_exit_2(option, value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(EXAMPLES / "xor.ic"), option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and repr(value) in err and "Traceback" not in err


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": -1}, {"batch_size": True}, {"seed": -1},
                                    {"seed": 1.5}])
def test_bad_trainer_settings_raise(kwargs):
    with pytest.raises(TrainingError):
        Trainer(xor_model(), SGD(), **kwargs)


@pytest.mark.parametrize("epochs", [-1, 2.5, None])
def test_bad_epoch_counts_raise(epochs):
    with pytest.raises(TrainingError, match="epochs"):
        Trainer(xor_model(), SGD()).fit(small_data(), epochs)


@pytest.mark.parametrize("name, settings", [("sgd", {"lr": 0}), ("sgd", {"lr": float("nan")}),
                                            ("momentum", {"beta": -0.1}), ("adam", {"beta2": 1.0}),
                                            ("adam", {"eps": 0}), ("adam", {"learning_rate": 1})])
def test_bad_optimiser_settings_raise(name, settings):
    with pytest.raises(TrainingError, match=name):
        optimiser(name, **settings)


def test_epochs_given_on_the_command_line_are_used_not_the_files(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 1, "--quiet")
    assert code == 0 and "after 1 epoch (" in out


# ---------------------------------------------------------------- NaN stop and divergence


EXPLODING = (EXAMPLES / "linear_layer.ic").read_text(encoding="utf-8").replace("lr=0.002", "lr=10")


def test_a_nan_stop_exits_non_zero_keeps_the_last_good_parameters_and_shows_no_numpy_warning(tmp_path, capsys):
    path = tmp_path / "state.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        code, out, err = run_cli(capsys, "train", xor_file(tmp_path, EXPLODING, "exploding.ic"), "--quiet",
                                 "--checkpoint", path)
    assert code == 1
    assert_one_error_line(err.split("indexcalc: warning:")[0] + err[err.index("indexcalc: error:"):],
                          "the loss became", "last good")
    assert "RuntimeWarning" not in err and "<indexcalc plan>" not in err
    assert re.search(r"after \d+ epochs", out) and "checkpoint:" in out
    with np.load(path) as stored:
        kept = stored["param.W"]
    assert np.all(np.isfinite(kept))
    mf = load(str(tmp_path / "exploding.ic"))
    loss, _ = mf.model.loss_and_grads({"W": kept}, dict(zip(["X", "Y"], ic.datasets.linear(0)[0])))
    assert np.isfinite(loss)


def softmax_model() -> Model:
    return Model("z_k = W_kj x_j + b_k\nloss = logsumexp_c(z_c) - y_k z_k", params={"W": (3, 2), "b": 3},
                 init={"W": "xavier", "b": "zeros"}, data=["x", "y"])


def labelled(n: int = 60, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return {"x": x, "y": np.eye(3)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0)]}


def test_divergence_without_nan_is_reported_once_and_a_good_run_is_not():
    wild = Trainer(softmax_model(), Adam(lr=1e6), batch_size=10).fit(labelled(), 5)
    assert wild.stopped == "done" and all(np.isfinite(r["loss"]) for r in wild.history)
    assert len(wild.warnings) == 1 and "diverging" in wild.warnings[0] and "smaller learning rate" in wild.warnings[0]
    calm = Trainer(softmax_model(), Adam(lr=0.05), batch_size=10).fit(labelled(), 30)
    assert calm.warnings == []


def test_divergence_is_one_warning_line_on_the_command_line(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=labelled()["x"], y=labelled()["y"].argmax(1))
    text = "data x y\nparam W[3, 2] xavier\nparam b[3] zeros\ndataset d.npz\noptimizer adam lr=1e6\nepochs 5\n" \
           "batch_size 10\nonehot y 3\nz_k = W_kj x_j + b_k\nloss = logsumexp_c(z_c) - y_k z_k\n"
    code, out, err = run_cli(capsys, "train", xor_file(tmp_path, text, "wild.ic"), "--quiet")
    assert code == 0
    warned = [line for line in err.splitlines() if line.startswith("indexcalc: warning:")]
    assert len(warned) == 1 and "diverging" in warned[0]


# ---------------------------------------------------------------- data conventions


def npz_model(tmp_path: Path, extra: str = "", **arrays) -> Path:
    np.savez(tmp_path / "d.npz", **arrays)
    text = ("data x y\nbatch n mean\nparam W[3, 2] xavier\nparam b[3] zeros\ndataset d.npz\noptimizer adam lr=0.1\n"
            f"epochs 20\nmetric accuracy z y\n{extra}\nz_k = W_kj x_j + b_k\nloss = logsumexp_c(z_c) - y_k z_k\n")
    return xor_file(tmp_path, text, "labels.ic")


def test_a_data_file_says_which_arrays_it_used_and_which_it_did_not(tmp_path, capsys):
    data = labelled()
    model = npz_model(tmp_path, x=data["x"], y=data["y"], x_test=data["x"][:5], y_test=data["y"][:5])
    code, out, _ = run_cli(capsys, "train", model, "--quiet")
    assert code == 0
    assert "train x (60, 2), y (60, 3)" in out and "no test arrays" in out
    assert "not used: x_test, y_test" in out and "test_x, test_y" in out
    model = npz_model(tmp_path, x=data["x"], y=data["y"], test_x=data["x"][:5], test_y=data["y"][:5])
    code, out, _ = run_cli(capsys, "train", model, "--quiet")
    assert code == 0 and "test x (5, 2), y (5, 3)" in out and "not used" not in out and "test_accuracy" in out


@pytest.mark.parametrize("labels_shape", [(60,), (60, 1)])
def test_integer_class_labels_train_when_declared_one_hot(labels_shape, tmp_path):
    data = labelled()
    labels = data["y"].argmax(1).reshape(labels_shape)
    model = npz_model(tmp_path, "onehot y 3", x=data["x"], y=labels, test_x=data["x"], test_y=labels)
    result, train, test = train_file(load(str(model)))
    np.testing.assert_array_equal(train["y"], data["y"])
    assert result.history[-1]["train_accuracy"] >= 0.75 and test["y"].shape == (60, 3)


def test_class_labels_without_the_declaration_say_how_to_declare_them(tmp_path):
    data = labelled()
    model = npz_model(tmp_path, x=data["x"], y=data["y"].argmax(1))
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(model)))
    assert "shape (60,)" in str(info.value) and "declare: onehot y 3" in str(info.value)
    assert caret(info.value)[1] == "dataset d.npz"


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 1, 3] * 20), "holds 3"),
    (np.array([0, 1, 1.5] * 20), "holds 1.5"),
    (np.array([0, 1, -1] * 20), "holds -1"),
    (np.zeros((60, 2)), "one class label per sample"),
])
def test_labels_that_are_not_classes_are_refused_at_the_onehot_line(labels, words, tmp_path):
    model = npz_model(tmp_path, "onehot y 3", x=labelled()["x"], y=labels)
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(model)))
    assert words in str(info.value)
    assert caret(info.value)[1] == "onehot y 3"


@given(labels=st.lists(st.integers(0, 40), min_size=1, max_size=30), more=st.integers(1, 10))
@sample(40)
def test_one_hot_rows_are_the_identity_rows_of_the_labels(labels, more):
    classes = max(labels) + more
    np.testing.assert_array_equal(one_hot(np.array(labels), classes, "y"), np.eye(classes)[labels])


def test_a_class_count_past_memory_is_refused_at_the_onehot_line(tmp_path):
    """`onehot y 99999999999999999999` was a ValueError from np.eye, and `onehot y 100000`
    built a 10^5 × 10^5 identity (80 GB) to pick 60 rows of it."""
    model = npz_model(tmp_path, "onehot y 99999999999999999999", x=labelled()["x"], y=np.arange(60) % 3)
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(model)))
    assert "the one-hot rows of the train array y of d.npz (60 × 99,999,999,999,999,999,999)" in str(info.value)
    assert caret(info.value)[1] == "onehot y 99999999999999999999"
    rows = one_hot(np.arange(60) % 3, 100_000, "y")  # 48 MB, not 80 GB
    assert rows.shape == (60, 100_000) and rows.sum() == 60 and rows[4, 1] == 1


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((0, 2)), "y": np.zeros((0, 3))}, "no samples"),
    ({"x": np.zeros((5, 2)), "y": np.zeros((4, 3))}, "different numbers of samples"),
    ({"x": np.full((5, 2), np.nan), "y": np.zeros((5, 3))}, "NaN"),
    ({"x": np.float64(3.0), "y": np.zeros((5, 3))}, "single number"),
    ({"x": np.zeros((5, 2)), "y": np.zeros((5, 3)), "test_x": np.zeros((2, 2))}, "not test_y"),
    ({"x": np.zeros((5, 2))}, "has no array y"),
    ({"x": np.zeros((5, 2)), "y": np.zeros((5, 3)), "test_x": np.zeros((2, 2)), "test_y": np.zeros((0, 3))},
     "different numbers of samples"),
])
def test_a_data_file_that_cannot_be_trained_on_is_refused_at_the_dataset_line(arrays, words, tmp_path):
    model = npz_model(tmp_path, **arrays)
    with pytest.raises(ic.IndexCalcError) as info:
        train_file(load(str(model)))
    assert words in str(info.value)
    assert caret(info.value)[1] == "dataset d.npz"


def test_test_arrays_that_do_not_fit_the_equations_fail_before_the_first_epoch(tmp_path):
    data = labelled()
    model = npz_model(tmp_path, x=data["x"], y=data["y"], test_x=np.zeros((4, 5)), test_y=data["y"][:4])
    calls = []
    with pytest.raises(ic.ShapeError):
        train_file(load(str(model)), progress=lambda epoch, record: calls.append(epoch))
    assert calls == []


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_keeps_the_last_epoch_in_the_checkpoint_and_exits_with_one_line(tmp_path, capsys, monkeypatch):
    def interrupt(self, epoch, record):
        if epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_train._Bar, "update", interrupt)
    path = tmp_path / "state.npz"
    code, out, err = run_cli(capsys, "train", xor_file(tmp_path), "--epochs", 10, "--checkpoint", path)
    assert code == 1 and "after 3 epochs" in out
    assert_one_error_line(err, "interrupted")
    straight, _, _ = train_file(load(str(xor_file(tmp_path))), epochs=3)
    with np.load(path) as stored:
        for name, value in straight.params.items():
            np.testing.assert_array_equal(stored[f"param.{name}"], value)


def test_ctrl_c_after_some_steps_of_the_first_epoch_keeps_the_initial_parameters():
    model = xor_model()
    initial = model.init_params(0)
    real, calls = model.loss_and_grads, []

    def interrupted(params, batch):
        calls.append(1)
        if len(calls) == 3:  # two steps of the first epoch, then Ctrl-C in its third
            raise KeyboardInterrupt
        return real(params, batch)

    model.loss_and_grads = interrupted
    result = Trainer(model, Adam(lr=0.1), batch_size=4).fit(small_data(), 5)
    assert result.stopped == "interrupted" and result.epochs == 0
    for name, value in initial.items():
        np.testing.assert_array_equal(result.params[name], value)


def test_ctrl_c_before_training_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("indexcalc.train.train_file", interrupted)
    code, _, err = run_cli(capsys, "train", xor_file(tmp_path), "--quiet")
    assert code == 1
    assert_one_error_line(err, "interrupted before the first epoch")


# ---------------------------------------------------------------- temporaries and kill -9


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_temporary_left_by_a_killed_run_is_removed_by_the_next_and_a_live_ones_kept(tmp_path):
    path = tmp_path / "state.npz"
    stale = tmp_path / f".state.npz.{dead_pid()}.k3j2h1.tmp"
    live = tmp_path / f".state.npz.{os.getppid()}.a1b2c3.tmp"  # a running process's
    other = tmp_path / ".other.npz.1.x.tmp"
    for file in (stale, live, other):
        file.write_bytes(b"PK\x03\x04 half")
    Trainer(xor_model(), SGD(), checkpoint=str(path)).fit(small_data(), 2)
    assert not stale.exists() and live.exists() and other.exists() and path.exists()
    assert remove_stale_temporaries(str(path)) == []


def test_kill_9_at_random_moments_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    """The fault test of issue 9: SIGKILL lands anywhere (start-up, an epoch, a checkpoint
    write); each new run resumes from the checkpoint left; the last one's parameters are
    bit for bit those of a run never stopped, and no temporary is left behind."""
    model = xor_file(tmp_path, XOR.replace("epochs 300", "epochs 400"))
    path = tmp_path / "state.npz"
    straight, _, _ = train_file(load(str(model)))
    chance = random.Random(int(os.environ.get("FAULT_SEED", "9")))
    kills = 0
    for attempt in range(12):
        command = [sys.executable, "-m", "indexcalc", "train", str(model), "--quiet", "--checkpoint", str(path)]
        if path.exists():
            command += ["--resume", str(path)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 3:
            time.sleep(chance.uniform(0.4, 1.2))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
        break
    assert kills >= 1
    assert sorted(os.listdir(tmp_path)) == ["state.npz", "xor.ic"]
    with np.load(path) as stored:
        assert json.loads(str(stored["meta"]))["epoch"] == 400
        for name, value in straight.params.items():
            np.testing.assert_array_equal(stored[f"param.{name}"], value)


# A misspelt declaration word (`optimiser`, `epoch`) was parsed as an equation and refused
# for the left-hand side of a '=' the line never had.

@given(
    word=st.sampled_from([w for w in KEYWORDS if len(w) > 4]),
    at=st.integers(0, 100), edit=st.sampled_from(["drop", "double", "swap"]),
)
@sample(40)
def test_a_misspelt_declaration_is_named_with_the_word_meant(word, at, edit):
    at %= len(word) - 1
    typo = {"drop": word[:at] + word[at + 1:], "double": word[:at] + word[at] + word[at:],
            "swap": word[:at] + word[at + 1] + word[at] + word[at + 2:]}[edit]
    if typo == word:
        return
    text = XOR.replace("seed 0", f"seed 0\n{typo} 3 # typed by hand")
    with pytest.raises(ModelError) as info:
        parse_model(text)
    assert f"unknown declaration {typo!r}" in str(info.value) and f"did you mean {word!r}" in str(info.value)
    assert caret(info.value) == (line_of(text, "typed by hand"), f"{typo} 3 # typed by hand", 0)


def test_a_word_far_from_every_declaration_lists_them_and_notation_lines_stay(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", xor_file(tmp_path, XOR.replace("seed 0", "seed 0\n  lr 0.1")), "--quiet")
    assert code == 1
    assert_one_error_line(err, "unknown declaration 'lr'", "the declarations are data, batch, param", "line ")
    indexed = parse_model("index unit\n" + XOR)
    assert indexed.model is not None and parse_model(XOR.replace("seed 0", "seed 0\nscale = 1")).model
