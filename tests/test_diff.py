"""Derivatives: every rule of DESIGN.md's "Semantics of the derivative", checked by numbers.

Every derivative `ic.diff` returns is evaluated and compared with central finite
differences of the function it differentiates (each entry of the wrt array perturbed in
turn, float64, eps 1e-6). The simplified derivative must give the same numbers, and the
explicit-loop evaluator must agree with einsum on it. Then the derivative through
programs (chain form, `of=`, `inline=`), second derivatives (Hessians), random
well-formed programs (hypothesis), bad input, and one test per simplify rule.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys

import numpy as np
import pytest
from hypothesis import assume, given, reject
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc.scope import explicit
from indexcalc.program import check_program
from indexcalc.expr import with_children
from indexcalc.expr import Call, Delta, Equation, Power, Product, Program, Reduce, Sum, Tensor
from indexcalc.simplify import RULES, context_at
from strategies import SMOOTH_PROGRAMS, ProgramGenerator, route_cases, sample

RNG = np.random.default_rng(20240607)
EPS = 1e-6
RTOL = 1e-6
ATOL = 1e-6


def rand(*shape):
    return RNG.normal(size=shape)


def positive(*shape):
    return RNG.uniform(0.5, 2.0, size=shape)


def away_from_zero(*shape):
    """Values with |x| in [0.2, 2]: clear of the kinks of relu and abs."""
    return RNG.choice([-1.0, 1.0], size=shape) * RNG.uniform(0.2, 2.0, size=shape)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------
# Finite differences and the standard check


def truncated(source, of=None):
    """The program up to the equation `of` (the whole source if None)."""
    node = ic.parse(source) if isinstance(source, str) else source
    if of is None or not isinstance(node, Program):
        return node
    k = max(n for n, eq in enumerate(node.equations) if of in (eq.lhs.name, eq.lhs.key))
    return Program(node.equations[: k + 1])


def wrt_name(wrt: str) -> str:
    return ic.parse(wrt).name


def finite_difference(source, arrays, name, of=None, eps=EPS) -> np.ndarray:
    """Central differences of `source` (its value: the last equation's, or `of`'s) by
    every entry of the array `name`; axes: the function's, then the array's."""
    node = truncated(source, of)
    base = np.array(arrays[name], dtype=np.float64)
    out = None
    for idx in np.ndindex(base.shape):
        up, down = base.copy(), base.copy()
        up[idx] += eps
        down[idx] -= eps
        f_up = np.asarray(ic.evaluate(node, {**arrays, name: up}), dtype=np.float64)
        f_down = np.asarray(ic.evaluate(node, {**arrays, name: down}), dtype=np.float64)
        column = (f_up - f_down) / (2 * eps)
        if out is None:
            out = np.zeros(column.shape + base.shape)
        out[(Ellipsis,) + idx] = column
    return out


def assert_close(got, expected, what, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def check(source, wrt, arrays, *, of=None, inline=False, loops=True):
    """diff(source, wrt) evaluates to the finite differences, raw and simplified, by
    einsum and (on request) by explicit loops. Returns the derivative."""
    d = ic.diff(source, wrt, of=of, inline=inline)
    expected = finite_difference(source, arrays, wrt_name(wrt), of)
    got = ic.evaluate(d, arrays)
    assert_close(got, expected, f"d/d{wrt} of {source!r}:\n{d}")
    s = ic.simplify(d)
    assert_close(ic.evaluate(s, arrays), expected, f"simplified d/d{wrt} of {source!r}:\n{s}")
    if loops:
        assert_close(ic.evaluate_loops(d, arrays), got, f"loops on {d}", rtol=1e-10, atol=1e-12)
        assert_close(ic.evaluate_loops(s, arrays), got, f"loops on {s}", rtol=1e-10, atol=1e-12)
    return d


# --------------------------------------------------------------------------------------
# One test per derivative rule


def test_tensor_rule_is_a_grouped_delta():
    d = ic.diff("T_mn = w_mn", "w_gh")
    assert d == ic.parse("T_{mn,(gh)}[w] = delta_(mn)(gh)")
    w = rand(2, 3)
    value = check("T_mn = w_mn", "w_gh", {"w": w})
    expected = np.einsum("mg,nh->mngh", np.eye(2), np.eye(3))
    np.testing.assert_array_equal(ic.evaluate(value, {"w": w}), expected)


def test_tensor_rule_for_a_vector_and_a_bare_expression():
    x = rand(4)
    check("y_i = x_i", "x_g", {"x": x})
    d = ic.diff("x_i", "x_g")
    assert isinstance(d, Equation) and d.lhs.derivs and d.lhs.derivs[0].wrt == "x"
    np.testing.assert_array_equal(ic.evaluate(d, {"x": x}), np.eye(4))


def test_sum_rule():
    arrays = {"a": rand(3), "b": rand(3)}
    check("y_i = a_i + b_i + a_i b_i", "a_g", arrays)
    check("y_i = a_i + b_i + a_i b_i", "b_g", arrays)


def test_difference_rule():
    arrays = {"a": rand(3), "b": rand(3)}
    d = check("y_i = a_i - b_i", "b_g", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), -np.eye(3))
    check("y_i = 2 a_i - a_i b_i - b_i", "a_g", arrays)


def test_product_rule_elementwise():
    arrays = {"a": rand(4), "b": rand(4)}
    d = check("y_i = a_i b_i", "a_g", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), np.diag(arrays["b"]))
    check("y_i = a_i a_i b_i", "a_g", arrays)


def test_product_rule_contraction():
    w, x = rand(3, 4), rand(4)
    arrays = {"w": w, "x": x}
    dw = check("y_i = w_ij x_j", "w_gh", arrays)
    np.testing.assert_allclose(ic.evaluate(dw, arrays), np.einsum("ig,h->igh", np.eye(3), x))
    dx = check("y_i = w_ij x_j", "x_g", arrays)
    np.testing.assert_allclose(ic.evaluate(dx, arrays), w)


def test_product_rule_matrix_product():
    arrays = {"a": rand(2, 3), "b": rand(3, 4)}
    check("c_ik = a_ij b_jk", "a_gh", arrays)
    check("c_ik = a_ij b_jk", "b_gh", arrays)
    check("s = a_ij b_jk a_mi b_mk", "a_gh", {"a": rand(3, 3), "b": rand(3, 3)})


def test_quotient_elementwise():
    arrays = {"a": rand(4), "b": positive(4)}
    check("y_i = a_i / b_i", "a_g", arrays)
    d = check("y_i = a_i / b_i", "b_g", arrays)
    a, b = arrays["a"], arrays["b"]
    np.testing.assert_allclose(ic.evaluate(d, arrays), np.diag(-a / b**2))


def test_quotient_of_a_reduction():
    z = rand(5)
    d = check("p = 1 / sum_j(exp(z_j))", "z_g", {"z": z})
    expected = -np.exp(z) / np.sum(np.exp(z)) ** 2
    np.testing.assert_allclose(ic.evaluate(d, {"z": z}), expected)


def test_quotient_of_a_contraction():
    arrays = {"w": rand(2, 3), "v": rand(3), "x": rand(2)}
    check("y_i = x_i / (1 + (w_ij v_j)^2)", "w_gh", arrays)
    check("y_i = x_i / (1 + (w_ij v_j)^2)", "v_g", arrays)
    check("s = x_i w_ij v_j / (2 + sum_k(v_k v_k))", "v_g", arrays)


@pytest.mark.parametrize("exponent", ["3", "-2", "2", "-1", "0.5", "1.5", "-0.5"])
def test_power_rule_numeric_exponent(exponent):
    x = positive(4)
    d = check(f"y_i = x_i^{exponent}", "x_g", {"x": x})
    p = float(exponent)
    np.testing.assert_allclose(ic.evaluate(d, {"x": x}), np.diag(p * x ** (p - 1)), rtol=1e-12)


def test_power_rule_integer_exponent_on_negative_values():
    x = away_from_zero(4)
    check("y_i = x_i^3", "x_g", {"x": x})
    check("y_i = x_i^-2", "x_g", {"x": x})
    check("y_i = (w_ij x_j)^3", "w_gh", {"w": rand(2, 4), "x": x})


@pytest.mark.parametrize("text", ["y_i = x_i^0 + x_i", "y_i = x_i^2", "y_i = x_i^1 x_i"])
def test_power_rule_at_zero_has_no_zero_times_infinity(text):
    """A literal exponent's derivative leaves no x^-1 where its coefficient is 0: at x = 0
    the first, second and third derivatives are numbers, the same by every route."""
    x = {"x": np.zeros(3)}
    d = text + "\nL = sum_i(y_i^3)"
    for letter in "abc":
        d = ic.diff(d, f"x_{letter}")
        value = ic.evaluate(d, x)
        assert np.all(np.isfinite(value)), (str(d), value)
        np.testing.assert_allclose(value, ic.evaluate(ic.simplify(d), x))
        np.testing.assert_allclose(value, ic.compile(d)(x)[0])


def test_power_rule_variable_exponent():
    arrays = {"a": 1.7, "c": 0.8}
    da = check("y = a^c", "a", arrays)
    dc = check("y = a^c", "c", arrays)
    np.testing.assert_allclose(ic.evaluate(da, arrays), 0.8 * 1.7 ** (0.8 - 1))
    np.testing.assert_allclose(ic.evaluate(dc, arrays), 1.7**0.8 * np.log(1.7))


def test_power_rule_exponent_depends_on_a_tensor():
    arrays = {"x": positive(3), "c": 1.3, "v": rand(3)}
    check("y_i = x_i^c", "c", arrays)
    check("y_i = x_i^c", "x_g", arrays)
    check("y_i = x_i^(v_j v_j)", "v_g", arrays)


FUNCTIONS = {
    # name: (numpy f, f', domain)
    "sigma": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)), rand),
    "sigmoid": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)), rand),
    "σ": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)), rand),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2, rand),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float), away_from_zero),
    "exp": (np.exp, np.exp, rand),
    "log": (np.log, lambda x: 1 / x, positive),
    "sqrt": (np.sqrt, lambda x: 0.5 / np.sqrt(x), positive),
    "sin": (np.sin, np.cos, rand),
    "cos": (np.cos, lambda x: -np.sin(x), rand),
    "softplus": (lambda x: np.logaddexp(0, x), sigmoid, rand),
    "abs": (np.abs, np.sign, away_from_zero),
}


@pytest.mark.parametrize("func", sorted(FUNCTIONS))
def test_elementwise_chain_rule(func):
    _, prime, domain = FUNCTIONS[func]
    x = domain(5)
    d = check(f"y_i = {func}(x_i)", "x_g", {"x": x})
    np.testing.assert_allclose(ic.evaluate(d, {"x": x}), np.diag(prime(x)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("func", sorted(FUNCTIONS))
def test_elementwise_chain_rule_through_a_contraction(func):
    _, _, domain = FUNCTIONS[func]
    w = rand(3, 4)
    x = rand(4)
    u = w @ x
    if domain is positive:
        w[:, 0] += (1.0 - u) / x[0]  # move each u_i to 1
    elif domain is away_from_zero:
        w[:, 0] += (np.where(u >= 0, 0.5, -0.5) - u) / x[0]  # |u_i| = 0.5
    check(f"y_i = {func}(w_ij x_j)", "w_gh", {"w": w, "x": x})
    check(f"y_i = {func}(w_ij x_j)", "x_g", {"w": w, "x": x})


@pytest.mark.parametrize("func", sorted(FUNCTIONS))
def test_second_derivative_of_each_function(func):
    """Differentiating the derivative differentiates the primed functions (σ', tanh',
    relu', abs') and the others' derivatives."""
    _, _, domain = FUNCTIONS[func]
    x = domain(4)
    first = ic.diff(f"y_i = {func}(x_i)", "x_g")
    second = ic.diff(first, "x_k")
    expected = finite_difference(first, {"x": x}, "x")
    assert expected.shape == (4, 4, 4)
    assert_close(ic.evaluate(second, {"x": x}), expected, f"second derivative of {func}:\n{second}")
    assert_close(ic.evaluate(ic.simplify(second), {"x": x}), expected, f"simplified second derivative of {func}")


