"""Errors: bad input raises the indexcalc exception family, with a message that helps.

The contract: every mistake a user can make raises `ic.IndexCalcError` or a subclass
(ParseError, IndexNotationError, ShapeError, MissingArrayError). A syntax error quotes
the line and puts a caret under the offending character; an index error names the
indices and the expression; a size error names the index and both sizes; a missing array
is named. No other exception escapes the public API on any input, and nothing hangs.
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import sample
from carets import assert_points_at, caret

EVALUATORS = [ic.evaluate, ic.evaluate_loops]
evaluators = pytest.mark.parametrize("evaluator", EVALUATORS, ids=["einsum", "loops"])


# ---------------------------------------------------------------- helpers


def parse_error(text: str, cls=ic.ParseError) -> ic.IndexCalcError:
    with pytest.raises(cls) as info:
        ic.parse(text)
    return info.value


def eval_error(evaluator, text, arrays, cls) -> ic.IndexCalcError:
    with pytest.raises(cls) as info:
        evaluator(text, arrays)
    return info.value


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "w": rng.normal(size=(3, 4)),
        "x": rng.normal(size=4),
        "b": rng.normal(size=3),
        "v": rng.normal(size=3),
        "m": rng.normal(size=(3, 3)),
    }


def test_the_family():
    for cls in (ic.ParseError, ic.IndexNotationError, ic.ShapeError, ic.MissingArrayError):
        assert issubclass(cls, ic.IndexCalcError)
    assert issubclass(ic.IndexCalcError, Exception)


# ---------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    "text, char",
    [
        ("y_i = w_ij x_j $ 2", "$"),
        ("y_i = x_i @ 2", "@"),
        ("y = x ! z", "!"),
        ("y = x & z", "&"),
        ("y_i = x_i]", "]"),
        ("y_i = w_ij} x_j", "}"),
        ('y = "x"', '"'),
        ("y_i = x_i ? 1", "?"),
    ],
)
def test_unexpected_character(text, char):
    err = parse_error(text)
    assert "unexpected character" in str(err)
    assert repr(char) in str(err)
    assert_points_at(err, text, text.index(char))


@pytest.mark.parametrize(
    "text, fragment, where",
    [
        ("y_i = (w_ij x_j", "expected ')'", len("y_i = (w_ij x_j")),
        ("y = sigma(x_i x_i", "to close the argument of 'sigma'", len("y = sigma(x_i x_i")),
        ("y = sum_i(x_i", "to close sum_i(...)", len("y = sum_i(x_i")),
        ("y_i = w_ij x_j)", "unexpected ')'", len("y_i = w_ij x_j")),
        ("y = (x))", "unexpected ')'", len("y = (x)")),
        ("y = w_{ij x_j", "unclosed '{'", len("y = w_")),
        ("y_i = w_ij} x_j", "unexpected character '}'", len("y_i = w_ij")),
        ("d = loss_{,(gh)}[w", "unclosed '['", len("d = loss_{,(gh)}")),
        ("y = ()", "empty parentheses", len("y = (")),
    ],
)
def test_unbalanced_parentheses_and_braces(text, fragment, where):
    err = parse_error(text)
    assert fragment in str(err)
    assert_points_at(err, text, where)


@pytest.mark.parametrize(
    "text, fragment, where",
    [
        ("g = ∂C", "needs what it is taken by, as in ∂C/∂b", len("g = ∂C")),
        ("g = ∂C/b", "needs what it is taken by", len("g = ∂C")),
        ("g = ∂C/∂", "followed by a name", len("g = ∂C/∂")),
        ("g = ∂ C/∂b", "followed by what it differentiates", len("g = ∂")),
        ("g = ∂²C/∂b", "asks for 2 derivatives and 1 is written below it", len("g = ")),
        ("g = ∂C/∂a∂b", "asks for 1 derivative and 2 are written below it", len("g = ")),
        ("g = ∂⁰C/∂b", "order 0 is the tensor itself", len("g = ∂")),
        ("g = ∂δ_ij/∂b", "differentiates a tensor written plainly", len("g = ∂")),
        ("g = ∂C_{,i}[w]/∂b", "differentiates a tensor written plainly", len("g = ∂")),
        ("g = ∂σ(x)/∂b", "differentiates a tensor written plainly", len("g = ∂")),
        # an index after the name below the line: by entries, or a scalar whose name holds '_'
        ("g = ∂C/∂w_g", "∂w_g reads two ways: by entries of w (write C_{,g}[w]) or by a scalar named w_g "
                        "(write C_{,()}[w_g])", len("g = ∂C/∂w")),
        ("g = ∂²C/∂a∂w_gh", "(write C_{,()(gh)}[a,w])", len("g = ∂²C/∂a∂w")),
        ("index batch, out\ng = ∂y_{batch out}/∂w_g", "(write y_{batch out,g}[w])",  # named: one blank between
         len("index batch, out\ng = ∂y_{batch out}/∂w")),
        ("g_i = ∂y_i/∂w_{gh}", "takes scalars; for the derivative by entries of w write y_{i,(gh)}[w]",
         len("g_i = ∂y_i/∂w")),
    ],
)
def test_a_derivative_written_with_partials_that_does_not_read_points_at_it(text, fragment, where):
    """∂C/∂b is the comma derivative C_{,()}[b] as the notes write it; a part missing or
    an order that disagrees with the names below the line is refused with a caret."""
    err = parse_error(text)
    assert fragment in str(err)
    assert_points_at(err, text, where)


@pytest.mark.parametrize(
    "text, found, where",
    [
        ("y_i = w_ij x_j +", "the end of the text", 16),
        ("y_i = x_i -", "the end of the text", 11),
        ("y_i = x_i /", "the end of the text", 11),
        ("y = x^", "the end of the text", 6),
        ("y = x **", "the end of the text", 8),
        ("y = 2 *", "the end of the text", 7),
        ("y_i = * x_i", "'*'", 6),
        ("y = x + * z", "'*'", 8),
        ("y = x / / z", "'/'", 8),
        ("= x", "'='", 0),
        ("y_i = x_i +\nz = 1", "the end of the line", 11),
    ],
)
def test_dangling_operator(text, found, where):
    err = parse_error(text)
    assert "expected a tensor, number or '('" in str(err)
    assert f"found {found}" in str(err)
    assert_points_at(err, text, where)


def test_nothing_after_equals():
    err = parse_error("y = ")
    assert "expected an expression after '='" in str(err)
    assert_points_at(err, "y = ", 4)


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "# only a comment", "# one\n  # two\n", ";"])
def test_empty_input(text):
    err = parse_error(text)
    assert "nothing to parse" in str(err)


@pytest.mark.parametrize(
    "text, name",
    [("eta(x_i + 1)", "eta"), ("y_i = eta(x_i + 1)", "eta"), ("y = lr(x_i x_i)", "lr"), ("y = foo'(x)", "foo'")],
)
def test_unknown_function(text, name):
    err = parse_error(text)
    message = str(err)
    assert f"unknown function '{name}'" in message
    assert "write a space" in message and f"'{name} (...)'" in message
    assert_points_at(err, text, text.index(name))
    if "'" not in name:  # and the advice works: with a space it is a product
        assert isinstance(ic.parse(text.replace(f"{name}(", f"{name} (")), ic.Expr)


@pytest.mark.parametrize(
    "text, fragment, where",
    [
        ("exp", "the function 'exp' needs an argument in parentheses", 0),
        ("y = exp + 1", "the function 'exp' needs an argument in parentheses", 4),
        ("y_i = sigma_i", "the function 'sigma' needs an argument in parentheses", 6),
        ("y = 2 tanh", "the function 'tanh' needs an argument in parentheses", 6),
        ("y = exp()", "'exp' needs an argument", (8, 9)),
    ],
)
def test_function_without_argument(text, fragment, where):
    err = parse_error(text)
    assert fragment in str(err)
    assert_points_at(err, text, where)


@pytest.mark.parametrize(
    "text, fragment, where",
    [
        ("w_", "'_' must be followed by indices", (1, 2)),
        ("y = 2 x_", "'_' must be followed by indices", (7, 8)),
        ("y = x_ + 1", "'_' must be followed by indices", (5, 6)),
        ("w_{i,}", "a comma derivative needs indices after the comma", (2, 5)),
        ("w_{1}", "cannot read indices '1'", (2, 4)),
        ("y = w_{i1j,}", "a comma derivative needs indices after the comma", (6, 11)),
        ("w_{i,j,k}", "at most one comma", (2, 8)),
        ("w_(ij)", "grouped indices (ij)(kl) are only for δ", 0),
        ("y = σ_ij(x_i)", "a subscripted function takes one index", 4),
    ],
)
def test_bad_subscript(text, fragment, where):
    err = parse_error(text)
    assert fragment in str(err)
    assert_points_at(err, text, where)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("δ_i", "a Kronecker delta takes two indices"),
        ("delta_i", "a Kronecker delta takes two indices"),
        ("δ_ijk", "a Kronecker delta takes two indices"),
        ("y_i = δ_ijk x_k", "a Kronecker delta takes two indices"),
        ("δ_(ij)(k)", "a grouped delta pairs two groups of equal length"),
        ("y = δ_(ij)(kl)(mn) a_ijklmn", "a grouped delta pairs two groups of equal length"),
        ("δ_()()", "a grouped delta pairs two groups of equal length"),
    ],
)
def test_bad_delta(text, fragment):
    err = parse_error(text)
    assert fragment in str(err)
    start = text.index("δ") if "δ" in text else text.index("delta")
    assert_points_at(err, text, start)


@pytest.mark.parametrize("text", ["w_ij[w]", "y = loss[w]", "y_i = x_i[w] + 1"])
def test_wrt_on_a_tensor_without_comma_derivative(text):
    err = parse_error(text)
    assert "'[...]' names what a comma derivative is taken by" in str(err)
    assert "has no comma derivative" in str(err)
    assert_points_at(err, text, text.index("["))


@pytest.mark.parametrize(
    "text, derivs, names",
    [("f_{,ij}[a,b,c]", 2, 3), ("f_{,(gh)}[a,b]", 1, 2), ("y = f_{k,i(gh)}[a,b,c,d] z_kigh", 2, 4)],
)
def test_wrong_number_of_names_in_brackets(text, derivs, names):
    err = parse_error(text)
    assert f"{derivs} derivative" in str(err) and f"{names} names" in str(err)
    assert_points_at(err, text, (text.index("["), text.index("]")))


@pytest.mark.parametrize(
    "text, fragment, where",
    [
        ("2 = x", "the left-hand side of '=' must be one tensor", 0),
        ("x_i + 1 = y_i", "the left-hand side of '=' must be one tensor", 0),
        ("sigma(x) = y", "the left-hand side of '=' must be one tensor", 0),
        ("a_i = x_i\n2 x_i = y_i", "the left-hand side of '=' must be one tensor", 10),
        ("y_ii = x_i", "the left-hand side y_ii repeats an index", 0),
        ("h_{i,i} = x_i", "repeats an index", 0),
        ("y = x = z", "only one '=' per line", 6),
        ("y_i = 2 x_i =", "only one '=' per line", 12),
    ],
)
def test_bad_equation(text, fragment, where):
    err = parse_error(text)
    assert fragment in str(err)
    assert_points_at(err, text, where)


@pytest.mark.parametrize(
    "text, line",
    [
        ("y_i = x_i\nx_i + 1", "x_i + 1"),
        ("# layer\ny_i = x_i\n\n  2 x_i\nz = 1", "  2 x_i"),
        ("w_ij x_j\ny_i = x_i", "w_ij x_j"),
        ("y_i = x_i\nx_i^2", "x_i^2"),
        ("y_i = x_i\nz = 1\n  x_i ** 2 + 1", "  x_i ** 2 + 1"),
    ],
)
def test_bare_expression_in_a_program(text, line):
    err = parse_error(text)
    assert "every line must be an equation" in str(err)
    where = text.index(line) + len(line) - len(line.lstrip())
    assert_points_at(err, text, where)


def test_caret_on_the_right_line_of_a_program():
    text = "h_i = w_ij x_j   # hidden\n# a comment with $ in it\nyhat_i = sigma(h_i + $)\nloss = yhat_i yhat_i\n"
    err = parse_error(text)
    line_number, quoted, column = caret(err)
    assert line_number == 3
    assert quoted == "yhat_i = sigma(h_i + $)"
    assert column == quoted.index("$")
    assert "loss" not in str(err) and "hidden" not in str(err)


def test_caret_on_the_right_line_of_a_program_with_braces_across_lines():
    text = "a_i = x_i\nb_{i\n j} = x_ij\nc = (a_i a_i +\n  * 2)"
    err = parse_error(text)
    line_number, quoted, column = caret(err)
    assert (line_number, quoted, column) == (5, "  * 2)", 2)


@evaluators
def test_index_error_caret_on_the_right_line(evaluator, arrays):
    text = "h_i = w_ij x_j\n\ny_i = h_i + b_k\n"
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    assert_points_at(err, text, text.index("b_k"))


@evaluators
def test_caret_counts_characters_of_the_text_as_read(evaluator):
    """ŷ may come as y + combining hat; the caret still stands under the offending term."""
    text = "y\u0302_i + x_j"
    err = eval_error(evaluator, text, {"yhat": np.ones(2), "x": np.ones(2)}, ic.IndexNotationError)
    _, quoted, column = caret(err)
    assert quoted[column:] == "x_j"


@pytest.mark.parametrize(
    "text, where",
    [("y_i = x_j^2", 6), ("y_i = x_i + x_j**2", 12), ("y = x_i^x_j^2", 8), ("y = x_i x_i\nz_i = x_j^2 + 1", 18)],
)
@evaluators
def test_index_error_caret_under_a_power(evaluator, text, where):
    err = eval_error(evaluator, text, {"x": np.ones(2)}, ic.IndexNotationError)
    assert_points_at(err, text, where)


# ---------------------------------------------------------------- index rules


@evaluators
def test_sum_terms_with_different_indices(evaluator, arrays):
    text = "y_i = w_ij x_j + b_k"
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    assert "the terms of a sum must carry the same indices" in message
    assert "w_ij x_j has {i}" in message and "b_k has {k}" in message
    assert_points_at(err, text, text.index("b_k"))


@evaluators
def test_sum_terms_with_different_indices_inside_a_function(evaluator, arrays):
    text = "y_i = sigma(w_ij x_j + m_ik)"
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    assert "{i}" in message and "{i, k}" in message and "m_ik" in message


@pytest.mark.parametrize(
    "text, lhs, right, detail",
    [
        ("y_ik = w_ij x_j", "{i, k}", "{i}", "{k} on the left but not on the right"),
        ("y = w_ij x_j", "no index", "{i}", "{i} free on the right but not on the left"),
        ("y_j = w_ij x_j", "{j}", "{i, j}", "{i} free on the right but not on the left"),
    ],
)
@evaluators
def test_rhs_indices_differ_from_lhs(evaluator, arrays, text, lhs, right, detail):
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    lhs_name = text.split("=")[0].strip()
    assert f"the two sides of {lhs_name} = ... carry different indices" in message
    assert f"the left has {lhs}" in message and f"the right {right}" in message
    assert detail in message
    assert_points_at(err, text, text.index("=") + 2)


@pytest.mark.parametrize(
    "text, found",
    [("y_i = σ_i(x_j v_j)", "no index free"), ("y_i = σ_i(w_jk m_kl)", "{j, l} free"), ("y_i = tanh_i(2)", "no index free")],
)
@evaluators
def test_subscripted_function_needs_one_free_index(evaluator, arrays, text, found):
    arrays = {**arrays, "w": np.ones((3, 3))}
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    assert "relabels one free index of its argument" in message
    assert found in message
    arg = text[text.index("(") + 1 : text.rindex(")")]
    assert arg in message
    assert_points_at(err, text, 6)


@pytest.mark.parametrize(
    "text, reduction, missing, body",
    [
        ("y = sum_k(x_j x_j)", "sum_k", "{k}", "x_j x_j"),
        ("y_i = mean_n(w_ij x_j)", "mean_n", "{n}", "w_ij x_j"),
        ("y = Σ_jk(w_jq x_q)", "sum_jk", "{k}", "w_jq x_q"),
    ],
)
@evaluators
def test_reduction_over_an_absent_index(evaluator, arrays, text, reduction, missing, body):
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    assert f"{reduction}(...) reduces over {missing}" in message
    assert f"does not occur in {body}" in message
    assert_points_at(err, text, text.index(text.split("= ")[1][:1]))


@pytest.mark.parametrize("text, reduction", [("y = sum_jj(x_j)", "sum_jj"), ("y = mean_nkn(X_nk)", "mean_nkn")])
def test_reduction_repeating_an_index(text, reduction):
    err = parse_error(text)
    assert f"{reduction}(...) repeats an index" in str(err)
    assert_points_at(err, text, text.index(reduction))


@pytest.mark.parametrize(
    "text, exponent, free",
    [("y_j = x_j^x_j", "x_j", "{j}"), ("y_i = b_i ** (w_ij x_j)", "w_ij x_j", "{i}"), ("y = 2^x_j", "x_j", "{j}")],
)
@evaluators
def test_exponent_with_a_free_index(evaluator, arrays, text, exponent, free):
    err = eval_error(evaluator, text, arrays, ic.IndexNotationError)
    message = str(err)
    assert f"the exponent {exponent} must carry no free index, it has {free}" in message
    assert_points_at(err, text, text.rindex(exponent))


# ---------------------------------------------------------------- arrays and sizes


@evaluators
def test_size_mismatch_names_index_and_both_sizes(evaluator):
    arrays = {"w": np.ones((3, 4)), "x": np.ones(3)}
    err = eval_error(evaluator, "y_i = w_ij x_j", arrays, ic.ShapeError)
    message = str(err)
    assert re.search(r"\bindex j\b", message), message
    assert "size 4" in message and "size 3" in message
    assert "w_ij" in message and "x_j" in message


@evaluators
def test_size_mismatch_between_equations_of_a_program(evaluator):
    arrays = {"w": np.ones((3, 4)), "x": np.ones(4), "b": np.ones(5)}
    err = eval_error(evaluator, "h_i = w_ij x_j\ny_i = h_i + b_i", arrays, ic.ShapeError)
    message = str(err)
    assert re.search(r"\bindex i\b", message) and "size 3" in message and "size 5" in message


@pytest.mark.parametrize(
    "text, given, tensor, ndim",
    [
        ("y_i = w_i x_i", {"w": np.ones((3, 4)), "x": np.ones(3)}, "w_i has 1 index", "2 dimensions"),
        ("y_i = x_i", {"x": 2.0}, "x_i has 1 index", "0 dimensions"),
        ("y = eta x_i x_i", {"eta": np.ones(3), "x": np.ones(3)}, "eta has 0 indices", "1 dimension"),
        ("y_ij = m_ij", {"m": np.ones((2, 2, 2))}, "m_ij has 2 indices", "3 dimensions"),
    ],
)
@evaluators
def test_array_of_wrong_ndim(evaluator, text, given, tensor, ndim):
    err = eval_error(evaluator, text, given, ic.ShapeError)
    assert tensor in str(err) and ndim in str(err)


@evaluators
def test_missing_array_is_named_and_the_given_ones_listed(evaluator, arrays):
    err = eval_error(evaluator, "y_i = w_ij z_j + b_i", arrays, ic.MissingArrayError)
    message = str(err)
    assert "no array given for 'z'" in message
    assert "arrays given: b, m, v, w, x" in message


@evaluators
def test_missing_arrays_all_named(evaluator):
    err = eval_error(evaluator, "loss = eta (p_i - q_i)(p_i - q_i)", {"q": np.ones(2)}, ic.MissingArrayError)
    message = str(err)
    assert "'eta'" in message and "'p'" in message and "'q'" not in message.split("(arrays")[0]
    assert "arrays given: q" in message


@evaluators
def test_missing_array_with_nothing_given(evaluator):
    err = eval_error(evaluator, "y_i = x_i", {}, ic.MissingArrayError)
    assert "'x'" in str(err) and "none" in str(err)


@evaluators
def test_missing_comma_derivative_array_is_named(evaluator):
    err = eval_error(evaluator, "w_new_gh = w_gh - eta loss_{,(gh)}[w]",
                     {"w": np.ones((2, 2)), "eta": 0.1}, ic.MissingArrayError)
    assert "loss" in str(err) and "[w]" in str(err)


@pytest.mark.parametrize(
    "text, given, a, b",
    [
        ("y = δ_ij w_ij", {"w": np.ones((3, 4))}, ("i", 3), ("j", 4)),
        ("y_i = δ_ij x_j + b_i", {"x": np.ones(4), "b": np.ones(3)}, ("i", 3), ("j", 4)),
        ("y = δ_(ij)(kl) a_ij c_kl", {"a": np.ones((2, 3)), "c": np.ones((3, 3))}, ("i", 2), ("k", 3)),
    ],
)
@evaluators
def test_delta_pairing_indices_of_different_sizes(evaluator, text, given, a, b):
    err = eval_error(evaluator, text, given, ic.ShapeError)
    message = str(err)
    assert "delta" in message or "δ" in message
    for index, size in (a, b):
        assert f"index {index} (size {size})" in message, message


@pytest.mark.parametrize("text, index", [("y_ij = δ_ij", "i"), ("y_i = x_j δ_jj + 0 δ_ii", "i")])
@evaluators
def test_index_of_unknown_size(evaluator, text, index):
    err = eval_error(evaluator, text, {"x": np.ones(3)}, ic.ShapeError)
    assert f"cannot tell the size of index {index}" in str(err)


@pytest.mark.parametrize(
    "value",
    [
        ["a", "b", "c"],
        "abc",
        None,
        object(),
        {"a": 1},
        np.array([1 + 2j, 0, 0]),
        np.array(["1", "2", "3"]),
        np.array(["2020-01-01"] * 3, dtype="datetime64[D]"),
        [[1.0, 2.0], [3.0]],
    ],
    ids=["strings", "str", "None", "object", "dict", "complex", "numpy-str", "datetime", "ragged"],
)
@evaluators
def test_non_numeric_array(evaluator, value):
    with pytest.raises(ic.IndexCalcError) as info:
        evaluator("y = x_i x_i", {"x": value})
    if not isinstance(value, list) or not isinstance(value[0], list):
        assert isinstance(info.value, ic.ShapeError)
        assert "'x'" in str(info.value) and "not real numbers" in str(info.value)


@pytest.mark.parametrize("value", [[1.0, 2.0], None, "x", ("x", 1.0), 3.0, np.ones(3)])
@evaluators
def test_arrays_not_a_mapping(evaluator, value):
    with pytest.raises(ic.IndexCalcError) as info:
        evaluator("y = x_i x_i", value)
    assert "arrays must be a mapping" in str(info.value)


@pytest.mark.parametrize("source", [42, None, b"y = x", ["y = x"], 1.5, np.ones(2)])
def test_parse_source_not_a_string(source):
    with pytest.raises(ic.ParseError) as info:
        ic.parse(source)
    assert "expected text to parse" in str(info.value)


@pytest.mark.parametrize("source", [42, None, b"y = x", ["y = x"], {"y": 1}, np.ones(2)])
@evaluators
def test_evaluate_source_not_a_string_or_expression(evaluator, source):
    with pytest.raises(ic.IndexCalcError) as info:
        evaluator(source, {"x": np.ones(2)})
    assert "expected notation text or a parsed expression" in str(info.value)


def test_unknown_backend():
    with pytest.raises(ic.IndexCalcError) as info:
        ic.evaluate("y = x_i x_i", {"x": np.ones(2)}, backend="cupy")
    assert "'cupy'" in str(info.value)


@evaluators
def test_errors_on_a_parsed_tree_keep_their_message(evaluator, arrays):
    tree = ic.parse("y_ik = w_ij x_j", check=False)
    err = eval_error(evaluator, tree, arrays, ic.IndexNotationError)
    assert "{k} on the left but not on the right" in str(err)


# ---------------------------------------------------------------- nothing else escapes, nothing hangs

TIME_LIMIT = 10.0  # seconds: a hang guard, not a speed test (these calls take 0.1 s; a shared 2-core box under load took 2)


def guarded(call, *args, **kwargs):
    """Run one public call: it returns, or raises an IndexCalcError whose message renders
    (with a caret inside the text, if it points); it never takes long."""
    start = time.perf_counter()
    try:
        result = call(*args, **kwargs)
    except ic.IndexCalcError as err:
        result = err
        message = str(err)
        assert message
        if err.text is not None and err.pos is not None:
            assert 0 <= err.pos <= len(err.text)
            caret(err)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT, f"{getattr(call, '__name__', call)} took {elapsed:.1f} s on {args!r:.300}"
    return result


def exercise(text: str, arrays) -> None:
    """Every public entry point on `text`: parse, the printers, both evaluators. A syntax
    or index error about the text points into the text as parsed (NFC)."""
    as_read = unicodedata.normalize("NFC", text)
    tree = guarded(ic.parse, text)
    if isinstance(tree, ic.IndexCalcError):
        assert isinstance(tree, (ic.ParseError, ic.IndexNotationError)), f"ic.parse raised {type(tree).__name__}: {tree}"
        assert tree.text == as_read and tree.pos is not None, f"an error about text without a position: {tree}"
    else:
        assert isinstance(tree, ic.Expr)
        guarded(str, tree)
        guarded(tree.pretty)
        guarded(tree.latex)
        guarded(tree.einsum)
        guarded(ic.evaluate, tree, arrays)
    for evaluator in EVALUATORS:
        result = guarded(evaluator, text, arrays)
        if isinstance(result, ic.IndexCalcError) and result.text is not None:
            assert result.text == as_read, f"the message quotes other text than was parsed: {result}"
        if isinstance(result, ic.IndexNotationError):
            assert result.pos is not None, f"an index error about text without a position: {result}"


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000,
        "(" * 5000 + "x" + ")" * 5000,
        "y = " + "(" * 5000 + "x_i + 1" + ")" * 5000,
        "y = x" + "^x" * 5000,
        "y_i = x_i" + "^2" * 5000,
        "y = " + "exp(" * 3000 + "x" + ")" * 3000,
        "y = " + "sum_i(" * 3000 + "x_i" + ")" * 3000,
        "y_i = " + "σ_i(" * 3000 + "x_i" + ")" * 3000,
        "y = " + "2 * (" * 3000 + "x",
        "y = " + "x + (" * 3000 + "1" + ")" * 3000,
        "y = " + "max(0, " * 3000 + "x" + ")" * 3000,
    ],
    ids=["open", "balanced", "sums", "power", "power-number", "exp", "sum", "relabel", "product", "nested-sum", "max"],
)
def test_deep_nesting_raises_index_calc_error(text):
    with pytest.raises(ic.IndexCalcError):
        guarded_raise(ic.parse, text)
    with pytest.raises(ic.IndexCalcError):
        guarded_raise(ic.evaluate, text, {"x": np.ones(2)})


def guarded_raise(call, *args):
    start = time.perf_counter()
    try:
        return call(*args)
    finally:
        assert time.perf_counter() - start < TIME_LIMIT


@pytest.mark.parametrize(
    "template",
    ["y_i = x_i{powers}", "y_i = {open}x_i + 1{close}", "y = {open}x_i x_i + 1{close}",
     "y_i = {exps}x_i{close}", "y = sum_i({open}x_i x_i{close})", "y_i = {minus}x_i{powers}"],
)
def test_deep_but_parsable_trees_print_and_evaluate_or_raise(template):
    """Up to the parser's limit and past it: the printers and evaluators may recurse
    more deeply than the parser did, and must still answer or raise an IndexCalcError.
    (The limit depends on the stack in use, so it is found first and the depths just
    below and above it are tried.)"""
    def at(depth):
        return template.format(powers="^1" * depth, open="(" * depth, close=")" * depth,
                               exps="exp(" * depth, minus="-" * depth)

    def parses(depth):
        try:
            return isinstance(ic.parse(at(depth)), ic.Expr)
        except ic.ParseError:
            return False

    limit = 10
    while limit < 5000 and parses(limit + 10):
        limit += 10
    for depth in [10, 100] + list(range(max(limit - 150, 110), limit + 30, 10)):
        exercise(at(depth), {"x": np.full(2, 0.5)})


# A fixed set of arrays for every name the programs below use. Every index of a program
# gets one size, and the programs evaluate as they stand; their mutants mostly do not.
def _fuzz_arrays():
    rng = np.random.default_rng(1)
    shapes = {
        "x": (2,), "w": (3, 2), "b": (3,), "y": (3,), "yhat": (3,), "u": (3,), "z": (3,),
        "W1": (4, 2), "b1": (4,), "W2": (3, 4), "b2": (3,), "t": (5,), "X": (5, 2), "v": (2,),
        "W": (4, 2), "c": (4,), "m": (3, 3), "a": (3,), "h": (4,), "eta": (),
        "loss_{,}[w]": (3, 2), "yhat_{,}[w]": (3, 3, 2),
    }
    return {name: rng.normal(size=shape) for name, shape in shapes.items()}


FUZZ_ARRAYS = _fuzz_arrays()

VALID_PROGRAMS = [
    "yhat_i = sigma(w_ij x_j + b_i)",
    "loss = (yhat_j - y_j)(yhat_j - y_j)",
    "h_i = relu(W1_ij x_j + b1_i)   # hidden layer\nyhat_k = W2_ki h_i + b2_k\nloss = (yhat_k - y_k)(yhat_k - y_k)",
    "p_i = exp(z_i) / sum_j(exp(z_j))",
    "C = mean_n((y_n - u_n)(y_n - u_n))",
    "L = mean_n(log(1 + exp(-t_n X_nj v_j)))",
    "h_ni = σ_i(W_jk X_nk)",
    "tr = m_ii",
    "y_i = δ_ij x_j",
    "g_ij = δ_(ij)(kl) m_kl",
    "w_new_gh = w_gh - eta loss_{,(gh)}[w]",
    "s = sum_i(x_i^2) / 2 + 1e-3",
    "# a comment line\nz_i = tanh(a_i) * 0.5 - b_i ** 2\nq = Σ_i(z_i)",
    "out_ni = softplus(W_ij X_nj + c_i)",
    "d_i = yhat_{i,(mn)}[w] w_mn",
    "G_gh = 2 (yhat_i - y_i) sigma'(w_ik x_k + b_i) δ_im x_n δ_(mn)(gh)",
    "w_ij x_j + b_i",
    "r_i = max(0, w_ij x_j) - 1/2 abs(b_i) + sqrt(exp(u_i))",
]

POOL = list("_{}()[],^*/+-=#'σδΣ 0123ijk\n") + [
    "ŷ", ";", ".", "e", "\t", "$", "\u0302", "μ", "sum_", "mean_n(", "exp(", "δ_", "**", ",(", "[w]", "_{,", "'(",
]


@st.composite
def mutants(draw):
    text = draw(st.sampled_from(VALID_PROGRAMS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "swap", "truncate", "repeat"]))
        k = draw(st.integers(0, len(text)))
        if op == "delete":
            n = draw(st.integers(1, 3))
            text = text[:k] + text[k + n:]
        elif op == "insert":
            text = text[:k] + draw(st.sampled_from(POOL)) + text[k:]
        elif op == "replace":
            text = text[:k] + draw(st.sampled_from(POOL)) + text[k + 1:]
        elif op == "swap":
            tokens = re.findall(r"\w+|\s+|.", text)
            if len(tokens) > 1:
                i = draw(st.integers(0, len(tokens) - 1))
                j = draw(st.integers(0, len(tokens) - 1))
                tokens[i], tokens[j] = tokens[j], tokens[i]
                text = "".join(tokens)
        elif op == "truncate":
            text = text[:k]
        else:  # repeat a slice, nesting what it holds
            n = draw(st.integers(1, 6))
            text = text[:k] + text[k:k + n] * draw(st.integers(2, 4)) + text[k + n:]
    return text


@pytest.mark.parametrize("text", VALID_PROGRAMS)
def test_fuzz_seeds_are_valid(text):
    tree = ic.parse(text)
    assert str(tree) and tree.latex() and tree.einsum() is not None
    value = ic.evaluate(text, FUZZ_ARRAYS)
    np.testing.assert_allclose(value, ic.evaluate_loops(text, FUZZ_ARRAYS), rtol=1e-10, atol=1e-12)


@sample(1200, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_fuzz_mutated_programs_raise_only_index_calc_errors(text):
    exercise(text, FUZZ_ARRAYS)


@sample(400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(POOL + list("xwbmyhat")), max_size=30).map("".join))
def test_fuzz_random_text_raises_only_index_calc_errors(text):
    exercise(text, FUZZ_ARRAYS)


# ---------------------------------------------------------------- issue 9: a hardened surface
# One test per family: every member of the family, not only the example.

from indexcalc import cli  # noqa: E402
from indexcalc.cli import formula  # noqa: E402
from indexcalc.notation import MAX_NESTING  # noqa: E402


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run `indexcalc ARGV` in-process: (exit status, stdout, stderr); never a traceback."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code != 0:
        assert err.startswith("indexcalc: "), err
    return code, out, err


# --- tokenizer: a character is read as what it looks like, or refused saying what to write

LOOK_ALIKES = [
    ("²", "x^2"), ("³", "x^3"), ("ⁱ", "x^i"), ("₁", "x1"), ("ₐ", "x_a"), ("３", "'3'"), ("ｘ", "'x'"),
    ("٣", "0-9"), ("१", "0-9"), ("½", "0-9"), ("\u200b", "invisible"), ("\ufeff", "invisible"),
    ("ᵀ", "transpose"), ("⊤", "transpose"),
]


@pytest.mark.parametrize("char, advice", LOOK_ALIKES, ids=[unicodedata.name(c) for c, _ in LOOK_ALIKES])
@pytest.mark.parametrize("template", ["y = {c}", "y = x{c}", "y_i = x_i{c} + 1", "y = 2{c}", "loss{c} = 1"])
def test_characters_that_look_like_the_notation_are_refused(template, char, advice):
    text = template.format(c=char)
    err = parse_error(text)
    assert repr(char) in str(err) and advice in str(err)
    assert_points_at(err, text, text.index(char))


def test_characters_inside_braces_and_brackets_are_refused():
    for text in ("y_i = w_{i²} x_i", "y_i = w_{iⁱ} x_i", "y_i = w_{i٣} x_i", "d = loss_{,g²}[w]"):
        assert "cannot read" in str(parse_error(text))
    assert "must list tensor names" in str(parse_error("d_g = loss_{,g}[w²]"))


def test_what_other_scripts_write_is_read():
    # letters of any script, a no-break space as a blank, ℓ (a layer) and ϵ as names
    assert ic.parse("y = x\u00a0+ 1") == ic.parse("y = x + 1")
    assert ic.parse("名_i = ℓ_ij x_j + ϵ").lhs.name == "名"
    assert ic.parse("h_i = w_iμ x_μ").rhs == ic.parse("h_i = w_iν x_ν").rhs.__class__(
        ic.parse("h_i = w_iμ x_μ").rhs.factors)


@pytest.mark.parametrize("size", ["i=²", "i=３", "i=٣", "i=", "=3", "i=0", "i=-1", "i=3.5", "ii=3", "²=3", "i=3x", "i=9^999"])
def test_cli_size_values_are_refused_in_one_line(capsys, size):
    code, _, err = run_cli(capsys, "eval", "y_i = x_i", "--size", size)
    assert code == 1 and "--size" in err and len(err.strip().splitlines()) == 1


# --- depth: MAX_NESTING levels are read (and printed, checked, evaluated); one more is refused

NESTINGS = {  # the template, what opens a level, what closes it, where in the opener the caret goes
    "parentheses": ("y_i = {open}x_i + 1{close}", "(", ")", 0),
    "functions": ("y_i = {open}x_i{close}", "exp(", ")", 0),
    "relabellings": ("y_i = {open}x_i{close}", "σ_i(", ")", 0),
    "max": ("y_i = {open}x_i{close}", "max(0, ", ")", 0),
    "quotients": ("y = {open}x{close}", "x/(", ")", 2),
    "powers": ("y_i = x_i{open}", "^1", "", 0),
    "mixed": ("y_i = {open}x_i{close}", "(1 + exp(", "))", 0),
}


@pytest.mark.parametrize("name", NESTINGS)
def test_nesting_up_to_the_limit_works_and_beyond_is_refused_with_a_caret(name):
    template, opener, closer, caret_at = NESTINGS[name]
    levels = opener.count("(") + opener.count("^")
    deepest = template.format(open=opener * (MAX_NESTING // levels), close=closer * (MAX_NESTING // levels))
    tree = guarded(ic.parse, deepest)
    assert isinstance(tree, ic.Equation), tree
    for printer in (str, ic.Expr.pretty, ic.Expr.latex, ic.Expr.einsum):
        assert isinstance(guarded(printer, tree), str)
    assert ic.parse(str(tree)) == tree
    guarded(ic.evaluate, tree, {"x": np.full(2, 0.5) if "_i" in template else 0.5})
    n = MAX_NESTING // levels + 1
    too_deep = template.format(open=opener * n, close=closer * n)
    err = parse_error(too_deep)
    assert f"nests more than {MAX_NESTING} levels" in str(err)
    assert_points_at(err, too_deep, len(template.split("{open}")[0]) + (n - 1) * len(opener) + caret_at)


def test_signs_do_not_nest():
    assert ic.parse("y = " + "-" * 5000 + "x") == ic.parse("y = --x")
    assert ic.parse("y = " + "-" * 5001 + "x") == ic.parse("y = -x")
    assert ic.parse("y = 2 * " + "-" * 5001 + "x") == ic.parse("y = 2 * -x")
    assert ic.parse("y = x^" + "-" * 5001 + "2") == ic.parse("y = x^-2")


def test_deep_input_from_a_deep_caller_is_still_a_parse_error():
    """Even where the caller has used most of the stack, the parser answers with a
    ParseError, never a RecursionError."""
    text = "y_i = " + "exp(" * MAX_NESTING + "x_i" + ")" * MAX_NESTING

    def at_depth(n):
        return at_depth(n - 1) if n else ic.parse(text)

    for used in (600, 800, 900):
        try:
            at_depth(used)
        except ic.ParseError as err:
            assert "nested too deeply" in str(err)


def test_a_path_that_names_no_file_is_said_so(capsys, tmp_path):
    for path, said in ((tmp_path / "nothere.ic", "is not a file"), (tmp_path, "is a folder")):
        code, _, err = run_cli(capsys, "show", str(path))
        assert code == 1 and said in err
    (tmp_path / "bom.ic").write_bytes("\ufeffy_i = x_i\n".encode())  # as Notepad saves it
    assert run_cli(capsys, "show", str(tmp_path / "bom.ic"))[0] == 0


def test_cli_show_of_deep_input_is_one_message(capsys):
    code, _, err = run_cli(capsys, "show", "y = " + "(" * 3000 + "x" + ")" * 3000)
    assert code == 1 and "nests more than" in err


# --- show and eval: what the rules refuse is refused, before anything is printed

def test_show_reports_the_index_rules(capsys):
    code, out, err = run_cli(capsys, "show", "y_i = w_ij x_j + b_k")
    assert code == 1 and out == ""
    assert "b_k has {k}" in err
    assert err.rstrip().splitlines()[-1].index("^") == err.splitlines()[-2].index("b_k")


@pytest.mark.parametrize("text", ["y_i = a * b / c", "y_i = 1", "y_ij = x_i", "y_i = x_i + b_k"])
def test_eval_of_a_formula_the_rules_refuse(capsys, text):
    code, _, err = run_cli(capsys, "eval", text, "--size", "i=3", "j=2")
    assert code == 1 and "indices" in err and "KeyError" not in err


def test_random_arrays_name_what_has_no_size():
    tree = ic.parse("y_i = 1", check=False)  # refused by the rules, still not a KeyError here
    with pytest.raises(ic.IndexCalcError, match="size for index i of y_i"):
        formula.random_arrays(tree, {})
    with pytest.raises(ic.IndexCalcError, match=r"size for index j of w_ij .*--size j=3"):
        formula.random_arrays(ic.parse("y_i = w_ij x_j"), {"i": 2})


def test_random_arrays_take_shapes_from_earlier_lines_ties_and_given_arrays():
    program = ic.parse("h_k = W_kj x_j\ny_i = δ_ik h_k + v_i\nz = sum_i(y_i)")
    arrays = formula.random_arrays(program, {"k": 3, "j": 2}, given={"x": np.ones(2)})
    assert set(arrays) == {"W", "v"}  # x given, h and y computed
    assert arrays["W"].shape == (3, 2) and arrays["v"].shape == (3,)  # i sized through δ_ik
    assert np.isfinite(ic.evaluate(program, {**arrays, "x": np.ones(2)}))


def test_random_arrays_look_at_each_equation_three_times_whatever_its_length(monkeypatch):
    calls = []
    real = formula.infer_sizes
    monkeypatch.setattr(formula, "infer_sizes", lambda *a, **k: calls.append(1) or real(*a, **k))
    text = "y_i = " + " + ".join(f"w{k}_ij x{k}_j" for k in range(500))
    arrays = formula.random_arrays(ic.parse(text), {"i": 3, "j": 2})
    assert len(arrays) == 1000 and len(calls) == 3


@pytest.mark.parametrize(
    "text, sizes, named",
    [("y_i = x_i", ["i=10^11"], "x_i"), ("y_i = w_ij x_j", ["i=100000", "j=100000"], "w_ij"),
     ("y_ij = x_i x_j", ["i=1e5", "j=1e5"], "y_ij"), ("y_i = x_i", ["i=10^15"], "x_i"),
     ("y = sum_abcdefghkl(x_abcdefghkl)", [f"{c}=10^15" for c in "abcdefghkl"], "x_abcdefghkl")],
)
def test_a_huge_request_fails_at_once_naming_the_array(capsys, text, sizes, named):
    """At once: before any array of the request is made (NumPy reports its allocations to
    tracemalloc), not after a swap-bound attempt; the message names the array."""
    tracemalloc.start()
    try:
        code, _, err = run_cli(capsys, "eval", text, "--size", *sizes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"
    assert code == 1 and f"the array of {named} would have shape" in err and ("GB" in err or "10^150" in err)


def test_eval_sizes_must_agree_with_the_arrays_they_make(capsys):
    code, _, err = run_cli(capsys, "eval", "y_ij = x_i x_j", "--size", "i=3", "j=2")
    assert code == 1 and "index j has size 2" in err and "size 3 in x_j" in err
    assert run_cli(capsys, "eval", "y_ij = x_i x_j", "--size", "i=3", "j=3")[0] == 0


def test_eval_can_sample_entries_or_skip_the_loops(capsys):
    code, out, _ = run_cli(capsys, "eval", "y_ij = x_i z_j", "--size", "i=30", "j=20", "--entries", "7", "--seed", "1")
    assert code == 0 and "explicit loops at 7 random entries of 600 (seed 1) agree: yes" in out
    code, out, _ = run_cli(capsys, "eval", "y_ij = x_i z_j", "--size", "i=30", "j=20", "--no-loops")
    assert code == 0 and "explicit loops: not run" in out and "agree" not in out


def test_eval_counts_values_that_are_not_finite_by_both_routes(capsys, tmp_path):
    """A nan the loops give too is agreement, said with its count (it was `agree: NO
    (largest difference nan)`); a nan on one side only is still a disagreement."""
    from indexcalc.cli.formula import _agreement

    np.savez(tmp_path / "x.npz", x=np.array([-1.0, 0.0, 2.0, np.inf]))
    code, out, _ = run_cli(capsys, "eval", "y_i = log(x_i)", "--npz", str(tmp_path / "x.npz"))
    assert code == 0 and "agree: yes" in out and "not finite at 3 of 4 entries" in out
    assert "largest difference 0.0e+00" in out
    one_side = _agreement("loops agree", np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert "agree: NO" in one_side and "not finite at 1 of 2" in one_side
    apart = _agreement("loops agree", np.array([1.0, np.inf]), np.array([1.5, np.inf]))
    assert "agree: NO (largest difference 5.0e-01; not finite at 1 of 2" in apart


def test_eval_sizes_must_be_used_and_given_once(capsys):
    code, _, err = run_cli(capsys, "eval", "y_i = x_i", "--size", "i=3", "k=3")
    assert code == 1 and "index k, which the formula does not use" in err
    code, _, err = run_cli(capsys, "eval", "y_i = x_i", "--size", "i=3", "i=4")
    assert code == 1 and "twice" in err


def test_eval_reads_given_arrays_and_makes_the_rest(capsys, tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, w=np.eye(2))
    code, out, _ = run_cli(capsys, "eval", "y_i = w_ij x_j", "--npz", str(path), "--size", "j=2", "--seed", "4")
    x = np.random.default_rng(4).normal(size=2)
    assert code == 0 and "explicit loops agree: yes" in out
    assert f"{x[0]:.6f}"[:6] in out
    np.save(tmp_path / "one.npy", np.eye(2))
    code, _, err = run_cli(capsys, "eval", "y_i = w_ij x_j", "--npz", str(tmp_path / "one.npy"), "--size", "j=2")
    assert code == 1 and ".npy" in err


# --- misc: a closed pipe, Ctrl-C, a bug, a misspelt function, a transpose

def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    source = tmp_path / "long.ic"
    source.write_text("\n".join(f"y{k}_i = w_ij x_j + b_i" for k in range(3000)))
    proc = subprocess.Popen([sys.executable, "-m", "indexcalc", "show", str(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == cli.EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "Error" not in err


def test_a_terminal_that_cannot_show_unicode(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "indexcalc", "show", "y = σ(x)"], capture_output=True,
                         env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=60)
    assert run.returncode == 0 and b"\\u03c3" in run.stdout and not run.stderr


def test_arguments_in_utf8_under_another_locale_are_read_as_typed(capsys):
    # what Python hands over for "σ" typed under LC_ALL=C: its two UTF-8 bytes as surrogates
    code, out, _ = run_cli(capsys, "show", "y = \udccf\udc83(x)")
    assert code == 0 and "y = sigma(x)" in out
    code, _, err = run_cli(capsys, "show", "y = \udcff")
    assert code == 1 and "not UTF-8" in err


def test_ctrl_c_and_a_bug_are_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(formula, "_command_show", interrupted)
    assert run_cli(capsys, "show", "x") == (130, "", "indexcalc: interrupted\n")

    def broken(args):
        raise ValueError("a bug")

    monkeypatch.setattr(formula, "_command_show", broken)
    code, _, err = run_cli(capsys, "show", "x")
    assert code == cli.EXIT_BUG and "internal error: ValueError: a bug" in err and "please report" in err


@pytest.mark.parametrize(
    "text, name, suggestion",
    [("y = rleu(x)", "rleu", "relu"), ("y = tnah(x)", "tnah", "tanh"), ("y = sigmod(x)", "sigmod", "sigmoid"),
     ("y = summ_j(x_j)", "summ", "sum"), ("y = maen_n(x_n)", "maen", "mean"), ("y = sigmoid''(x)", "sigmoid''", "sigmoid'")],
)
def test_a_misspelt_function_gets_a_suggestion(text, name, suggestion):
    err = parse_error(text)
    assert f"did you mean {suggestion}" in str(err) or f"or {suggestion}?" in str(err)
    assert_points_at(err, text, text.index(name[:3]))


def test_an_unknown_name_with_nothing_close_gets_no_suggestion():
    assert "did you mean" not in str(parse_error("y = eta(x)"))


@pytest.mark.parametrize("text", ["y_i = x_i^T", "y_j = w_ij^T x_i", "y = x_i^T x_i", "y_i = x_i**T"])
def test_a_transpose_is_explained_not_read_as_a_power(text):
    err = parse_error(text)
    assert "no transpose" in str(err) and "w_ji" in str(err)
    assert_points_at(err, text, text.index("^") if "^" in text else text.index("**"))


def test_a_scalar_named_t_is_still_a_power_in_parentheses():
    tree = ic.parse("y_i = x_i^(T)")
    assert tree.rhs == ic.Power(ic.Tensor("x", ("i",)), ic.Tensor("T"))
    assert str(tree) == "y_i = x_i^(T)" and tree.pretty() == "y_i = x_i^(T)"
    assert "transpose" in str(parse_error("y_i = x_i'"))


# --- surface: --version, several --wrt, demo

def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"indexcalc {ic.__version__}"
    from importlib.metadata import version

    assert version("indexcalc") == ic.__version__  # pyproject.toml and the package agree


def test_several_wrt_differentiate_again(capsys):
    program = "yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)"
    code, out, _ = run_cli(capsys, "diff", program, "--wrt", "w_gh", "--wrt", "b_k")
    assert code == 0
    hessian = ic.simplify(ic.diff(ic.diff(program, "w_gh"), "b_k"))
    expected = [str(eq) for eq in hessian.equations if eq.lhs.derivs]
    assert out.strip().splitlines() == expected
    assert out.strip().splitlines()[-1].startswith("loss_{,(gh)k}[w,b] = ")


def test_an_inlined_hessian_is_one_formula(capsys):
    program = "yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)"
    code, out, _ = run_cli(capsys, "diff", program, "--wrt", "w_gh", "--wrt", "w_kl", "--inline")
    assert code == 0 and len(out.strip().splitlines()) == 1 and out.startswith("loss_{,(gh)(kl)}[w] = ")
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(3, 2)), "x": rng.normal(size=2), "b": rng.normal(size=3), "y": rng.normal(size=3)}
    hessian = ic.evaluate(ic.diff(ic.diff(program, "w_gh"), "w_kl"), arrays)
    arrays["yhat"] = ic.evaluate(program.splitlines()[0], arrays)
    np.testing.assert_allclose(ic.evaluate(out.strip(), arrays), hessian, atol=1e-12)


def test_demo_shows_the_derivative(capsys):
    code, out, _ = run_cli(capsys, "demo")
    assert code == 0 and "explicit loops agree: yes" in out
    assert "loss_{,(gh)}[w] = 2 (ŷ_j - y_j) ŷ_{j,(gh)}[w]" in out
    assert "loss_{,(gh)}[w] = 2 (ŷ_g - y_g) σ'(w_gk x_k + b_g) x_h" in out


@pytest.mark.parametrize("text, where", [
    ("y = " + "(" * 3000 + "x" + ")" * 3000, 105),
    ("y = " + "a + " * 50 + "rleu(x) + " + "b + " * 50 + "c", 204),
    ("y = " + "a + " * 50 + "rleu(x)", 204),
])
def test_a_long_line_is_quoted_as_a_window_around_the_caret(text, where):
    """A 3,000-deep formula's error quoted all 6,000 characters: now a window of the line
    around the caret, cut with "…", still pointing at the right character."""
    with pytest.raises(ic.IndexCalcError) as info:
        ic.parse(text)
    assert len(str(info.value).splitlines()[-2]) < 200, str(info.value)
    assert_points_at(info.value, text, (where - 1, where + 1))


@pytest.mark.parametrize("text, where", [
    ("h_i = relu(W1_ij x_j ŷ b1_i)\nyhat_k = W2_ki h_i + b2_k\nloss = yhat_k yhat_k", 21),
    ("a = b + 1\nb = c", 4),
    ("g_k = loss_{,k}[w]\nloss = w_i w_i", 6),
    ("y_i = x_i\nz = sum_i(y_i q)\nq = 2", 24),
])
def test_a_name_read_before_the_line_that_defines_it_is_refused_by_every_route(text, where):
    """The fuzz soak's escape: evaluate asked for an array `yhat`, compile failed inside its
    plan (KeyError). Either reading (an input of that name, the later value) is a guess."""
    for route in (ic.parse, ic.evaluate, ic.compile, lambda t: ic.diff(t, "w"), ic.simplify):
        with pytest.raises(ic.IndexNotationError, match="before line") as info:
            route(text) if route is not ic.evaluate else route(text, {})
        assert_points_at(info.value, text, where)


def test_ctrl_c_while_the_package_loads_is_one_line_and_status_130(monkeypatch, capsys):
    """The command's entry point sits outside the package: Ctrl-C during the third of a
    second NumPy takes to load was a traceback."""
    import builtins

    import indexcalc_launcher

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "indexcalc.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert indexcalc_launcher.main() == 130
    assert capsys.readouterr().err == "indexcalc: interrupted\n"
