"""Issue 10 tried from outside, as a first user would (matrix functions, named indices, the
Jacobian style): one regression test per defect found, each failing before its fix."""

from __future__ import annotations

import numpy as np
import pytest

import indexcalc as ic
from carets import assert_points_at
from indexcalc import cli
from indexcalc.modelfile import parse_model

RNG = np.random.default_rng(11)


def test_a_jacobian_of_a_matrix_argument_is_refused_with_a_caret():
    """`σ_{i,j}(A_kl)`: the argument has two free indices; the refusal pointed nowhere."""
    text = "g_ij = σ_{i,j}(A_kl)"
    with pytest.raises(ic.IndexNotationError, match="relabels one free index") as info:
        ic.parse(text)
    assert_points_at(info.value, text, (7, 8))


def test_an_inverse_of_no_matrix_is_named_once_in_its_message():
    """`inv_ij(A_kk)`: the message read "inv_ij(...)(...) takes a matrix"."""
    with pytest.raises(ic.IndexNotationError) as info:
        ic.parse("C_ij = inv_ij(A_kk)")
    assert "inv_ij(...) takes a matrix" in str(info.value) and "(...)(...)" not in str(info.value)


def test_a_matrix_function_without_a_batch_says_so_plainly():
    """The message read "... beside the fixed no index"."""
    with pytest.raises(ic.IndexNotationError) as info:
        ic.parse("f = logdet(S_{batch row col})")
    assert "the fixed no index" not in str(info.value)
    assert "{batch, row, col}" in str(info.value)


@pytest.mark.parametrize("text, arrays", [
    ("f = det_{row col}(S_{row})", {}),
    ("f = r_{row} inv_{row col}(S_{a b}) r_{col}", {"r": RNG.normal(size=4), "S": np.eye(3)}),
    ("f = det(N_{row col})", {"N": RNG.normal(size=(3, 4))}),
    ("y_{batch} = x_{batch} + q_{row}", {"x": np.ones(2), "q": np.ones((3, 3, 3))}),
])
def test_messages_quote_named_indices_as_written(text, arrays):
    """A piece of the text quoted in a message came with the declaration a lone name
    needs when printed alone: "does not occur in index row\\nS_{row}"."""
    with pytest.raises(ic.IndexCalcError) as info:
        ic.evaluate(text, arrays)
    message = str(info.value)
    assert "index row\n" not in message and "index batch\n" not in message, message
    assert "_{row" in message or "_{batch" in message or "{row" in message, message


def test_cli_eval_of_a_named_lone_index_prints_its_result_without_the_declaration(capsys):
    assert cli.main(["eval", "index dim\ny_{dim} = x_{dim}", "--size", "dim=3"]) == 0
    assert capsys.readouterr().out.startswith("y_{dim} =")


def test_cli_eval_names_a_missing_size_of_a_named_index_once(capsys):
    assert cli.main(["eval", "f = r_{row} inv_{row col}(S_{a b}) r_{col}"]) != 0
    err = capsys.readouterr().err
    assert "give a size for index row of r_{row}" in err, err


def test_cli_eval_takes_the_sizes_of_a_matrix_functions_written_pair(capsys):
    """`inv_ij(A_kl) --size k=3 l=3`: the letters written were refused as unused (the
    held form reads A_ij), a dead end for a user who sizes what they wrote."""
    assert cli.main(["eval", "C_ij = inv_ij(A_kl)", "--size", "k=3", "l=3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    a = np.random.default_rng(1).normal(size=(3, 3))
    assert out.startswith("C_ij =") and "explicit loops agree: yes" in out
    np.testing.assert_allclose(float(out.split()[3].strip("[")), np.linalg.inv(a)[0, 0], rtol=1e-5)


MODEL = """data x
batch n mean
param mu[3] zeros
dataset d.npz
r_{dim} = x_{dim} - mu_{dim}
loss = r_{dim} r_{dim}
"""


def test_a_model_file_with_a_lone_name_says_how_to_declare_it():
    """`mu_{dim}` alone reads as the letters d, i, m; the refusal said so without saying
    how to write one named index."""
    with pytest.raises(ic.IndexCalcError) as info:
        parse_model(MODEL).model
    assert "index dim" in str(info.value), str(info.value)
    declared = parse_model(MODEL.replace("dataset d.npz\n", "dataset d.npz\nindex dim\n")).model
    x = RNG.normal(size=(4, 3))
    params = {"mu": RNG.normal(size=3)}
    value, grads = declared.loss_and_grads(params, {"x": x})
    np.testing.assert_allclose(value, np.mean(np.sum((x - params["mu"]) ** 2, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(grads["mu"], -2 * np.mean(x - params["mu"], axis=0), rtol=1e-12)


def test_compile_names_an_unsized_named_index_as_written():
    """`m_{sample} = [sample >= 2]`: no array sizes sample; the message read
    "cannot tell the size of sample in index sample\\nm_{sample}"."""
    text = "index sample\nm_{sample} = [sample >= 2]\nf = sum_{sample}(m_{sample} u_{sample})"
    with pytest.raises(ic.ShapeError) as info:
        ic.compile(text)({"u": np.arange(4.0)})
    assert "index sample\n" not in str(info.value) and "m_{sample}" in str(info.value), str(info.value)