@pytest.mark.parametrize("func", ["sigma'", "sigmoid'", "σ'", "tanh'", "relu'", "abs'"])
def test_primed_functions(func):
    domain = away_from_zero if func in ("relu'", "abs'") else rand
    x = domain(5)
    check(f"y_i = {func}(x_i)", "x_g", {"x": x})
    check(f"y_i = {func}(w_ij x_j)", "w_gh", {"w": rand(2, 5), "x": rand(5) * 0.1 + 0.3})


def test_subscripted_function():
    w, x = rand(3, 4), rand(4)
    arrays = {"w": w, "x": x}
    dw = check("y_i = σ_i(w_jk x_k)", "w_gh", arrays)
    s = sigmoid(w @ x)
    np.testing.assert_allclose(ic.evaluate(dw, arrays), np.einsum("i,ig,h->igh", s * (1 - s), np.eye(3), x))
    check("y_i = σ_i(w_jk x_k)", "x_g", arrays)


def test_subscripted_function_batched():
    arrays = {"W": rand(3, 4), "x": rand(2, 4)}
    check("h_ni = tanh_i(W_jk x_nk)", "W_gh", arrays)
    check("h_ni = σ_i(W_jk x_nk)", "x_gh", arrays)


def test_sum_reduction_passes_through():
    arrays = {"w": rand(3, 4), "x": rand(4)}
    check("r_i = sum_j(exp(w_ij x_j))", "w_gh", arrays)
    check("r_i = Σ_j(exp(w_ij x_j))", "x_g", arrays)
    check("s = sum_ij(w_ij w_ij)", "w_gh", arrays)


def test_mean_reduction_passes_through():
    arrays = {"y": rand(6), "u": rand(6)}
    d = check("C = mean_n((y_n - u_n)(y_n - u_n))", "u_g", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), -2 * (arrays["y"] - arrays["u"]) / 6)
    check("L = mean_n(log(1 + exp(-y_n X_nj w_j)))", "w_g", {"y": rand(5), "X": rand(5, 3), "w": rand(3)})
    check("s = mean_ij(m_ij m_ij)", "m_gh", {"m": rand(2, 3)})


def test_reduction_whose_body_does_not_depend_on_every_reduced_index():
    # the derivative of sum_n(c) by c counts n: the reduction must keep its extent
    arrays = {"x": rand(4), "c": 0.3}
    check("s = sum_n(x_n + c)", "c", arrays)
    check("s = mean_n(x_n + c)", "c", arrays)
    check("s = sum_n(x_n c)", "c", arrays)


def test_deltas_have_derivative_zero():
    arrays = {"x": rand(3)}
    d = check("y_ij = delta_ij + x_i x_j", "x_g", arrays)
    assert Delta(("i",), ("j",)) not in d.rhs.walk()  # the δ term contributes nothing
    assert ic.diff("y_ij = delta_ij + x_i x_j", "x_g") == ic.diff("y_ij = x_i x_j", "x_g")
    d = check("y_i = delta_ij x_j", "x_g", arrays)
    np.testing.assert_array_equal(ic.evaluate(d, arrays), np.eye(3))
    check("y_ij = delta_ij x_i", "x_g", arrays)


def test_numbers_have_derivative_zero():
    x = rand(3)
    d = check("y_i = 2 x_i + 3", "x_g", {"x": x})
    np.testing.assert_allclose(ic.evaluate(d, {"x": x}), 2 * np.eye(3))


def test_scalar_wrt_bare_name():
    arrays = {"b": 0.7, "x": rand(3), "w": rand(3)}
    d = check("y_i = b x_i", "b", arrays)
    assert d.lhs.derivs[-1].wrt == "b" and d.lhs.derivs[-1].indices == ()
    np.testing.assert_allclose(ic.evaluate(d, arrays), arrays["x"])
    check("y = b b w_i x_i + sigma(b)", "b", arrays)
    check("y_i = tanh(w_i b + x_i)", "b", arrays)


def test_indexed_wrt_bare_name_picks_fresh_letters():
    arrays = {"w": rand(3, 2), "x": rand(2)}
    d = check("y_i = w_ij x_j", "w", arrays)
    fresh = d.lhs.derivs[-1].indices
    assert len(fresh) == 2 and not set(fresh) & {"i", "j"}


def test_scalar_expansion():
    arrays = {"x": rand(3), "c": 0.4}
    d = check("y_i = x_i + c", "c", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), np.ones(3))
    check("y_i = sigma(x_i + c)", "c", arrays)
    check("y_i = x_i - c c", "c", arrays)


def test_scalar_expansion_inside_a_product():
    arrays = {"x": rand(3), "c": 0.4}
    d = check("s = (x_i + c)(x_i + c)", "c", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), 2 * np.sum(arrays["x"] + 0.4))
    check("s = exp(x_i + c) x_i", "c", arrays)


def test_softmax_cross_entropy():
    z = rand(5)
    t = np.zeros(5)
    t[2] = 1.0
    arrays = {"z": z, "t": t}
    program = "p_i = exp(z_i) / sum_j(exp(z_j))\nL = -sum_i(t_i log(p_i))"
    d = check(program, "z_g", arrays)
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(ic.evaluate(d, arrays), p - t, rtol=1e-10, atol=1e-12)
    check("L = -t_i log(exp(z_i) / sum_j(exp(z_j)))", "z_g", arrays)
    check(program, "z_g", arrays, of="p")


