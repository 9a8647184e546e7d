"""The notes' Jacobian of an elementwise function, `σ_{i,m}(u)` = σ'(u_i) δ_im (issue 10):
read as input for every function whose derivative is written with calls of its argument,
and written by the "notes" printing style wherever it reads back to the same product.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

import indexcalc as ic
from carets import assert_points_at, assert_parse_refuses
from indexcalc import functions
from indexcalc.cli import main as cli_main
from indexcalc.expr import Call, Delta, Product
from indexcalc.printing import plain
from strategies import route_cases, sample


def derivative_or_none(source, wrt):
    """diff(source, wrt), or None where the generator drew a wrt the target does not
    depend on (diff refuses that, as a likely typo)."""
    try:
        return ic.diff(source, wrt)
    except ic.DiffError as err:
        if "does not depend" in str(err):
            return None
        raise

# log' is 1/u, no call to relabel; relu' and abs' are constant where defined
FUNCTIONS = [f.name for f in functions.FUNCTIONS if f.name not in ("log", "relu'", "abs'")]
RNG = np.random.default_rng(7)
U = {"u": RNG.uniform(0.2, 2.0, size=4), "w": RNG.normal(size=(4, 3)), "x": RNG.normal(size=3)}


def numeric_derivative(name: str, u: np.ndarray) -> np.ndarray:
    f, h = functions.lookup(name).compute, 1e-6
    return (f(u + h) - f(u - h)) / (2 * h)


# ---------------------------------------------------------------- reading


def test_it_reads_as_the_primed_call_relabelled_times_delta():
    eq = ic.parse("J_im = σ_{i,m}(w_jk x_k)")
    assert eq.rhs == Product((Call("sigma'", ic.parse("w_jk x_k", check=False), "i"), Delta(("i",), ("m",))))


def test_in_a_product_its_two_factors_join_the_product():
    node = ic.parse("g_m = 2 (a_i - y_i) σ_{i,m}(u_i)")
    assert [type(f).__name__ for f in node.rhs.factors] == ["Number", "Sum", "Call", "Delta"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_s_jacobian_is_its_derivative_on_the_diagonal(name):
    spelled = functions.lookup(name).name
    J = ic.evaluate(f"J_im = {spelled}_{{i,m}}(u_j)", U)
    assert J.shape == (4, 4)
    np.testing.assert_allclose(J, np.diag(numeric_derivative(name, U["u"])), rtol=1e-5, atol=1e-6)


def test_with_a_relabelled_argument():
    J = ic.evaluate("J_im = tanh_{i,m}(w_jk x_k)", U)
    np.testing.assert_allclose(J, np.diag(1 - np.tanh(U["w"] @ U["x"]) ** 2), rtol=1e-12)


def test_it_contracts_as_the_chain_rule_does():
    chain = ic.evaluate("g_m = (u_i - 1) σ_{i,m}(u_i)", U)
    s = 1 / (1 + np.exp(-U["u"]))
    np.testing.assert_allclose(chain, (U["u"] - 1) * s * (1 - s), rtol=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "σ_{i,m}(u_j)",  # a bare Jacobian: the product would sum i with its own δ
        "y_m = σ_{i,m}(u_j)",
        "y_im = σ_{i,m}(u_j) + σ_{k,m}(u_j)",
    ],
)
def test_where_the_product_would_sum_i_it_is_refused(text):
    with pytest.raises(ic.ParseError) as info:
        ic.parse(text)
    assert "would be summed" in str(info.value)
    start = text.index("σ_{k") if "σ_{k" in text else text.index("σ")
    assert_points_at(info.value, text, start)


@pytest.mark.parametrize(
    "text, fragment, at",
    [
        ("J_im = log_{i,m}(u_j)", "write the product out", "log"),
        ("J_i = σ_{i,i}(u_j)", "pairs two different indices", "σ"),
        ("J_im = relu'_{i,m}(u_j)", "is 0 wherever it is defined", "relu"),
        ("J_imn = σ_{i,mn}(u_j)", "a subscripted function takes one index", "σ"),
        ("J_imn = σ_{i,(mn)}(u_j)", "a subscripted function takes one index", "σ"),
        ("J_m = σ_{,m}(u_j)", "a subscripted function takes one index", "σ"),
    ],
)
def test_bad_jacobians(text, fragment, at):
    assert_parse_refuses(text, fragment, text.index(at))


# ---------------------------------------------------------------- the notes style


def test_the_simplified_layer_derivative_as_the_notes_write_it():
    derivative = ic.simplify(ic.diff("yhat_i = σ(w_ij x_j + b_i)", "w_gh"))
    assert str(derivative) == "yhat_{i,(gh)}[w] = sigma'(w_ik x_k + b_i) x_h delta_ig"  # unchanged by default
    assert derivative.pretty(style="notes") == "ŷ_{i,(gh)}[w] = σ_{i,g}(w_ik x_k + b_i) x_h"
    assert plain(derivative, style="notes") == "yhat_{i,(gh)}[w] = sigma_{i,g}(w_ik x_k + b_i) x_h"
    assert derivative.latex(style="notes") == (
        r"\hat{y}_{i,(gh)}\,[w] = \sigma_{i,g}\left(w_{ik} \, x_{k} + b_{i}\right) \, x_{h}"
    )
    arrays = {"w": RNG.normal(size=(3, 4)), "x": RNG.normal(size=4), "b": RNG.normal(size=3)}
    np.testing.assert_allclose(
        ic.evaluate(ic.parse(derivative.pretty(style="notes")), arrays), ic.evaluate(derivative, arrays), rtol=1e-12
    )


def test_a_named_layer_in_the_notes_style():
    derivative = ic.simplify(ic.diff("h_{batch out} = σ(W_{out in} x_{batch in})", "W_{g h}"))
    assert derivative.pretty(style="notes") == "h_{batch out,(gh)}[W] = σ_{out,g}(W_{out k} x_{batch k}) x_{batch h}"


@pytest.mark.parametrize(
    "text",
    [
        "y_m = sigma'(u_i) delta_im",  # i summed with its δ alone: that is σ'(u_m), not a Jacobian
        "y_imk = sigma'(u_k) delta_im",  # the call carries no i
        "y_im = exp(u_i) delta_im",  # not a derivative entry
        "y_m = sigma'(u_ij) delta_im b_ij",  # two indices of the argument summed: which is i?
    ],
)
def test_the_notes_style_keeps_the_delta_where_the_shorthand_would_mean_something_else(text):
    node = ic.parse(text)
    assert node.pretty(style="notes") == node.pretty()


def test_a_fixed_index_of_the_argument_is_i_without_relabelling():
    node = ic.parse("y_ijm = sigma'(u_ij) delta_im")
    assert node.pretty(style="notes") == "y_ijm = σ_{i,m}(u_ij)"
    arrays = {"u": RNG.normal(size=(3, 2))}
    np.testing.assert_allclose(ic.evaluate(ic.parse(node.pretty(style="notes")), arrays), ic.evaluate(node, arrays))


def test_an_unknown_style_is_an_error():
    with pytest.raises(ic.IndexCalcError, match="unknown printing style 'paper'"):
        ic.parse("y_i = x_i").pretty(style="paper")


@sample(40)
@given(route_cases())
def test_derivatives_printed_in_the_notes_style_mean_the_same(case):
    """Raw and simplified derivatives of the route property's programs, printed in the
    notes style (plain and Unicode), parse back to the same numbers."""
    if case.wrt is None:
        return
    arrays = case.arrays()
    raw = derivative_or_none(case.text, case.wrt)
    assume(raw is not None)
    want = ic.evaluate(raw, arrays)
    for derivative in (raw, ic.simplify(raw)):
        for text in (plain(derivative, style="notes"), derivative.pretty(style="notes")):
            np.testing.assert_allclose(ic.evaluate(ic.parse(text), arrays), want, rtol=1e-8, atol=1e-10, err_msg=text)


LAYER = "h_ni = {f}(W_ij x_nj + b_i)\nloss = mean_n(sum_i((h_ni - y_ni)(h_ni - y_ni)))"


@pytest.mark.parametrize("f", ["σ", "tanh", "relu", "abs"])
@pytest.mark.parametrize("wrt", ["W_gh", "b_g", "x_gh"])
@pytest.mark.parametrize("inline", [False, True])
def test_layer_derivatives_in_the_notes_style(f, wrt, inline):
    """Every line of a layer's derivative (raw, with its δs, and simplified), printed in
    the notes style, evaluates as before; the simplified one shows the shorthand."""
    rng = np.random.default_rng(3)
    arrays = {"W": rng.normal(size=(3, 4)), "x": rng.normal(size=(5, 4)), "b": rng.normal(size=3),
              "y": rng.normal(size=(5, 3))}
    raw = ic.diff(LAYER.format(f=f), wrt, inline=inline)
    for derivative in (raw, ic.simplify(raw)):
        lines = derivative.equations if hasattr(derivative, "equations") else (derivative,)
        for line in lines:
            text = line.pretty(style="notes")
            program = ic.Program(tuple(lines[: lines.index(line)]) + (line,)) if lines.index(line) else line
            reread = ic.parse("\n".join([plain(e) for e in lines[: lines.index(line)]] + [text]))
            np.testing.assert_allclose(ic.evaluate(reread, arrays), ic.evaluate(program, arrays), rtol=1e-10,
                                       atol=1e-12, err_msg=text)
    if not inline:  # what simplify leaves, σ'(u_ni) x_nh δ_ig, is the notes' σ_{i,g}(u) x_nh
        assert f"{f}_{{" in ic.simplify(raw).pretty(style="notes")


def test_the_command_line_style_option(capsys):
    assert cli_main(["diff", "yhat_i = σ(w_ij x_j + b_i)", "--wrt", "w_gh", "--unicode", "--style", "notes"]) == 0
    assert capsys.readouterr().out.strip() == "ŷ_{i,(gh)}[w] = σ_{i,g}(w_ik x_k + b_i) x_h"
    assert cli_main(["show", "y_i = σ'(u_i) δ_im a_m", "--style", "notes"]) == 0
    assert "σ_{i,m}(u_i) a_m" in capsys.readouterr().out