def test_trace():
    m = rand(4, 4)
    d = check("t = m_ii", "m_gh", {"m": m})
    np.testing.assert_array_equal(ic.evaluate(d, {"m": m}), np.eye(4))
    check("s = sum_i(m_ii x_i)", "m_gh", {"m": m, "x": rand(4)})
    check("d_i = m_ii", "m_gh", {"m": m})
    check("t = a_ij a_ji", "a_gh", {"a": rand(3, 3)})


def test_batch_index():
    arrays = {"w": rand(3, 4), "x": rand(5, 4), "b": rand(3)}
    check("y_ni = w_ij x_nj + b_i", "w_gh", arrays)
    check("y_ni = w_ij x_nj + b_i", "b_g", arrays)
    check("y_ni = w_ij x_nj + b_i", "x_gh", arrays)


def test_index_summed_over_three_factors():
    arrays = {"a": rand(4), "b": rand(4), "c": rand(4)}
    d = check("s = sum_i(a_i b_i c_i)", "b_g", arrays)
    np.testing.assert_allclose(ic.evaluate(d, arrays), arrays["a"] * arrays["c"])
    arrays = {"w": rand(3, 4), "x": rand(4), "v": rand(4)}
    check("y_i = sum_j(w_ij x_j v_j)", "x_g", arrays)
    check("y_i = sum_j(w_ij x_j x_j)", "x_g", arrays)


def test_derivative_axes_are_the_function_indices_then_the_fresh_ones():
    a, b = rand(2, 3), rand(3, 4)
    d = ic.diff("c_ki = a_ij b_jk", "a_gh")
    value = ic.evaluate(d, {"a": a, "b": b})
    assert value.shape == (4, 2, 2, 3)  # k, i, then g, h as a's axes
    expected = np.einsum("ig,jk->kigj", np.eye(2), b)
    np.testing.assert_allclose(value, expected)


# --------------------------------------------------------------------------------------
# Through programs


MLP2 = """\
h_ni = tanh(W1_ij x_nj + b1_i)
yhat_ni = sigma(W2_ij h_nj + b2_i)
loss = mean_n((yhat_ni - y_ni)(yhat_ni - y_ni))
"""

MLP3 = """\
h1_ni = tanh(W1_ij x_nj + b1_i)
h2_ni = sigma(W2_ij h1_nj + b2_i)
yhat_ni = W3_ij h2_nj + b3_i
loss = mean_n((yhat_ni - y_ni)(yhat_ni - y_ni))
"""


def mlp_arrays(layers=2, n=4, sizes=(3, 4, 3, 2)):
    arrays = {"x": rand(n, sizes[0])}
    for k in range(1, layers + 1):
        arrays[f"W{k}"] = rand(sizes[k], sizes[k - 1]) * 0.7
        arrays[f"b{k}"] = rand(sizes[k]) * 0.3
    arrays["y"] = rand(n, sizes[layers])
    return arrays


@pytest.mark.parametrize("wrt", ["W1_gh", "b1_g", "W2_gh", "b2_g"])
def test_two_layer_mlp_gradients(wrt):
    arrays = mlp_arrays(2)
    d = check(MLP2, wrt, arrays, loops=False)
    assert isinstance(d, Program)


@pytest.mark.parametrize("wrt", ["W1_gh", "b1_g", "W2_gh", "b2_g", "W3_gh", "b3_g", "x_gh"])
def test_three_layer_mlp_gradients(wrt):
    arrays = mlp_arrays(3)
    check(MLP3, wrt, arrays, loops=False)


def test_two_layer_mlp_gradient_against_backprop_by_hand():
    arrays = mlp_arrays(2)
    x, y, W1, b1, W2, b2 = (arrays[k] for k in ("x", "y", "W1", "b1", "W2", "b2"))
    n = x.shape[0]
    h = np.tanh(x @ W1.T + b1)
    yhat = sigmoid(h @ W2.T + b2)
    d_yhat = 2 * (yhat - y) / n
    d_u2 = d_yhat * yhat * (1 - yhat)
    d_h = d_u2 @ W2
    d_u1 = d_h * (1 - h**2)
    expected = {"W2": d_u2.T @ h, "b2": d_u2.sum(0), "W1": d_u1.T @ x, "b1": d_u1.sum(0)}
    for name, grad in expected.items():
        for source in (ic.diff(MLP2, name), ic.simplify(ic.diff(MLP2, name))):
            np.testing.assert_allclose(ic.evaluate(source, arrays), grad, rtol=1e-10, atol=1e-12)


def test_program_derivative_has_one_line_per_dependent_forward_line():
    forward = ic.parse(MLP3)
    for wrt, dependent in (("W1_gh", 4), ("W2_gh", 3), ("b3_g", 2), ("y_gh", 1)):
        d = ic.diff(forward, wrt)
        assert isinstance(d, Program)
        assert d.equations[: len(forward.equations)] == forward.equations
        lines = d.equations[len(forward.equations):]
        assert len(lines) == dependent, f"{wrt}:\n{d}"
        name = wrt_name(wrt)
        assert all(eq.lhs.derivs and eq.lhs.derivs[-1].wrt == name for eq in lines)
        assert [eq.lhs.name for eq in lines] == [eq.lhs.name for eq in forward.equations][-dependent:]


def test_derivative_lines_use_the_named_derivatives_of_earlier_lines():
    d = ic.diff(MLP2, "W1_gh")
    last = d.equations[-1]
    named = {t.key for t in last.rhs.walk() if isinstance(t, Tensor) and t.derivs}
    assert named == {"yhat_{,}[W1]"}, str(last)


def chain(layers):
    lines = [f"x{k}_i = tanh(W{k}_ij x{k - 1}_j)" for k in range(1, layers + 1)]
    lines.append(f"loss = x{layers}_i x{layers}_i")
    return "\n".join(lines)


def test_deep_chain_derivative_grows_linearly():
    """Linear in the depth, in lines and in text (its time is benchmarks/bench_gradients.py's)."""
    source = chain(20)
    forward = ic.parse(source)
    d = ic.diff(forward, "W1_gh")
    s = ic.simplify(d)
    assert len(d.equations) <= 2 * len(forward.equations)
    assert len(s.equations) <= 2 * len(forward.equations)
    assert len(str(d)) <= 4 * len(str(forward)) + 100 * len(forward.equations)
    mid = ic.diff(forward, "W10_gh")
    assert len(mid.equations) == len(forward.equations) + 12


def test_deep_chain_derivative_values():
    source = chain(8)
    arrays = {"x0": rand(2)}
    for k in range(1, 9):
        arrays[f"W{k}"] = rand(2, 2)
    check(source, "W1_gh", arrays, loops=False)
    check(source, "W8_gh", arrays, loops=False)
    check(source, "x0_g", arrays, loops=False)


def test_of_picks_an_intermediate():
    arrays = mlp_arrays(2)
    d = check(MLP2, "W1_gh", arrays, of="h", loops=False)
    # h is the first line: its derivative alone is the answer
    assert isinstance(d, Equation) and d.lhs.name == "h" and d.lhs.derivs[-1].wrt == "W1"
    d = check(MLP2, "W1_gh", arrays, of="yhat", loops=False)
    assert d.equations[-1].lhs.name == "yhat"
    check(MLP2, "b2_g", arrays, of="yhat", loops=False)


def test_of_names_an_equation_of_a_single_equation():
    d = ic.diff("y_i = w_ij x_j", "w_gh", of="y")
    assert d == ic.diff("y_i = w_ij x_j", "w_gh")


def test_program_that_redefines_a_name_is_refused():
    """Derivative lines refer to names, so a name has one value: h defined twice is an error
    that points at the second definition (it would otherwise read the later h)."""
    program = "h_i = w_ij x_j\nh_i = tanh(h_i)\nloss = h_i h_i"
    with pytest.raises(ic.ParseError, match="h is defined twice") as caught:
        ic.diff(program, "w_gh")
    assert "line 2" in str(caught.value)


@pytest.mark.parametrize("wrt", ["W1_gh", "b1_g", "W2_gh", "b2_g"])
def test_inline_gives_the_same_numbers(wrt):
    arrays = mlp_arrays(2)
    chained = ic.diff(MLP2, wrt)
    inlined = ic.diff(MLP2, wrt, inline=True)
    forward = ic.parse(MLP2)
    assert inlined.equations[: len(forward.equations)] == forward.equations
    assert len(inlined.equations) == len(forward.equations) + 1
    last = inlined.equations[-1]
    assert not [t for t in last.rhs.walk() if isinstance(t, Tensor) and t.derivs], str(last)
    np.testing.assert_allclose(ic.evaluate(inlined, arrays), ic.evaluate(chained, arrays), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ic.evaluate(ic.simplify(inlined), arrays), ic.evaluate(chained, arrays), rtol=1e-10, atol=1e-12
    )
    check(MLP2, wrt, arrays, inline=True, loops=False)


def test_inline_with_of_and_a_sum_rule_line():
    program = "u_i = w_ij x_j\nv_i = u_i u_i + sum_j(w_ij)\nloss = sum_i(v_i)"
    arrays = {"w": rand(3, 2), "x": rand(2)}
    check(program, "w_gh", arrays, inline=True)
    check(program, "w_gh", arrays, of="v", inline=True)


def test_inline_of_an_elementwise_sum_into_a_product_that_sums_its_index():
    # v_{i,(gh)} = u_i u_{i,(gh)} + u_i u_{i,(gh)} must not become a scope that sums i on its own
    program = "u_i = w_ij x_j\nv_i = u_i u_i\nloss = v_i u_i"
    check(program, "w_gh", {"w": rand(3, 2), "x": rand(2)}, inline=True)


def test_inline_of_a_definition_whose_inner_letter_is_fixed_where_it_is_used():
    program = "h_m = sin_m(w_u)\ny_u = z_u sum_m(h_m)"
    check(program, "w", {"w": rand(3), "z": rand(2)}, inline=True)


# --------------------------------------------------------------------------------------
# Second derivatives


def test_hessian_of_a_quadratic_form():
    a, w = rand(3, 3), rand(3)
    d2 = ic.diff(ic.diff("q = w_i a_ij w_j", "w_g"), "w_k")
    np.testing.assert_allclose(ic.evaluate(d2, {"a": a, "w": w}), a + a.T, rtol=1e-12)
    np.testing.assert_allclose(ic.evaluate(ic.simplify(d2), {"a": a, "w": w}), a + a.T, rtol=1e-12)


@pytest.mark.parametrize("first, second", [("W1_gh", "W1_kl"), ("W2_gh", "W2_kl"), ("W1_gh", "b2_k"), ("b1_g", "W2_kl")])
def test_hessian_of_an_mlp(first, second):
    arrays = mlp_arrays(2, n=3, sizes=(2, 3, 2))
    gradient = ic.diff(MLP2, first)
    hessian = ic.diff(gradient, second)
    assert isinstance(hessian, Program)
    assert hessian.equations[-1].lhs.name == "loss" and len(hessian.equations[-1].lhs.derivs) == 2
    expected = finite_difference(gradient, arrays, wrt_name(second))
    assert_close(ic.evaluate(hessian, arrays), expected, f"Hessian {first}, {second}")
    assert_close(ic.evaluate(ic.simplify(hessian), arrays), expected, f"simplified Hessian {first}, {second}")
    twice = ic.diff(ic.simplify(gradient), second)
    assert_close(ic.evaluate(twice, arrays), expected, f"Hessian of the simplified gradient {first}, {second}")


def test_hessian_is_symmetric():
    arrays = mlp_arrays(2, n=3, sizes=(2, 3, 2))
    h = ic.evaluate(ic.diff(ic.diff(MLP2, "W1_gh"), "W1_kl"), arrays)
    np.testing.assert_allclose(h, h.transpose(2, 3, 0, 1), rtol=1e-10, atol=1e-12)


LOGISTIC = """\
p_n = sigma(X_nj w_j)
L = -mean_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))
"""


def test_logistic_regression_gradient_and_hessian():
    n, k = 7, 3
    X, w = rand(n, k), rand(k)
    y = (RNG.uniform(size=n) > 0.5).astype(float)
    arrays = {"X": X, "w": w, "y": y}
    p = sigmoid(X @ w)
    gradient = ic.diff(LOGISTIC, "w_g")
    np.testing.assert_allclose(ic.evaluate(gradient, arrays), X.T @ (p - y) / n, rtol=1e-10, atol=1e-12)
    hessian = ic.diff(gradient, "w_k")
    expected = X.T @ np.diag(p * (1 - p)) @ X / n
    for h in (hessian, ic.simplify(hessian), ic.diff(ic.simplify(gradient), "w_k")):
        np.testing.assert_allclose(ic.evaluate(h, arrays), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ic.evaluate_loops(hessian, arrays), expected, rtol=1e-9, atol=1e-12)
    assert_close(ic.evaluate(hessian, arrays), finite_difference(gradient, arrays, "w"), "logistic Hessian")


def test_second_derivative_of_a_single_equation_by_two_tensors():
    arrays = {"w": rand(2, 3), "x": rand(3)}
    first = ic.diff("y_i = tanh(w_ij x_j)", "w_gh")
    second = ic.diff(first, "x_k")
    assert second.lhs.all_indices[:1] == ("i",) and len(second.lhs.all_indices) == 4
    assert_close(ic.evaluate(second, arrays), finite_difference(first, arrays, "x"), "d²y/dw dx")


# --------------------------------------------------------------------------------------
# Property-based: random well-formed programs


FRESH_WRT = ("g", "h", "a", "b", "c", "d", "e", "f", "o")

# smooth functions, small programs (test_compile.py uses it too)
Generator = functools.partial(ProgramGenerator, settings=SMOOTH_PROGRAMS)


def dependencies(node) -> set[str]:
    """The input tensors the value of `node` (its last equation) depends on."""
    equations = node.lines
    if not isinstance(node, (Program, Equation)):
        return {t.key for t in node.walk() if isinstance(t, Tensor)}
    defined = {}
    for eq in equations:
        defined[eq.lhs.key] = {t.key for t in eq.rhs.walk() if isinstance(t, Tensor)}
    out: set[str] = set()
    todo = [equations[-1].lhs.key]
    seen = set()
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        for used in defined.get(key, ()):
            if used in defined:
                todo.append(used)
            else:
                out.add(used)
    return out


@st.composite
def derivative_cases(draw):
    gen = Generator(draw(st.data()))
    text = gen.program()
    try:
        node = ic.parse(text)
        check_program(tuple(line for line in node.lines if isinstance(line, ic.Equation)))
    except ic.IndexCalcError:
        reject()  # an ambiguous use of an index (T2_k / (1 + T3_kk^2)): tests/test_ambiguity.py
    depends = sorted(dependencies(node))
    assume(depends)  # a formula of numbers alone has nothing to differentiate by
    name = draw(st.sampled_from(depends))
    count = len(gen.inputs[name])
    if count and draw(st.booleans()):
        wrt = name + "_" + "".join(FRESH_WRT[:count])
    else:
        wrt = name
    arrays = gen.arrays(draw(st.integers(0, 2**32 - 1)))
    return text, wrt, arrays


PROPERTY = sample(60)


@PROPERTY
@given(derivative_cases())
def test_random_derivatives_match_finite_differences(case):
    text, wrt, arrays = case
    d = ic.diff(text, wrt)
    got = ic.evaluate(d, arrays)
    assert np.all(np.isfinite(got))
    expected = finite_difference(text, arrays, wrt_name(wrt))
    assert_close(got, expected, f"d/d{wrt} of\n{text}\n=\n{d}", rtol=1e-5)


@PROPERTY
@given(derivative_cases())
def test_simplify_preserves_the_value(case):
    text, wrt, arrays = case
    forward = ic.parse(text)
    assert_close(ic.evaluate(ic.simplify(forward), arrays), ic.evaluate(forward, arrays),
                 f"simplify of\n{text}", rtol=1e-10, atol=1e-12)
    d = ic.diff(forward, wrt)
    s = ic.simplify(d)
    assert_close(ic.evaluate(s, arrays), ic.evaluate(d, arrays), f"simplify of\n{d}\n->\n{s}", rtol=1e-10, atol=1e-12)
    assert ic.simplify(s) == s or np.allclose(ic.evaluate(ic.simplify(s), arrays), ic.evaluate(s, arrays))


class _RewriteLog:
    """The rule table, each rule wrapped to note the rewrites it makes."""

    def __init__(self, rules):
        self.rewrites: dict = {}
        self.rules = tuple((node_type, self._noted(rule)) for node_type, rule in rules)

    def _noted(self, rule):
        def noted(node, ctx):
            new = rule(node, ctx)
            if new is not None and new != node:
                self.rewrites.setdefault(node, (rule.__name__, new))
            return new
        return noted


@PROPERTY
@given(derivative_cases())
def test_no_two_rules_undo_each_other(case):
    """A rewrite that a later rewrite turns back (order_factors put (-2)^a before the
    coefficient fold_numbers puts first) makes simplify loop, each pass re-simplifying
    the subtree: a Hessian took 31 s instead of 1.5 s."""
    text, wrt, arrays = case
    simplify = sys.modules["indexcalc.simplify"]
    log = _RewriteLog(simplify.RULES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simplify, "RULES", log.rules)
        ic.simplify(ic.diff(text, wrt))
        ic.simplify("y_i = 3 (-2)^c x_i + (0.5)^c x_i (-1)")
    for node, (rule, new) in log.rewrites.items():
        back = log.rewrites.get(new)
        assert back is None or back[1] != node, f"{rule} gives {new}, {back[0]} gives {node} back"


@PROPERTY
@given(derivative_cases())
def test_einsum_agrees_with_loops_on_derivatives(case):
    text, wrt, arrays = case
    d = ic.diff(text, wrt)
    for version in (d, ic.simplify(d)):
        fast = ic.evaluate(version, arrays)
        slow = ic.evaluate_loops(version, arrays)
        assert_close(fast, slow, f"einsum vs loops on\n{version}", rtol=1e-9, atol=1e-11)


@PROPERTY
@given(derivative_cases())
def test_derivatives_print_and_parse_back(case):
    text, wrt, arrays = case
    d = ic.diff(text, wrt)
    for version in (d, ic.simplify(d)):
        # the printed text leaves implicit sums to the convention: read back, it binds the same
        bound = bindings(version)
        printed = str(version)
        assert bindings(ic.parse(printed)) == bound, f"round trip of\n{printed}"
        assert bindings(ic.parse(version.pretty())) == bound, f"round trip of\n{version.pretty()}"


def bindings(tree):
    """The tree with every sum written out, the indices of each in one order: what it binds where."""
    def ordered(node):
        if isinstance(node, ic.Reduce):
            return dataclasses.replace(node, indices=tuple(sorted(node.indices)))
        return node
    return map_nodes(explicit(tree), ordered)


def map_nodes(node, change):
    kids = node.children()
    if kids:
        node = with_children(node, tuple(map_nodes(k, change) for k in kids))
    return change(node)


# --------------------------------------------------------------------------------------
# Regressions: inputs the random programs found


def test_relabelled_call_in_a_product_that_sums_the_new_letter():
    arrays = {"a": rand(3), "x": rand(3), "T": rand(3)}
    check("y = a_m cos_m(x_i)", "x_g", arrays)
    check("y = delta_im T_i cos_m(x_i)", "x", arrays)


def test_relabelled_call_that_reads_a_diagonal():
    # inside sum_jl, l is fixed: cos_l(T_mjl) is cos(T_ljl)
    check("y = sum_jl(cos_l(T_mjl))", "T", {"T": rand(3, 2, 3)})
    check("y = sum_m(sigma_m(sigma_k(T_lm)))", "T", {"T": rand(3, 3)})
    check("y = sum_m(tanh_m(1.5 a_p T_mkp c))", "T", {"a": rand(2), "T": rand(3, 3, 2), "c": 0.4})


def test_bare_expression_whose_free_letter_an_inner_scope_also_sums():
    arrays = {"x": rand(3), "y": rand(3), "z": rand(3)}
    d = check("x_i sigma(y_i z_i)", "y_g", arrays)
    assert d.lhs.name == "f" and len(d.lhs.indices) == 1
    check("cos_v(cos_q(a δ_mv x_m))", "x", {"a": 0.7, "x": rand(3)})
    # no capture, no renaming: the derivative keeps the expression's letters
    assert ic.diff("w_ij x_j", "w_gh").lhs.indices == ("i",)


def test_reduction_term_beside_a_factor_that_uses_its_letters_inside():
    arrays = {"T3": rand(1, 3, 1, 2), "T4": rand(1, 1, 2), "T5": rand(2, 3, 1)}
    check("y = sum_ml(cos(T3_ipml)) (T4_mil T5_lpm)^3", "T3", arrays)


def test_factor_whose_free_index_a_trace_inside_it_also_uses():
    # T4_ii is expanded over the sum it stands in; renaming apart must not fix its i
    arrays = {"T1": rand(2, 3), "T5": rand(3, 2), "T3": rand(2, 3), "T4": rand(2, 2), "z": rand(2)}
    check("y = sum_q(T1_iq T5_qr (T3_rq + T4_ii))^2 z_i", "T5", arrays)
    arrays = {"T0": rand(2, 2, 2), "T1": rand(2, 2, 3), "T2": rand(2, 2), "T3": rand(2, 2, 3, 2),
              "T4": rand(2, 2), "T5": rand(2, 2)}
    check("sum_m(delta_ru 0.5 sum_s(cos(T0_ris)) / (1 + sum_q((1.5 - T1_iqm + T2_iq) T5_qr (T3_rumq + T4_ii))^2))",
          "T5", arrays)


def test_relabel_onto_a_letter_the_argument_sums_of_its_own():
    # sigma_j relabels m to j, while the argument sums a j of its own
    arrays = {"T0": rand(3, 3, 1, 3), "T1": rand(3, 3, 1)}
    check("y0_i = σ_i(sigma_j(T0_jmμi * 0.5 * δ_k1μ / (1 + (T1_ijk1)^2)))", "T0", arrays)


def test_trace_factor_keeps_its_letters_when_simplified():
    arrays = {"T0": rand(2, 3, 2, 3, 3), "T1": rand(2, 3), "m": rand(3, 3), "x": rand(3), "T2": rand(3, 3, 3)}
    for text in ("sum_p(1.5 delta_pj T0_upkpj / (1 + (T1_kp)^2))", "s_gh = x_i delta_(ii)(gh)", "s = (m_ii)^1 x_i x_i",
                 "s = delta_in x_n (T2_nin)^2"):
        simplified = ic.simplify(text)
        assert_close(ic.evaluate(simplified, arrays), ic.evaluate(text, arrays), f"{text} -> {simplified}",
                     rtol=1e-12, atol=1e-12)


def test_like_terms_under_different_reductions_are_not_merged():
    # in the first term n is fixed inside sigma (elementwise), in the second summed inside it
    text = "s = mean_n(a_n sigma(a_n b_n)) + mean_m(a_m sigma(a_n b_n))"
    arrays = {"a": rand(3), "b": rand(3)}
    assert_close(ic.evaluate(ic.simplify(text), arrays), ic.evaluate(text, arrays), text, rtol=1e-12, atol=1e-12)
    text = "y_i = mean_n(x_ni tanh(x_ni + b_i)) + mean_n(x_ni tanh(x_ni + b_i))"
    arrays = {"x": rand(4, 3), "b": rand(3)}
    assert_close(ic.evaluate(ic.simplify(text), arrays), ic.evaluate(text, arrays), text, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Bad input


def raises_diff_error(source, wrt, *fragments, **options):
    with pytest.raises(ic.DiffError) as info:
        ic.diff(source, wrt, **options)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_wrt_that_does_not_occur():
    raises_diff_error("y_i = w_ij x_j", "v_gh", "v", "does not occur")
    raises_diff_error("y_i = w_ij x_j", "v", "v", "does not occur")
    # a tensor of a later line does not occur in what is differentiated
    raises_diff_error("y_i = w_ij x_j\nz_i = v_i y_i", "v_g", "v", "does not occur", of="y")


def test_wrt_with_the_wrong_number_of_indices():
    raises_diff_error("y_i = w_ij x_j", "w_g", "w", "2 indices", "1")
    raises_diff_error("y_i = w_ij x_j", "w_ghk", "2 indices", "3")
    raises_diff_error("y_i = w_ij x_j", "x_gh", "1 index", "2")


def test_wrt_index_already_used_in_the_equation():
    message = raises_diff_error("y_i = w_ij x_j", "w_ij", "already used", "fresh")
    assert "i" in message and "j" in message
    raises_diff_error("y_i = w_ij x_j", "w_gi", "already used")
    raises_diff_error("h_ni = tanh(W_ij x_nj)\nloss = h_ni h_ni", "W_gn", "already used")


def test_wrt_indices_must_be_distinct():
    raises_diff_error("y_i = w_ij x_j", "w_gg", "distinct")


@pytest.mark.parametrize("wrt", ["2", "w_{,i}", "w_{,(gh)}[w]", "w_gh + 1", "sigma(w_gh)", "delta_gh", "-w_gh"])
def test_wrt_that_is_not_a_tensor(wrt):
    raises_diff_error("y_i = w_ij x_j", wrt, "wrt")


def test_wrt_that_is_not_text_or_not_parseable():
    raises_diff_error("y_i = w_ij x_j", 3, "wrt")
    with pytest.raises(ic.IndexCalcError):
        ic.diff("y_i = w_ij x_j", "w_g(")
    with pytest.raises(ic.IndexCalcError):
        ic.diff("y_i = w_ij x_j", "")


def test_of_naming_nothing():
    raises_diff_error(MLP2, "W1_gh", "no equation defines", "'z'", of="z")
    raises_diff_error("y_i = w_ij x_j", "w_gh", "no equation defines", of="q")


def test_target_that_does_not_depend_on_wrt():
    raises_diff_error("h_i = w_ij x_j\nloss = v_i v_i", "w_gh", "loss", "does not depend on w")
    raises_diff_error(MLP2, "W2_gh", "W2", "does not occur", of="h")  # h comes before W2
    raises_diff_error("u_i = w_ij x_j\nv_i = z_i\nloss = v_i v_i", "w_gh", "loss", "does not depend on w")
    raises_diff_error("y_i = w_ij x_j", "y_g", "does not depend")


def test_source_that_breaks_the_index_rules():
    with pytest.raises(ic.IndexCalcError):
        ic.diff("y_i = w_ij x_k", "w_gh")
    with pytest.raises(ic.IndexCalcError):
        ic.diff("y_i = w_ij x_j + w_i", "w_gh")


def test_diff_errors_are_indexcalc_errors():
    assert issubclass(ic.DiffError, ic.IndexCalcError)


# --------------------------------------------------------------------------------------
# Simplify: every rule fires and keeps the value


def find(node, kind):
    """The first sub-node of type `kind`, parents first."""
    return next(n for n in node.walk() if isinstance(n, kind))


def replaced(node, old, new):
    """`node` with its sub-node `old` (by identity) replaced by `new`."""
    if node is old:
        return new
    if isinstance(node, Product):
        return Product(tuple(replaced(f, old, new) for f in node.factors))
    if isinstance(node, Sum):
        return Sum(tuple(replaced(t, old, new) for t in node.terms))
    if isinstance(node, Power):
        return Power(replaced(node.base, old, new), replaced(node.exponent, old, new))
    if isinstance(node, Call):
        return Call(node.func, replaced(node.arg, old, new), node.relabel)
    if isinstance(node, Reduce):
        return Reduce(node.op, node.indices, replaced(node.body, old, new))
    return node


RULE_CASES = {
    "lone_delta": [("t_gh = delta_(ii)(gh) + m_gh", Delta, "t_gh = delta_gh + m_gh"),
                   ("y_i = delta_ii + x_i", Delta, "y_i = 1 + x_i")],
    "flatten_product": [("s = 2 (a_i b_i) x_j d_j", Product, "s = 2 a_i b_i x_j d_j")],
    "fold_numbers": [("y_i = 2 x_i 3", Product, "y_i = 6 x_i"),
                     ("s = 0 x_i x_i", Product, "s = 0"),
                     ("y_i = 1 x_i", Product, "y_i = x_i")],
    "eliminate_delta": [("y_g = delta_ig x_i", Product, "y_g = x_g"),
                        ("s = a_i delta_ij b_j", Product, None),
                        ("y_i = delta_ii x_i", Product, "y_i = x_i")],
    "drop_zero_carriers": [("y_i = sigma(x_i) (0 x_i + 1)", Product, "y_i = sigma(x_i)")],
    # issue 8: a carrier of a letter held anyway (the left side's, or a sibling's), and u^0
    "drop_held_carriers": [("y_p = z_p + mean_i((1 + 0 x_p) a_i)", Product, "y_p = z_p + mean_i(a_i)"),
                           ("y = mean_i(x_i + mean_j((1 + 0 x_i) b_j))", Product, "y = mean_i(x_i + mean_j(b_j))"),
                           ("y_p = mean_i(z_i (1 + 0 x_p) + d_p)", Product, "y_p = mean_i(z_i + d_p)")],
    "drop_zero_powers": [("y_i = x_i^0 z_i", Product, "y_i = z_i"),
                         ("y = mean_i(2 x_i^0 z_i)", Product, "y = mean_i(2 z_i)")],
    "combine_powers": [("y_i = x_i x_i", Product, "y_i = x_i^2"),
                       ("y_i = x_i^2 x_i^-1 z_i", Product, None)],
    "order_factors": [("y_i = x_i sigma(z_i)", Product, "y_i = sigma(z_i) x_i")],
    "flatten_sum": [("y_i = a_i + (b_i - x_i)", Sum, "y_i = a_i + b_i - x_i")],
    "collect_terms": [("y_i = 2 a_i + 3 a_i", Sum, "y_i = 5 a_i"),
                      ("s = a_j b_j + a_k b_k", Sum, "s = 2 a_j b_j"),
                      ("y_i = a_i - a_i + b_i", Sum, "y_i = b_i"),
                      ("y = 1 + 2 + c", Sum, "y = 3 + c")],
    "reduce_delta": [("y_g = sum_j(delta_jg x_j)", Reduce, "y_g = x_g"),
                     ("y = sum_jk(x_j z_k delta_jk)", Reduce, "y = sum_k(x_k z_k)"),
                     ("y_i = sum_jk([j <= i] m_ik x_j delta_kj)", Reduce, "y_i = sum_j([j <= i] m_ij x_j)"),
                     ("y_g = sum_jk(delta_jg x_j z_k)", Reduce, None)],
    "fold_power": [("y_i = x_i^1", Power, "y_i = x_i"),
                   ("y_i = x_i + 2^3", Power, "y_i = x_i + 8"),
                   ("y_i = x_i + c^0", Power, "y_i = x_i + 1")],
    "fold_call": [("y_i = x_i relu'(2)", Call, "y_i = x_i"),
                  ("y_i = x_i + exp(0)", Call, "y_i = x_i + 1")],
    "absorb_into_reduction": [("y_g = sum_n(m_ng m_nh) x_h", Product, "y_g = sum_n(m_ng m_nh x_h)"),
                              ("y = 2 mean_n(s_n) c", Product, None)],
    "merge_nested_sums": [("y = sum_i(sum_j(m_ij))", Reduce, None)],
    "numbers_out_of_sum": [("y_g = sum_k(-2 sum_j(m_kj delta_kg))", Reduce, "y_g = -2 sum_j(m_gj)"),
                           ("y = sum_k(2 sum_j(m_kj) 3)", Reduce, "y = 6 sum_kj(m_kj)")],
    "sum_inside": [("y = sum_i(mean_j(m_ij))", Reduce, "y = mean_j(sum_i(m_ij))")],
    "zero_reduction": [("y = sum_i(0 x_i)", Reduce, "y = 0")],
    "split_reduction": [("y_g = sum_j(delta_jg x_j + z_j)", Reduce, "y_g = x_g + sum_j(z_j)")],
    "distribute_delta_sum": [("y_g = sum_j((a_j delta_jg - b_j delta_jg) x_j)", Reduce, "y_g = (a_g - b_g) x_g"),
                             ("y_g = sum_j((a_j delta_jg + z_j) x_j)", Reduce, None),
                             # a term that sums of its own: its δ is reached through that sum
                             ("y_g = sum_j((a_j + sum_k(m_jk b_k delta_jg)) x_j)", Reduce,
                              "y_g = sum_j(a_j x_j) + sum_k(m_gk b_k) x_g")],
    "merge_reductions": [("y = mean_n(s_n x_n) + 2 mean_n(s_n^2)", Sum, "y = mean_n(s_n x_n + 2 s_n^2)"),
                         ("y_i = sum_j(m_ij) - sum_j(m_ji)", Sum, None)],
    "factor_common": [("y_g = a_g x_g + b_g x_g", Sum, "y_g = (a_g + b_g) x_g"),
                      ("y_g = 2 a_g - 2 b_g", Sum, "y_g = 2 (a_g - b_g)"),
                      ("y_g = 2 c sigma(a_g) - c tanh(a_g)", Sum, None),
                      # one factor spelled with two summed letters (two branches of a derivative)
                      ("y_g = a_g tanh(m_gj x_j) + b_g tanh(m_gk x_k)", Sum, "y_g = (a_g + b_g) tanh(m_gj x_j)")],
    # issue 10's Iverson brackets (more in tests/test_masks.py)
    "fold_mask": [("y_i = [i <= i] x_i", ic.expr.Mask, "y_i = x_i"),
                  ("y_i = [i < i] x_i + z_i", ic.expr.Mask, "y_i = z_i")],
    "drop_repeated_masks": [("y_ij = [j <= i] m_ij [j <= i]", Product, "y_ij = [j <= i] m_ij")],
    "fold_compare": [("y_i = [2 < 3] x_i", ic.expr.Compare, "y_i = x_i")],
    # issue 10's shifted indices (more in tests/test_shifts.py)
    "solve_shift": [("y_ie = m_ie sum_k(x_k delta_{e(i+k)})", Reduce, "y_ie = m_ie sum_k(x_k delta_{k(e-i)})"),
                    ("y_ie = m_ie sum_k(x_k delta_{e(2i-k+1)})", Reduce, "y_ie = m_ie sum_k(x_k delta_{k(2i-e+1)})")],
}


def rule_arrays():
    return {"m": rand(3, 3), "x": rand(3), "z": rand(3), "a": rand(3), "b": rand(3), "c": 0.7,
            "d": rand(3), "s": rand(3)}


def test_every_simplify_rule_has_a_test():
    assert {rule.__name__ for _, rule in RULES} == set(RULE_CASES)


@pytest.mark.parametrize("rule_name, text, kind, simplified",
                         [(name, *case) for name, cases in RULE_CASES.items() for case in cases])
def test_simplify_rule_fires_and_keeps_the_value(rule_name, text, kind, simplified):
    rule = next(rule for node_type, rule in RULES if rule.__name__ == rule_name)
    eq = ic.parse(text)
    if rule_name == "flatten_sum" and not any(isinstance(t, Sum) for t in find(eq.rhs, Sum).terms):
        pytest.fail("the parser flattened the nested sum; pick another input")
    node = find(eq.rhs, kind)
    # the rule sees the context simplify gives the node: the indices fixed there (the
    # left-hand side's and enclosing reductions'), those held by siblings
    new = rule(node, context_at(eq, node))
    assert new is not None and new != node, f"{rule_name} did not fire on {node}"
    rewritten = Equation(eq.lhs, replaced(eq.rhs, node, new))
    arrays = rule_arrays()
    before = ic.evaluate(eq, arrays)
    assert_close(ic.evaluate(rewritten, arrays), before, f"{rule_name}: {eq} -> {rewritten}", rtol=1e-12, atol=1e-12)
    assert_close(ic.evaluate_loops(rewritten, arrays), before, f"{rule_name} (loops)", rtol=1e-12, atol=1e-12)
    result = ic.simplify(eq)
    assert_close(ic.evaluate(result, arrays), before, f"simplify {eq} -> {result}", rtol=1e-12, atol=1e-12)
    if simplified is not None:
        assert result == ic.simplify(ic.parse(simplified)), f"simplify({eq}) = {result}, expected {simplified}"


@sample(40, derandomize=True)
@given(func=st.sampled_from(["tanh", "sigma", "exp", "sqrt"]),
       inner=st.sampled_from(["m_g{j} x_{j}", "sum_{j}(m_g{j} x_{j})", "m_g{j} m_{j}{k} x_{k}", "mean_{j}(m_{j}g x_{j}^2)"]),
       letters=st.permutations("jkpqr"), coefficients=st.lists(st.sampled_from(["a_g", "2 b_g", "-c", "d_g z_g"]),
                                                                min_size=2, max_size=3), same=st.booleans())
def test_a_factor_spelled_with_other_summed_letters_is_taken_out_once(func, inner, letters, coefficients, same):
    """Terms sharing a factor up to the names of the letters it sums (as two branches of a
    derivative spell it; spelled alike, `explicit` makes the letters differ): simplify
    takes it out once, and the value stays."""
    spellings = [inner.format(j=letters[0 if same else 2 * k % 5], k=letters[1 if same else (2 * k + 1) % 5])
                 for k in range(len(coefficients))]
    text = "y_g = " + " + ".join(f"{c} {func}({spelled})" for c, spelled in zip(coefficients, spellings))
    eq = ic.parse(text)
    arrays = {**rule_arrays(), "m": rand(3, 3) + 2.0, "x": rand(3) + 2.0}  # positive: sqrt's argument
    result = ic.simplify(eq)
    assert str(result).count(func + "(") == 1, f"{text} -> {result}"
    assert_close(ic.evaluate(result, arrays), ic.evaluate(eq, arrays), f"{text} -> {result}", rtol=1e-12, atol=1e-12)


@sample(30, derandomize=True, database=None)
@given(route_cases())
def test_a_rewrite_asks_its_context_only_about_the_letters_of_its_node(case):
    """simplify remembers a subtree's rewrite by the node and its context cut down to the
    node's letters, and reuses it wherever the node stands again (a Hessian's sums repeat
    their subtrees under other reductions): so no rule may read a letter of the context
    that its node does not write. Each subtree of a derivative simplified in the context
    simplify gives it and in one wider by every other letter: the same tree."""
    from indexcalc.relabel import fresh_letters, letters_in
    from indexcalc.simplify import _simplify

    assume(case.wrt is not None)
    try:
        derivative = ic.diff(case.text, case.wrt)
    except ic.IndexCalcError:
        reject()
    for line in derivative.lines:
        eq = explicit(line)
        outside_all = letters_in(eq) | {"ζ"}
        nodes = [n for n in eq.rhs.walk() if n.children()][:12]
        for node in nodes:
            ctx = context_at(eq, node)
            if ctx is None:
                continue
            outside = outside_all - letters_in(node)
            mine = dataclasses.replace(ctx, fresh=fresh_letters(letters_in(eq)), done={}, sized={}, canonical={})
            wider = dataclasses.replace(ctx, fresh=fresh_letters(letters_in(eq)), done={}, sized={}, canonical={},
                                        fixed=ctx.fixed | outside, convention=ctx.convention | outside,
                                        held=ctx.held | outside, unheld=ctx.unheld | outside)
            assert _simplify(node, mine) == _simplify(node, wider), f"{node} in {eq}"


def test_a_carrier_that_alone_sizes_its_letter_stays():
    """(1 + 0 x_p) is the only thing that gives p its size here: it must not go."""
    eq = ic.parse("y_p = mean_i((1 + 0 x_p) a_i)")
    result = ic.simplify(eq)
    assert "x_p" in str(result)
    arrays = {"x": rand(4), "a": rand(3)}
    np.testing.assert_allclose(ic.evaluate(result, arrays), np.full(4, arrays["a"].mean()))


CANCELLING = ("({Y}_u + c - {Y}_u)", "(c + {Y}_u - {Y}_u)", "(2 {Y}_u + c - 2 {Y}_u)", "({Y}_u c + e - c {Y}_u)")
AROUND = ("{p} e", "{p} x_i", "exp({p} e)", "{p}^2 e", "sum_k({p} x_k)", "mean_k(x_k {p})", "(e + {p}) x_i")


@sample(60)
@given(st.lists(st.tuples(st.sampled_from(CANCELLING), st.sampled_from(AROUND), st.sampled_from("YZ")),
                min_size=1, max_size=3),
       st.sampled_from([" ", " + "]))
def test_a_letter_whose_sizing_terms_cancel_keeps_a_carrier(pieces, join):
    """The soak's seed 10800: in `y2_u = (y_u + T3 - y_u) T4` the terms that gave u its size
    cancel, and simplify dropped the carrier `0 y_u` that was left, as u had been held (sized
    elsewhere on the right) before the sum was rewritten: `y2_u = T3 T4`, refused by every
    route after it. The family: such sums, alone or several, in products, calls, powers and
    reductions, multiplied or added; simplified, each still carries u and keeps its value."""
    rhs = join.join(f"({around.format(p=piece.format(Y=name))})" for piece, around, name in pieces)
    lhs = "w_ui" if any("x_i" in around for _, around, _ in pieces) else "w_u"
    if lhs == "w_ui" and join == " + ":
        rhs = " + ".join(f"{term} (1 + 0 x_i)" if "x_i" not in term else term for term in rhs.split(" + "))
    text = f"{lhs} = {rhs}"
    eq = ic.parse(text)
    arrays = {"Y": rand(4), "Z": rand(4), "x": rand(3), "c": 0.7, "e": -1.3}
    result = ic.simplify(eq)
    again = ic.parse(str(result))  # valid: it carries every letter of the left side
    assert_close(ic.evaluate(again, arrays), ic.evaluate(eq, arrays), f"{text} -> {result}")



@sample(60)
@given(st.lists(st.tuples(st.sampled_from(CANCELLING), st.sampled_from(AROUND), st.sampled_from("YZ")),
                min_size=1, max_size=3),
       st.sampled_from([" ", " + "]))
def test_a_derivative_whose_sizing_terms_cancel_keeps_a_carrier(pieces, join):
    """The soak's seed 12900: diff of `y_μ = σ(0.5) ((v1_jμ - v1_jμ - 1.5) tanh(v2_jkk))`
    by v2 is a line that stands alone, `y_{μ,(abc)}[v2] = ...`, and simplify took a comma
    derivative to size its own letters: it dropped the carrier `0 v1_aμ` and no route could
    size μ. The family above, differentiated: the letters after the comma are the wrt
    array's, but those before it must stay carried."""
    rhs = join.join(f"({around.format(p=piece.format(Y=name))})" for piece, around, name in pieces)
    lhs = "w_ui" if any("x_i" in around for _, around, _ in pieces) else "w_u"
    if lhs == "w_ui" and join == " + ":
        rhs = " + ".join(f"{term} (1 + 0 x_i)" if "x_i" not in term else term for term in rhs.split(" + "))
    text = f"{lhs} = {rhs}"
    arrays = {"Y": rand(4), "Z": rand(4), "x": rand(3), "c": 0.7, "e": -1.3}
    for wrt in ("c", "e", "x_a"):
        if not re.search(rf"\b{wrt[0]}(?![A-Za-z0-9])", rhs):  # x_k reads x; exp does not read e
            continue
        derivative = ic.diff(text, wrt)
        result = ic.simplify(derivative)
        again = ic.parse(str(result))
        want = ic.evaluate(derivative, arrays)
        assert_close(ic.evaluate(again, arrays), want, f"{text} by {wrt} -> {result}")
        assert_close(ic.evaluate(ic.diff(text, wrt, inline=True), arrays), want, f"{text} by {wrt}, inline")

CANCELLED_WRT = [
    "y_n = x_n + (w_n - w_n)\nL = y_n y_n\ng_a = L_{,(a)}[w]",
    "y = sum_k(w_k x_k - x_k w_k) + c\nL = y y\ng_a = L_{,(a)}[w]",
    "y_n = -3 (x_n + w_n) + -3 (2 - w_n + w_n)\nL = sum_n(softplus(y_n))\nw2_a = w_a - c L_{,(a)}[w]\nM = w2_a w2_a",
    "y_n = (2 - w_n + w_n) x_n c\nL = sum_n(y_n)\nh = L_{,()}[c] + L_{,(a)}[w] x_a",
    # the name reached through an earlier line, and the line that reads it cancelled
    "r_n = [w_n >= 0] w_n\ny_n = 0.5 r_n - 0.5 r_n + x_n\nL = mean_n(log(1 + y_n^2))\nw2_a = w_a - c L_{,(a)}[w]\nM = w2_a w2_a",
    "r_n = tanh(w_n)\nq_n = r_n x_n\ny_n = (q_n - q_n) c + x_n\nL = y_n y_n\ng_a = L_{,(a)}[w]",
    "r = sum_k(w_k x_k)\ny_n = x_n (r - r + c)\nL = y_n y_n\ng_a = L_{,(a)}[w]",
]


@pytest.mark.parametrize("text", CANCELLED_WRT)
def test_a_program_keeps_the_name_its_derivative_lines_differentiate_by(text):
    """The soak's seed 11100: simplify cancelled `(2 - T3_ni + T3_ni)` in a line, so T3
    was written nowhere on the way to `loss_{,(su)}[T3]` below, and evaluating the
    simplified program refused it as a typo ("T3 does not occur ... nothing to
    differentiate by"), where the program as written has the derivative zero. A line that
    would lose such a name is kept as written; the numbers are the program's. The soak's
    seed 13700: the same through an earlier line (`r_n = [...] W1_n`, then `y_n = 2^-1 r_n
    - 2^-1 r_n - ...` lost r and with it W1: "loss does not depend on W1")."""
    arrays = {"x": rand(3), "w": rand(3), "c": 0.7}
    result = ic.simplify(text)
    want = ic.evaluate(text, arrays)
    assert_close(ic.evaluate(result, arrays), want, f"{text} -> {result}")
    assert_close(ic.evaluate(ic.parse(str(result)), arrays), want, f"{text} -> {result}, reparsed")


INVERSE_DIAGONALS = [
    "z_a = sum_o(inv_oa(A_pq) delta_ao)", "z_a = inv_oa(A_pq) delta_ao", "z_a = inv_ao(A_pq) delta_oa x_a",
    "z = sum_oa(inv_oa(A_pq) delta_ao)", "z = inv_oa(A_pq) delta_ao", "z_a = sum_o(inv_oa(A_pq + B_pq) delta_ao) + x_a",
    "z = sum_a(x_a sum_o(inv_oa(B_pr A_rq) delta_oa))", "z_a = sum_o(delta_ao inv_ao(A_pq) x_o)",
]


@pytest.mark.parametrize("text", INVERSE_DIAGONALS)
def test_the_diagonal_and_trace_of_an_inverse_keep_their_delta(text):
    """The soak's seed 11000: a Hessian through det held `sum_o(inv_oa(...) δ_ao)`, and
    δ elimination renamed o to a, making `inv_aa(...)`, which the notation refuses (a pair
    relabelled to one letter): compile(hessian) raised. tr(A⁻¹) written with a δ
    (`sum_oa(inv_oa(A_pq) δ_ao)`) raised the same in simplify. The δ now stays where it
    would merge a matrix function's pair; every route gives the diagonal (the trace)."""
    A = rand(3, 3) + 3 * np.eye(3)
    arrays = {"A": A, "B": rand(3, 3) + 3 * np.eye(3), "x": rand(3)}
    result = ic.simplify(text)
    want = ic.evaluate(text, arrays)
    assert_close(ic.evaluate(ic.parse(str(result)), arrays), want, f"{text} -> {result}")
    assert_close(ic.compile(text)(arrays)[0], want, f"compile {text}")
    if text == "z = sum_oa(inv_oa(A_pq) delta_ao)":
        assert_close(want, np.trace(np.linalg.inv(A)), "tr(A^-1)")


def test_inline_prints_without_carriers_or_unit_powers():
    """Issue 8: the inline derivative, and the derivative lines the program uses, read
    like the notes (no `(1 + 0 x_p)` where p is held anyway, no `^1`, no `u^0`), and
    keep their numbers."""
    layer_norm = "ln_p = (v_p - mean_i(v_i)) / sqrt(0.1 + mean_i((v_i - mean_j(v_j))^2))"
    update = "h_t = tanh(W_tq u_q) ; loss = mean_t(log(1 + h_t^2)) ; grad_v = loss_{,(v)}[u] ; L = grad_v grad_v"
    cases = [(layer_norm, "v_a", {"v": rand(5)}), (update, "u_a", {"W": rand(4, 3), "u": rand(3)})]
    for source, wrt, arrays in cases:
        inline = ic.diff(source, wrt, inline=True)
        text = str(inline)
        assert " 0 " not in text and "^1" not in text and "^0" not in text, text
        assert_close(ic.evaluate(inline, arrays), ic.evaluate(ic.diff(source, wrt), arrays), f"inline {source}")


def test_simplify_writes_the_gradient_as_on_paper():
    d = ic.simplify(ic.diff("yhat_i = sigma(w_ij x_j + b_i)", "w_gh"))
    assert not [n for n in d.rhs.walk() if isinstance(n, Delta) and set(n.all_indices) <= {"i", "j"}]
    text = str(d)
    assert "x_h" in text and "delta_ig" in text
    d = ic.simplify(ic.diff("s = sum_i(a_i b_i c_i)", "b_g"))
    assert d == ic.parse("s_{,g}[b] = a_g c_g")


def test_simplify_keeps_a_delta_that_is_part_of_the_answer():
    # the Jacobian of w_i / x_i by x_j is diagonal: the δ stays
    d = ic.simplify(ic.diff("y_i = w_i / x_i", "x_g"))
    assert any(isinstance(n, Delta) for n in d.rhs.walk())
    arrays = {"w": rand(3), "x": positive(3)}
    np.testing.assert_allclose(ic.evaluate(d, arrays), np.diag(-arrays["w"] / arrays["x"] ** 2))


def test_simplify_takes_every_kind():
    text = "w_ij x_j delta_jg"
    assert isinstance(ic.simplify(text), type(ic.parse(text)))
    eq = ic.diff("y_i = w_ij x_j", "w_gh")
    assert isinstance(ic.simplify(eq), Equation)
    assert isinstance(ic.simplify(ic.diff(MLP2, "W1_gh")), Program)
    assert isinstance(ic.simplify(str(eq)), Equation)


def test_logsumexp_derivative_is_the_softmax():
    """d logsumexp_c(z_c) / dz_g = softmax_g; cross-entropy's gradient is softmax - y."""
    z, y = rand(3, 4), np.eye(4)[[0, 2, 3]]
    arrays = {"z": z, "y": y}
    check("s_n = logsumexp_c(z_nc)", "z_gh", arrays)
    source = "L = mean_n(logsumexp_c(z_nc) - y_nk z_nk)"
    check(source, "z_gh", arrays)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ic.evaluate(ic.simplify(ic.diff(source, "z_gh")), arrays), (p - y) / 3, rtol=1e-10)
    value, grads = ic.compile(source, wrt=["z"])(arrays)
    np.testing.assert_allclose(grads["z"], (p - y) / 3, rtol=1e-10)
    hessian = ic.evaluate(ic.diff(ic.diff("s = logsumexp_c(w_c)", "w_g"), "w_h"), {"w": z[0]})
    q = p[0]
    np.testing.assert_allclose(hessian, np.diag(q) - np.outer(q, q), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("text", ["L = w_i x_i", "L = 2 w_i x_i + c", "y_k = A_kj w_j", "L = sum_i(w_i x_i)^2"])
def test_a_derivative_line_given_alone_is_a_function_of_what_it_differentiates(text):
    """diff of a one-line program gives its derivative line alone, `L_{,g}[w] = x_g`;
    differentiated again by w that was refused ("w does not occur"), where the same line
    after its program gave zeros. Now both give the second derivative, zeros included."""
    rng = np.random.default_rng(2)
    arrays = {"w": rng.normal(size=3), "x": rng.normal(size=3), "c": 0.5, "A": rng.normal(size=(2, 3))}
    alone = ic.diff(ic.diff(text, "w_g"), "w_h")
    with_program = ic.diff(ic.Program(tuple(ic.parse(text + "\nunused = 1").equations[:1]) + (ic.diff(text, "w_g"),)), "w_h")
    want = ic.evaluate(with_program, arrays)
    np.testing.assert_allclose(ic.evaluate(alone, arrays), want, atol=1e-12)
    np.testing.assert_allclose(ic.compile(alone)(arrays)[0], want, atol=1e-12)
