"""`ic.compile`: the loss and all gradients in one planned call.

Every compiled value is checked against `ic.evaluate` of the program, and every compiled
gradient against `ic.evaluate(ic.diff(program, p))` and central finite differences
(float64, eps 1e-6): networks, losses and every construct of the notation, random
well-formed programs (hypothesis), second derivatives compiled from `diff`'s output, the
promise that no δ is materialised for a dense layer, the plan cache, errors, and the
printed plan.
"""

from __future__ import annotations

import re
from math import prod

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc.wrt import expression_equation
from indexcalc.expr import Equation, Program
from strategies import sample
from test_diff import FRESH_WRT, Generator, assert_close, dependencies, finite_difference, truncated, wrt_name

RNG = np.random.default_rng(20240611)


def rand(*shape):
    return RNG.normal(size=shape)


def positive(*shape):
    return RNG.uniform(0.5, 2.0, size=shape)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def check(source, wrt, arrays, *, of=None, fd=True, rtol=1e-9, atol=1e-11):
    """compile(source, wrt)(arrays) gives evaluate's value, and for every parameter the
    gradient diff+evaluate gives and (if `fd`) the central finite differences."""
    f = ic.compile(source, wrt=wrt, of=of)
    value, grads = f(arrays)
    forward = truncated(source, of)
    assert np.ndim(value) == 0, f"value of {source!r} is not a scalar: {value!r}"
    assert_close(value, ic.evaluate(forward, arrays), f"value of {source!r}", rtol=rtol, atol=atol)
    names = [wrt_name(w) for w in wrt]
    assert set(grads) == set(names)
    for w, name in zip(wrt, names):
        got = grads[name]
        assert np.shape(got) == np.shape(arrays[name]), f"gradient by {name}: shape {np.shape(got)}"
        symbolic = ic.evaluate(ic.diff(source, w, of=of), arrays)
        assert_close(got, symbolic, f"compiled d/d{w} of {source!r} vs diff\n{f}", rtol=rtol, atol=atol)
        if fd:
            assert_close(got, finite_difference(source, arrays, name, of), f"compiled d/d{w} of {source!r} vs FD",
                         rtol=1e-5)
    return f, value, grads


# --------------------------------------------------------------------------------------
# Networks and losses


def mlp(activation: str, reduce: str) -> str:
    return (
        f"h_ni = {activation}(W1_ij x_nj + b1_i)\n"
        "yhat_ni = W2_ij h_nj + b2_i\n"
        f"loss = {reduce}_n((yhat_ni - y_ni)(yhat_ni - y_ni))\n"
    )


def mlp_arrays(n=5, sizes=(3, 4, 2)):
    arrays = {"x": rand(n, sizes[0]), "y": rand(n, sizes[-1])}
    for k in range(1, len(sizes)):
        arrays[f"W{k}"] = rand(sizes[k], sizes[k - 1]) * 0.7
        arrays[f"b{k}"] = rand(sizes[k]) * 0.3
    return arrays


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("activation", ["sigma", "tanh", "relu"])
def test_mlp_value_and_gradients(activation, reduce):
    source = mlp(activation, reduce)
    check(source, ["W1", "b1", "W2", "b2"], mlp_arrays())


def test_mlp_gradients_by_fresh_index_forms_and_by_the_data():
    source = mlp("tanh", "mean")
    check(source, ["W1_gh", "b1_g", "W2_kl", "b2", "x_gh"], mlp_arrays())


def test_mlp_gradients_against_backprop_by_hand():
    source = """\
h_ni = tanh(W1_ij x_nj + b1_i)
yhat_ni = sigma(W2_ij h_nj + b2_i)
loss = mean_n((yhat_ni - y_ni)(yhat_ni - y_ni))
"""
    arrays = mlp_arrays(n=6, sizes=(3, 5, 2))
    x, y, W1, b1, W2, b2 = (arrays[k] for k in ("x", "y", "W1", "b1", "W2", "b2"))
    n = x.shape[0]
    h = np.tanh(x @ W1.T + b1)
    yhat = sigmoid(h @ W2.T + b2)
    d_u2 = 2 * (yhat - y) / n * yhat * (1 - yhat)
    d_u1 = d_u2 @ W2 * (1 - h**2)
    expected = {"W2": d_u2.T @ h, "b2": d_u2.sum(0), "W1": d_u1.T @ x, "b1": d_u1.sum(0)}
    value, grads = ic.compile(source, wrt=list(expected))(arrays)
    np.testing.assert_allclose(value, np.mean(np.sum((yhat - y) ** 2, axis=1)), rtol=1e-12)
    for name, grad in expected.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_three_layer_mlp():
    source = """\
h1_ni = tanh(W1_ij x_nj + b1_i)
h2_ni = relu(W2_ij h1_nj + b2_i)
yhat_ni = W3_ij h2_nj + b3_i
loss = mean_n((yhat_ni - y_ni)(yhat_ni - y_ni))
"""
    check(source, ["W1", "b1", "W2", "b2", "W3", "b3"], mlp_arrays(n=4, sizes=(3, 4, 3, 2)))


def test_softmax_cross_entropy():
    source = """\
z_ni = W_ij x_nj + b_i
p_ni = exp(z_ni) / sum_j(exp(z_nj))
L = -mean_n(sum_i(t_ni log(p_ni)))
"""
    n, k, c = 6, 4, 3
    t = np.eye(c)[RNG.integers(0, c, size=n)]
    arrays = {"x": rand(n, k), "W": rand(c, k), "b": rand(c), "t": t}
    f, value, grads = check(source, ["W", "b", "x"], arrays)
    z = arrays["x"] @ arrays["W"].T + arrays["b"]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(value, -np.mean(np.log(p[t == 1])), rtol=1e-12)
    np.testing.assert_allclose(grads["b"], (p - t).mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["W"], (p - t).T @ arrays["x"] / n, rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_in_one_line():
    arrays = {"z": rand(5), "t": np.eye(5)[2]}
    f, value, grads = check("L = -t_i log(exp(z_i) / sum_j(exp(z_j)))", ["z"], arrays)
    p = np.exp(arrays["z"]) / np.exp(arrays["z"]).sum()
    np.testing.assert_allclose(grads["z"], p - arrays["t"], rtol=1e-10, atol=1e-12)


def test_logistic_regression_losses():
    n, k = 8, 3
    X, w = rand(n, k), rand(k)
    labels = (RNG.uniform(size=n) > 0.5).astype(float)
    p = sigmoid(X @ w)
    gradient = X.T @ (p - labels) / n
    f, value, grads = check("z_n = X_nj w_j\nL = mean_n(log(1 + exp(-y_n z_n)))", ["w", "X"],
                            {"X": X, "w": w, "y": 2 * labels - 1})
    np.testing.assert_allclose(grads["w"], gradient, rtol=1e-10, atol=1e-12)
    source = "p_n = sigma(X_nj w_j)\nL = -mean_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))"
    f, value, grads = check(source, ["w"], {"X": X, "w": w, "y": labels})
    np.testing.assert_allclose(grads["w"], gradient, rtol=1e-10, atol=1e-12)
    check("L = mean_n(log(1 + exp(-y_n X_nj w_j)))", ["w"], {"X": X, "w": w, "y": 2 * labels - 1})


def test_reductions_inside_functions():
    arrays = {"w": rand(4), "x": rand(4), "m": rand(3, 4)}
    check("L = log(sum_i(exp(w_i x_i)))", ["w", "x"], arrays)
    check("L = sqrt(1 + sum_i(w_i w_i)) + exp(mean_j(w_j x_j))", ["w", "x"], arrays)
    check("r_k = tanh(mean_j(m_kj w_j)) sigma(sum_i(w_i))\nL = sum_k(r_k r_k)", ["w", "m"], arrays)
    check("L = sum_k(log(1 + sum_j(exp(m_kj x_j))))", ["m", "x"], arrays)


def test_scalar_parameters():
    arrays = {"a": 0.7, "c": -0.3, "x": rand(6), "y": rand(6)}
    f, value, grads = check("L = mean_n((a x_n + c - y_n)(a x_n + c - y_n))", ["a", "c"], arrays)
    assert np.shape(grads["a"]) == () and np.shape(grads["c"]) == ()
    r = arrays["a"] * arrays["x"] + arrays["c"] - arrays["y"]
    np.testing.assert_allclose(grads["a"], 2 * np.mean(r * arrays["x"]), rtol=1e-12)
    np.testing.assert_allclose(grads["c"], 2 * np.mean(r), rtol=1e-12)
    check("h_i = tanh(a x_i + c)\nL = sigma(a) h_i h_i + c c", ["a", "c", "x"], arrays)
    check("L = a c", ["a"], {"a": 0.5, "c": 2.0})


def test_trace():
    m = rand(4, 4)
    f, value, grads = check("t = m_ii", ["m"], {"m": m})
    np.testing.assert_allclose(grads["m"], np.eye(4))
    check("t = m_ii\nL = t t + w_i m_ij w_j", ["m", "w"], {"m": m, "w": rand(4)})
    check("s = sum_i(m_ii x_i)", ["m", "x"], {"m": m, "x": rand(4)})
    check("t = a_ij a_ji", ["a"], {"a": rand(3, 3)})


def test_deltas_in_a_program():
    arrays = {"w": rand(3), "x": rand(3), "A": rand(2, 3), "B": rand(2, 3)}
    check("y_i = delta_ij w_j + x_i\nL = y_i y_i", ["w", "x"], arrays)
    check("L = w_i δ_ij x_j + A_mp δ_(mp)(kl) B_kl", ["w", "x", "A", "B"], arrays)
    check("y_ij = delta_ij + w_i x_j\nL = sum_ij(y_ij y_ij)", ["w", "x"], arrays)


def test_index_summed_over_three_factors():
    arrays = {"a": rand(4), "b": rand(4), "c": rand(4), "x": rand(5, 4), "y": rand(5)}
    f, value, grads = check("s = sum_i(a_i b_i c_i)", ["a", "b", "c"], arrays)
    np.testing.assert_allclose(grads["b"], arrays["a"] * arrays["c"], rtol=1e-12)
    check("s = sum_i(x_ni a_i b_i) y_n", ["a", "b", "x", "y"], arrays)
    check("s = sum_n(tanh(sum_i(x_ni a_i a_i)))", ["a", "x"], arrays)


def test_subscripted_functions():
    arrays = {"W": rand(3, 4), "x": rand(5, 4), "w": rand(3, 4), "v": rand(4)}
    check("h_ni = σ_i(W_jk x_nk)\nL = mean_n(h_ni h_ni)", ["W", "x"], arrays)
    check("h_ni = tanh_i(W_jk x_nk)\nL = sum_ni(h_ni)", ["W", "x"], arrays)
    check("y_i = σ_i(w_jk v_k)\nL = y_i y_i", ["w", "v"], arrays)


def test_powers_and_quotients():
    arrays = {"w": rand(4), "x": positive(4), "v": rand(3), "s": 1.3}
    check("L = sum_i(w_i^3) + sum_i(x_i / (1 + w_i^2))", ["w", "x"], arrays)
    check("L = (w_i w_i)^0.5 + (v_j v_j)^-1", ["w", "v"], arrays)
    check("L = (w_i x_i)^2 / (1 + v_j v_j)", ["w", "x", "v"], arrays)
    check("L = sum_i(x_i ^ s) + s^3 / sum_j(x_j) + 2^s", ["x", "s"], arrays)
    check("L = sum_i(1 / x_i^2) + w_i / x_i", ["w", "x"], arrays)


def test_the_same_argument_used_twice():
    arrays = {"w": rand(4), "x": rand(4), "X": rand(5, 4)}
    check("L = sigma(w_i x_i) + tanh(w_i x_i) + sigma(w_j x_j) sigma(x_k w_k)", ["w", "x"], arrays)
    check("h_n = tanh(X_nj w_j)\ng_n = sigma(X_nk w_k)\nL = mean_n(h_n g_n) + mean_n(tanh(X_nl w_l))",
          ["w", "X"], arrays)
    check("y_n = sigma(X_nj w_j)\nL = mean_n(y_n y_n) + sum_n(y_n)", ["w"], arrays)


def test_a_parameter_used_in_several_lines():
    arrays = {"W": rand(3, 3) * 0.5, "x": rand(4, 3), "b": rand(3)}
    source = "h_ni = tanh(W_ij x_nj + b_i)\ng_ni = tanh(W_ij h_nj + b_i)\nL = mean_n(g_ni g_ni)"
    check(source, ["W", "b", "x"], arrays)


def test_of_picks_the_equation():
    source = "p_n = sigma(X_nj w_j)\nL = mean_n(p_n p_n)\nM = sum_n(p_n)"
    arrays = {"X": rand(5, 3), "w": rand(3)}
    check(source, ["w"], arrays, of="L")
    check(source, ["w", "X"], arrays)


def test_float32_inputs():
    source = mlp("tanh", "mean")
    arrays64 = mlp_arrays(n=8, sizes=(4, 6, 3))
    arrays32 = {k: v.astype(np.float32) for k, v in arrays64.items()}
    wrt = ["W1", "b1", "W2", "b2"]
    value, grads = ic.compile(source, wrt=wrt)(arrays32)
    expected_value, expected = ic.compile(source, wrt=wrt)(arrays64)
    assert np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name in wrt:
        assert grads[name].dtype == np.float32, f"{name}: {grads[name].dtype}"
        assert grads[name].shape == arrays32[name].shape
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(source, name), arrays32), rtol=1e-4,
                                   atol=1e-5, err_msg=name)


def test_float32_softmax_and_scalar():
    source = "z_ni = W_ij x_nj + b_i\np_ni = exp(z_ni) / sum_j(exp(z_nj))\nL = -mean_n(sum_i(t_ni log(p_ni))) + c c"
    arrays = {"x": rand(6, 4), "W": rand(3, 4), "b": rand(3), "t": np.eye(3)[RNG.integers(0, 3, 6)], "c": rand()}
    arrays32 = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    value, grads = ic.compile(source, wrt=["W", "b", "c"])(arrays32)
    assert np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-5)
    for name in ("W", "b", "c"):
        assert np.asarray(grads[name]).dtype == np.float32, name
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(source, name), arrays), rtol=1e-4, atol=1e-5)


def test_without_wrt_the_callable_evaluates_the_program():
    arrays = mlp_arrays()
    source = mlp("sigma", "mean")
    value, grads = ic.compile(source)(arrays)
    assert grads == {}
    np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12)
    value, grads = ic.compile(source, of="yhat")(arrays)
    np.testing.assert_allclose(value, ic.evaluate(truncated(source, "yhat"), arrays), rtol=1e-12)
    assert np.shape(value) == (5, 2)
    value, _ = ic.compile("w_ij x_j")({"w": rand(2, 3), "x": rand(3)})
    assert np.shape(value) == (2,)


def test_compile_takes_parsed_objects():
    arrays = mlp_arrays()
    source = mlp("tanh", "sum")
    parsed = ic.parse(source)
    assert isinstance(parsed, Program)
    value, grads = ic.compile(parsed, wrt="W1")(arrays)
    np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12)
    np.testing.assert_allclose(grads["W1"], ic.evaluate(ic.diff(source, "W1"), arrays), rtol=1e-10, atol=1e-12)
    eq = ic.parse("L = w_i x_i w_j x_j")
    assert isinstance(eq, Equation)
    value, grads = ic.compile(eq, wrt=["w"])({"w": rand(3), "x": rand(3)})
    assert grads["w"].shape == (3,)


def test_bare_scalar_expression():
    arrays = {"w": rand(3), "x": rand(3)}
    check("tanh(w_i x_i) + w_j w_j", ["w", "x"], arrays)


def test_update_rule_with_a_comma_derivative_compiles():
    source = "p_n = sigma(X_nj w_j)\nL = mean_n(p_n p_n)\nw_new_g = w_g - eta L_{,(g)}[w]"
    arrays = {"X": rand(5, 3), "w": rand(3), "eta": 0.1}
    value, grads = ic.compile(source)(arrays)
    assert grads == {}
    np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12)


def test_bare_expressions_whose_free_letter_an_inner_scope_uses():
    """A bare expression's free letter is not fixed inside its scopes (as evaluate reads it)."""
    arrays = {"x": rand(3), "y": rand(3), "z": rand(3), "T0": rand(2), "value": rand(3), "f": rand(3)}
    for source in ("x_i sigma(y_i z_i)", "sigma_μ(sigma_i(T0_μ))", "value_i x_i", "f_i x_i"):
        value, _ = ic.compile(source)(arrays)
        np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12, err_msg=source)
    check("value_i x_i", ["x", "value"], arrays)


def test_relabelled_call_that_reads_a_diagonal():
    """σ_i(T_ji) with i fixed outside is σ(T_ii)."""
    arrays = {"T0": rand(3, 3), "T4": rand(3, 3, 2, 2), "x": rand(3)}
    for source in ("y_i = sigma_i(T0_ji)", "y_i = sigma(sigma_i(T0_ji)) x_i"):
        value, _ = ic.compile(source)(arrays)
        np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12, err_msg=source)
    check("y = sum_i(sigma(sigma_i(T0_ji)))", ["T0"], arrays)
    check("y = sum_i(x_i tanh(sigma_i(T4_jikk)))", ["T4", "x"], arrays)
    check("y_i = sigma_i(T0_ji)\nL = sum_i(y_i y_i)", ["T0"], arrays)


def test_relabel_onto_a_letter_that_a_reduction_inside_sums():
    # sigma_p relabels j to p while sum_p inside sums a p of its own (diff got a δ_(ipp) here)
    source = "y1_ki = sigma_k(sigma_p(sum_p(T0_ijp)))\nZ = sum_ki(y1_ki y1_ki)"
    check(source, ["T0"], {"T0": rand(2, 3, 3)})


def test_adjoint_letters_do_not_capture_an_inner_scope():
    """The adjoint of #u_ij is written on i and j; an inner scope of the line that uses it
    with a j (a trace, a relabelled argument) of its own keeps it apart."""
    arrays = {"T0": rand(2, 3, 2, 2), "T1": rand(2, 3), "T2": rand(3, 2, 2), "T3": rand(3)}
    check("L = sum_j(sigma(T0_ijkk) * T1_ij / (1 + (T2_jii)^2))^2", ["T0", "T1", "T2"], arrays)
    arrays = {"T0": rand(3, 3, 2, 2), "T1": rand(3), "T2": rand(3, 3)}
    check("L = sum_i(sigma(T0_ijkk) * sigma_i(T1_j) * 2 / (1 + (T2_ij)^2))", ["T0", "T1", "T2"], arrays)


def test_named_argument_does_not_capture_a_trace_inside_it():
    # the argument of σ_i is computed as a line #u_ijk; its free k must not fix the trace kk
    # that the power holds of its own (nor the one δ elimination leaves beside T1_kij)
    arrays = {"T0": rand(1, 2, 2, 2), "T1": rand(2, 2, 1), "x": rand(2)}
    for line in ("y_ij = sigma_i(T0_jikk^2 * delta_kl * 2 / (1 + (T1_lij)^2))", "y_ij = sigma_i(T0_jikk^2 x_k)"):
        value, _ = ic.compile(line)(arrays)
        np.testing.assert_allclose(value, ic.evaluate(line, arrays), rtol=1e-12, err_msg=line)
        check(line + "\nZ = sum_ij(y_ij y_ij)", ["T0", "T1"] if "x_k" not in line else ["T0", "x"], arrays)


def test_equal_looking_adjoints_of_different_sizes_are_not_shared():
    # T9 and T10 get the same adjoint text (... δ_rs), but r and s have T9's sizes or T10's
    source = "y_i = sum_j((T6_ijk + 2) T7_jk (T8_ji + T9_jill + T10_jimm))\nZ = sum_i(y_i y_i)"
    arrays = {"T6": rand(2, 3, 2), "T7": rand(3, 2), "T8": rand(3, 2), "T9": rand(3, 2, 2, 2), "T10": rand(3, 2, 1, 1)}
    check(source, ["T9", "T10"], arrays)


def test_a_parameter_that_simplifies_away_has_a_zero_gradient():
    # tanh(1.5 - 1.5) folds to 0: T0 occurs, and its gradient is zeros shaped like it
    f, value, grads = check("T0_ii * tanh((1.5 - 1.5))", ["T0"], {"T0": rand(2, 2)})
    np.testing.assert_array_equal(grads["T0"], np.zeros((2, 2)))
    with pytest.raises(ic.MissingArrayError, match="T0"):
        f({})


def test_gradient_of_a_trace_inside_a_quotient():
    arrays = {"T0": rand(2, 3, 3)}
    f, value, grads = check("E_i = 2 * 2 / (1 + (T0_ijj)^2)\nZ = sum_i(E_i E_i)", ["T0"], arrays)


# --------------------------------------------------------------------------------------
# Property-based: random well-formed scalar programs


def scalar_program(text: str) -> str:
    """The generated program with a last line that makes it a scalar: `Z = sum_a(y_a y_a)`."""
    node = ic.parse(text)
    if not isinstance(node, (Program, Equation)):
        if not ic.free_indices(node):
            return text
        # a bare expression as an equation, its free letters moved where an inner scope uses them
        node = expression_equation(node)
    lines = node.lines
    lhs = lines[-1].lhs
    letters = "".join(lhs.all_indices)
    if not letters:
        return text
    return f"{Program(tuple(lines))}\nZ = sum_{letters}({lhs.key}_{letters} {lhs.key}_{letters})"


@st.composite
def compile_cases(draw):
    gen = Generator(draw(st.data()))
    text = gen.program()
    scalar = scalar_program(text)
    depends = sorted(dependencies(ic.parse(scalar)))
    assume(depends)
    chosen = draw(st.lists(st.sampled_from(depends), min_size=1, max_size=len(depends), unique=True))
    wrt = []
    for name in chosen:
        count = len(gen.inputs[name])
        wrt.append(name + "_" + "".join(FRESH_WRT[:count]) if count and draw(st.booleans()) else name)
    arrays = gen.arrays(draw(st.integers(0, 2**32 - 1)))
    return text, scalar, wrt, arrays


@sample(60)
@given(compile_cases())
def test_random_programs_compile_to_evaluate_and_diff(case):
    text, scalar, wrt, arrays = case
    # without wrt: the program's value, whatever its shape
    value, grads = ic.compile(text)(arrays)
    assert grads == {}
    assert_close(value, ic.evaluate(text, arrays), f"compiled value of\n{text}", rtol=1e-9, atol=1e-11)
    # with wrt: the scalar and every gradient
    full = np.asarray(ic.evaluate(text, arrays))
    expected = full if scalar == text else np.sum(full * full)
    assert_close(ic.evaluate(scalar, arrays), expected, f"the scalar form of\n{text}\nis\n{scalar}")
    f = ic.compile(scalar, wrt=wrt)
    value, grads = f(arrays)
    assert_close(value, ic.evaluate(scalar, arrays), f"compiled value of\n{scalar}\n{f}", rtol=1e-9, atol=1e-11)
    assert set(grads) == {wrt_name(w) for w in wrt}
    for w in wrt:
        name = wrt_name(w)
        expected = ic.evaluate(ic.diff(scalar, w), arrays)
        assert np.shape(grads[name]) == np.shape(arrays[name])
        assert_close(grads[name], expected, f"compiled d/d{w} of\n{scalar}\n{f}", rtol=1e-8, atol=1e-10)
    # a second call on the same shapes gives the same numbers without planning again
    again, grads_again = f(arrays)
    assert f.plan_count == 1
    assert_close(again, value, "second call", rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Second derivatives


def test_logistic_regression_hessian():
    n, k = 9, 3
    X, w = rand(n, k), rand(k)
    y = RNG.choice([-1.0, 1.0], size=n)
    source = "z_n = X_nj w_j\nL = mean_n(log(1 + exp(-y_n z_n)))"
    f = ic.compile(ic.diff(ic.diff(source, "w_g"), "w_h"))
    hessian, grads = f({"X": X, "w": w, "y": y})
    assert grads == {}
    p = sigmoid(X @ w)
    expected = X.T @ np.diag(p * (1 - p)) @ X / n
    assert np.shape(hessian) == (k, k)
    np.testing.assert_allclose(hessian, expected, rtol=1e-9, atol=1e-12)
    simplified = ic.compile(ic.simplify(ic.diff(ic.diff(source, "w_g"), "w_h")))
    np.testing.assert_allclose(simplified({"X": X, "w": w, "y": y})[0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("first, second", [("W1_gh", "W1_kl"), ("W1_gh", "b2_k"), ("b1_g", "W2_kl"), ("W2_gh", "x_kl")])
def test_mlp_hessian_equals_finite_differences_of_compiled_gradients(first, second):
    source = """\
h_ni = tanh(W1_ij x_nj + b1_i)
yhat_ni = sigma(W2_ij h_nj + b2_i)
loss = mean_n((yhat_ni - y_ni)(yhat_ni - y_ni))
"""
    arrays = mlp_arrays(n=3, sizes=(2, 3, 2))
    hessian, _ = ic.compile(ic.diff(ic.diff(source, first), second))(arrays)
    a, b = wrt_name(first), wrt_name(second)
    gradient = ic.compile(source, wrt=[a])
    eps = 1e-6
    expected = np.zeros(np.shape(arrays[a]) + np.shape(arrays[b]))
    for idx in np.ndindex(np.shape(arrays[b])):
        up, down = arrays[b].copy(), arrays[b].copy()
        up[idx] += eps
        down[idx] -= eps
        column = (gradient({**arrays, b: up})[1][a] - gradient({**arrays, b: down})[1][a]) / (2 * eps)
        expected[(Ellipsis,) + idx] = column
    assert_close(hessian, expected, f"Hessian {first}, {second}", rtol=1e-5)
    assert gradient.plan_count == 1


def test_jacobian_with_a_delta_in_the_answer():
    w, x = rand(4), positive(4)
    expected = np.diag(-w / x**2)
    d = ic.diff("y_i = w_i / x_i", "x_j")
    for source in (d, ic.simplify(d)):
        f = ic.compile(source)
        value, grads = f({"w": w, "x": x})
        assert grads == {}
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-15)
    assert any(isinstance(node, ic.Delta) for node in ic.simplify(d).rhs.walk())  # kept: part of the answer
    # the same Jacobian written with the δ's other letter on the factors
    value, _ = ic.compile("J_ij = -w_j x_j^-2 delta_ij")({"w": w, "x": x})
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("source", [
    "y_ij = delta_ij x_j",
    "y_ij = c delta_ij x_j",
    "y_ij = x_i delta_ij",
    "y_ij = x_i z_j delta_ij",
    "y_ij = c delta_ij + x_i x_j",
    "y_ijk = delta_ij delta_kj x_k",
    "y_ijk = delta_ij delta_jk x_k",
    "y_ijk = delta_ij m_jk",
    "y_ijk = delta_ij delta_jk m_ik",
    "y_ijkl = delta_ij delta_kl m_jl",
    "y_ijkl = delta_ik delta_jl m_ij",
    "y_ijk = t_kij delta_ik delta_jk",
    "y_ijk = c delta_ik delta_jk x_j + m_ij x_k",
    "y_ijkl = delta_ij delta_kl x_i z_k",
    "y_ijkl = delta_ij delta_jk delta_kl x_l",
    "y_i = sum_j(delta_ij x_j) + delta_ik z_k",
])
def test_deltas_in_the_answer(source):
    """A δ between two free letters is put on a diagonal (or kept as a mask), whichever
    of its letters the other factors carry; a Python number as a factor works too."""
    arrays = {"c": 2.0, "x": rand(3), "z": rand(3), "m": rand(3, 3), "t": rand(3, 3, 3)}
    value, grads = ic.compile(source)(arrays)
    np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12, atol=1e-15)
    arrays32 = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    value, _ = ic.compile(source)(arrays32)
    assert value.dtype == np.float32


# --------------------------------------------------------------------------------------
# Memory: no δ and no Jacobian is materialised


def largest_forward(f, arrays) -> int:
    """The largest input or forward line's result, in elements (the compiled form's lines,
    where a mean is a sum times a constant `#mean`, given here as 1)."""
    known = {**arrays, **{key: 1.0 for key in f.scales}}
    sizes = [int(np.size(a)) for a in arrays.values()]
    for k in range(len(f.forward)):
        sizes.append(int(np.size(ic.evaluate(Program(tuple(f.forward[: k + 1])), known))))
    return max(sizes)


def assert_no_big_steps(f, arrays, limit):
    steps = f._last.lowering.steps
    for step in steps:
        assert "identity" not in step.routine, f"a δ is materialised: {step}\n{f}"
        assert prod(step.shape) <= limit, f"step {step} is larger than {limit} elements\n{f}"


def test_no_delta_is_materialised_for_a_dense_layer():
    n, i, j = 64, 32, 48
    source = "h_ni = sigma(W_ij x_nj + b_i)\nloss = mean_n(h_ni h_ni)"
    arrays = {"W": rand(i, j) * 0.2, "x": rand(n, j), "b": rand(i)}
    f = ic.compile(source, wrt=["W", "b"])
    value, grads = f(arrays)
    limit = max(max(a.size for a in arrays.values()), n * i)  # inputs; u_ni and h_ni
    assert limit == largest_forward(f, arrays)
    assert_no_big_steps(f, arrays, limit)
    h = sigmoid(arrays["x"] @ arrays["W"].T + arrays["b"])
    d_u = 2 * h / n * h * (1 - h)
    np.testing.assert_allclose(value, np.mean(np.sum(h * h, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(grads["W"], d_u.T @ arrays["x"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads["b"], d_u.sum(0), rtol=1e-10, atol=1e-13)


def deep_arrays(n, sizes):
    arrays = {"x": rand(n, sizes[0]), "t": np.eye(sizes[-1])[RNG.integers(0, sizes[-1], n)]}
    for k in range(1, len(sizes)):
        arrays[f"W{k}"] = rand(sizes[k], sizes[k - 1]) * 0.3
        arrays[f"b{k}"] = rand(sizes[k]) * 0.1
    return arrays


def test_no_step_larger_than_the_activations_in_a_deeper_network():
    source = """\
h1_ni = tanh(W1_ij x_nj + b1_i)
h2_ni = relu(W2_ij h1_nj + b2_i)
z_ni = W3_ij h2_nj + b3_i
L = mean_n(sum_i((z_ni - t_ni)(z_ni - t_ni)))
"""
    arrays = deep_arrays(40, (30, 20, 25, 10))
    f = ic.compile(source, wrt=["W1", "b1", "W2", "b2", "W3", "b3", "x"])
    value, grads = f(arrays)
    assert_no_big_steps(f, arrays, largest_forward(f, arrays))
    for name in ("W1", "b2", "x"):
        assert_close(grads[name], ic.evaluate(ic.diff(source, name), arrays), name, rtol=1e-9, atol=1e-11)


def test_no_jacobian_is_materialised_for_softmax_cross_entropy():
    source = """\
h1_ni = tanh(W1_ij x_nj + b1_i)
z_ni = W2_ij h1_nj + b2_i
p_ni = exp(z_ni) / sum_j(exp(z_nj))
L = -mean_n(sum_i(t_ni log(p_ni)))
"""
    arrays = deep_arrays(40, (30, 20, 10))
    f = ic.compile(source, wrt=["W1", "b1", "W2", "b2"])
    value, grads = f(arrays)
    for name in ("W1", "b2"):  # the numbers are right; the memory is not
        assert_close(grads[name], ic.evaluate(ic.diff(source, name), arrays), name, rtol=1e-9, atol=1e-11)
    assert_no_big_steps(f, arrays, largest_forward(f, arrays))


# --------------------------------------------------------------------------------------
# The plan cache


def test_plan_is_made_once_per_shape_signature():
    source = mlp("tanh", "mean")
    wrt = ["W1", "b1", "W2", "b2"]
    f = ic.compile(source, wrt=wrt)
    assert f.plan_count == 0
    arrays = mlp_arrays(n=5)
    first_value, first_grads = f(arrays)
    plan = f._last
    assert f.plan_count == 1
    for _ in range(3):
        value, grads = f(arrays)
        assert f.plan_count == 1 and f._last is plan
    np.testing.assert_array_equal(value, first_value)
    # another batch size: planned once, and the numbers are right
    other = {**arrays, "x": rand(9, 3), "y": rand(9, 2)}
    value, grads = f(other)
    assert f.plan_count == 2 and f._last is not plan
    second = f._last
    value, grads = f(other)
    assert f.plan_count == 2 and f._last is second
    np.testing.assert_allclose(value, ic.evaluate(source, other), rtol=1e-12)
    for name in wrt:
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(source, name), other), rtol=1e-10, atol=1e-12)
    # back to the first shapes: the first plan again
    value, grads = f(arrays)
    assert f.plan_count == 2 and f._last is plan
    np.testing.assert_array_equal(value, first_value)
    # new values on known shapes use the known plan and give the new numbers
    fresh = {**arrays, "W1": rand(4, 3)}
    value, grads = f(fresh)
    assert f.plan_count == 2 and f._last is plan
    np.testing.assert_allclose(value, ic.evaluate(source, fresh), rtol=1e-12)
    np.testing.assert_allclose(grads["W1"], ic.evaluate(ic.diff(source, "W1"), fresh), rtol=1e-10, atol=1e-12)


def test_the_results_are_not_the_callers_arrays_and_a_call_does_not_change_its_inputs():
    source = "L = w_i w_i"
    f = ic.compile(source, wrt=["w"])
    w = rand(3)
    keep = w.copy()
    _, grads = f({"w": w})
    grads["w"][...] = 0.0
    np.testing.assert_array_equal(w, keep)
    _, grads = f({"w": w})
    np.testing.assert_allclose(grads["w"], 2 * keep)


def test_the_mean_constant_follows_the_batch_size():
    f = ic.compile("L = mean_n(x_n w_n)", wrt=["w"])
    for n in (2, 5, 3):
        x, w = rand(n), rand(n)
        value, grads = f({"x": x, "w": w})
        np.testing.assert_allclose(value, np.mean(x * w), rtol=1e-12)
        np.testing.assert_allclose(grads["w"], x / n, rtol=1e-12)
    assert f.plan_count == 3


# --------------------------------------------------------------------------------------
# Errors


def test_non_scalar_target_with_wrt():
    with pytest.raises(ic.IndexCalcError, match="scalar"):
        ic.compile("y_i = w_ij x_j", wrt=["w"])
    with pytest.raises(ic.IndexCalcError, match="scalar"):
        ic.compile(mlp("tanh", "mean"), wrt=["W1"], of="h")


def test_wrt_that_does_not_occur():
    with pytest.raises(ic.IndexCalcError, match="W3"):
        ic.compile(mlp("tanh", "mean"), wrt=["W1", "W3"])
    with pytest.raises(ic.IndexCalcError, match="v"):
        ic.compile("L = w_i x_i", wrt="v_g")
    # a tensor of an earlier line the target does not use is not a parameter of the target
    with pytest.raises(ic.IndexCalcError, match="q"):
        ic.compile("a_i = q_i\nL = w_i x_i", wrt=["q"])


def test_wrt_with_the_wrong_number_of_indices():
    with pytest.raises(ic.IndexCalcError, match="W1"):
        ic.compile(mlp("tanh", "mean"), wrt=["W1_g"])
    with pytest.raises(ic.IndexCalcError, match="b1"):
        ic.compile(mlp("tanh", "mean"), wrt=["b1_gh"])


def test_wrt_that_is_not_a_tensor_name():
    for bad in (3, "w_", "w_{,g}", "1 + w"):
        with pytest.raises(ic.IndexCalcError):
            ic.compile("L = w_i x_i", wrt=[bad])


def test_of_naming_nothing_and_bad_source():
    with pytest.raises(ic.IndexCalcError, match="q"):
        ic.compile("L = w_i x_i", wrt=["w"], of="q")
    with pytest.raises(ic.ParseError):
        ic.compile("L = w_i x_i +", wrt=["w"])
    with pytest.raises(ic.IndexCalcError):
        ic.compile(42, wrt=["w"])
    with pytest.raises(ic.IndexNotationError):
        ic.compile("y_ik = w_ij x_j")


def test_missing_array_at_call_time():
    f = ic.compile(mlp("tanh", "mean"), wrt=["W1"])
    arrays = mlp_arrays()
    del arrays["y"]
    with pytest.raises(ic.MissingArrayError, match="'y'"):
        f(arrays)
    arrays = mlp_arrays()
    del arrays["W1"]
    with pytest.raises(ic.MissingArrayError, match="'W1'"):
        f(arrays)
    assert issubclass(ic.MissingArrayError, ic.IndexCalcError)


def test_non_numeric_arrays():
    f = ic.compile("L = w_ij x_i x_j", wrt=["w"])
    x = rand(2)
    for bad in (np.array([["a", "b"], ["c", "d"]]), "ab", None, np.ones((2, 2)) * 1j,
                np.array([[object(), 1], [2, 3]], dtype=object)):
        with pytest.raises(ic.IndexCalcError, match="'w'"):
            f({"w": bad, "x": x})
    with pytest.raises(ic.IndexCalcError):
        f([1.0, 2.0])
    with pytest.raises(ic.IndexCalcError):
        f({"w": [[1.0, 2.0], [3.0]], "x": x})  # not rectangular
    # after the errors the callable still works
    w = rand(2, 2)
    value, grads = f({"w": w, "x": x})
    np.testing.assert_allclose(grads["w"], np.outer(x, x), rtol=1e-12)


def test_sizes_that_disagree():
    f = ic.compile("L = w_ij x_i x_j", wrt=["w"])
    with pytest.raises(ic.ShapeError, match="j"):
        f({"w": rand(2, 3), "x": rand(2)})
    with pytest.raises(ic.IndexCalcError):
        f({"w": rand(2), "x": rand(2)})


def test_inputs_as_evaluate_takes_them():
    """Lists, Python numbers, integers and booleans, as `evaluate` takes them."""
    source = "p_n = sigma(X_nj w_j)\nL = -mean_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))"
    X, w = rand(4, 2), rand(2)
    y = np.array([True, False, True, True])
    f = ic.compile(source, wrt=["w"])
    for arrays in ({"X": X, "w": w, "y": y}, {"X": X.tolist(), "w": w.tolist(), "y": y.astype(int)},
                   {"X": X, "w": w, "y": [1.0, 0.0, 1.0, 1.0]}):
        value, grads = f(arrays)
        np.testing.assert_allclose(value, ic.evaluate(source, arrays), rtol=1e-12)
        np.testing.assert_allclose(grads["w"], ic.evaluate(ic.diff(source, "w"), arrays), rtol=1e-10, atol=1e-12)
    g = ic.compile("L = sum_i((x_i - y_i)(x_i - y_i))", wrt=["x"])
    value, grads = g({"x": np.array([1, 2]), "y": np.array([0, 5])})
    assert value == 10 and np.allclose(grads["x"], [2, -6])


# --------------------------------------------------------------------------------------
# The printed plan


def test_print_before_and_after_a_call():
    f = ic.compile(mlp("sigma", "mean"), wrt=["W1", "b1", "W2", "b2"])
    before = str(f)
    assert "loss" in before and "sigma" in before and "W1" in before
    assert repr(f) == before
    f(mlp_arrays())
    after = str(f)
    assert after != before
    assert "matmul" in after
    for step in f._last.lowering.steps:
        assert step.routine in after and step.out in after
        if step.spec:
            assert step.spec in after
    assert len(after.splitlines()) >= len(f._last.lowering.steps)


def test_hessian_vector_product_never_builds_the_hessian():
    """hv_g = L_{,gh}[w] v_h compiles to X^T (s ⊙ (X v)) / n: no d×d step."""
    n, d = 40, 7
    X, w, v = rand(n, d), rand(d), rand(d)
    y = RNG.choice([-1.0, 1.0], size=n)
    source = "z_n = X_nj w_j\nL = mean_n(softplus(-y_n z_n))\nhv_g = L_{,gh}[w] v_h"
    f = ic.compile(source)
    hv, _ = f({"X": X, "w": w, "y": y, "v": v})
    p = 1 / (1 + np.exp(-(X @ w)))
    np.testing.assert_allclose(hv, X.T @ (p * (1 - p) * (X @ v)) / n, rtol=1e-10)
    assert all(step.shape != (d, d) for step in f._last.lowering.steps), str(f)


def test_a_compiled_zero_hessian_is_sized_by_the_line_it_differentiates():
    """The Hessian of m_r = max_s(T_rs) is 0: it reads nothing, and its letter r gets its
    size from m's line, which the compiled program must keep (found by the cross-route
    property once its generator drew matrix functions too)."""
    h = ic.diff(ic.diff("u_rs = 2 T_rs\nm_r = max_s(u_rs)", "T_ab"), "T_cd")
    T = np.random.default_rng(0).uniform(-1, 1, (2, 3))
    value, _ = ic.compile(h)({"T": T})
    np.testing.assert_array_equal(value, ic.evaluate(h, {"T": T}))
    assert value.shape == (2, 2, 3, 2, 3) and not value.any()


def test_compile_inlines_a_derivative_chain_past_the_inline_limit():
    """Found by the soak (seed 9200): a Hessian through a layer norm's Jacobian line was
    refused by compile with InlineTooLargeError, a limit meant for diff(inline=True) (a
    formula to simplify and print); compile's plan takes it in under a second."""
    text = """mu = mean_m(v1_m)
xc_m = v1_m - mu
var = mean_m(xc_m xc_m)
ln_m = v2_m xc_m / sqrt(var + 0.1)
loss = mean_r(log(1 + ln_r^2))
jac_rl = ln_{r,(l)}[v1]
L = v3_rl jac_rl"""
    rng = np.random.default_rng(0)
    arrays = {"v1": rng.normal(size=3), "v2": rng.normal(size=3), "v3": rng.normal(size=(3, 3))}
    hessian = ic.diff(ic.diff(text, "v1_a"), "v1_α")
    np.testing.assert_allclose(ic.compile(hessian)(arrays)[0], ic.evaluate(hessian, arrays), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("text", [
    "e_n = (x_ni w_i - y_n)^2\nL = mean_n(e_n)",
    "e_n = (x_ni w_i - y_n)^2\nL = sum_n(e_n)",
    "e_n = (x_ni w_i - y_n)^2\nL = 0.5 sum_n(e_n) + mean_m(e_m)",
])
def test_the_mean_of_a_line_of_per_sample_losses_plans_no_n_by_n_array(text):
    """The adjoint of mean_n(e_n) by e is Σ_n δ_nm / N: ones over m, once an n×n identity
    summed (0.8 GB a call at 10,000 samples, every model with a per-sample loss line)."""
    n = 61
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(n, 3)), "w": rng.normal(size=3), "y": rng.normal(size=n)}
    f = ic.compile(text, wrt=["w"])
    value, grads = f(arrays)
    shapes = [tuple(int(d) for d in re.findall(r"\d+", shape)) for shape in re.findall(r"-> (\([^)]*\))", str(f))]
    assert shapes and all(s.count(n) <= 1 for s in shapes), str(f)
    want = ic.evaluate(ic.diff(text, "w_a"), arrays)
    np.testing.assert_allclose(grads["w"], want, rtol=1e-12)
    np.testing.assert_allclose(value, ic.evaluate(text, arrays), rtol=1e-12)


def test_a_plan_step_no_machine_of_this_size_could_hold_is_refused_before_it_runs():
    """An outer product of four vectors of 1000 is 8 TB: refused when the plan is made,
    naming the step, its shape and both sizes, not a MemoryError (a traceback) from NumPy
    partway through, as a batch's derivative planned across samples once met (32 GB)."""
    f = ic.compile("A_ijkl = x_i x_j x_k x_l")
    with pytest.raises(ic.ShapeError, match=r"makes an array of shape \(1000, 1000, 1000, 1000\) over i, j, k, l: "
                                            r"8\.0 TB, more than this machine's memory"):
        f({"x": np.ones(1000)})
    np.testing.assert_allclose(f({"x": np.ones(3)})[0], np.ones((3, 3, 3, 3)))


def test_one_contraction_the_plan_meets_twice_is_one_step():
    """A gradient-penalty critic's parameter gradients read Xᵀ·δ-like contractions of the
    same two arrays from two adjoints, under other letters: planned once, once twice."""
    text = ("h_ni = tanh(W_ij x_nj + b_i)\nD_n = v_i h_ni\nDbatch = sum_m(D_m)\ng_nj = Dbatch_{,(nj)}[x]\n"
            "L = mean_n((D_n - y_n)^2 + 0.1 (sqrt(g_nj g_nj) - 1)^2)")
    rng = np.random.default_rng(1)
    arrays = {"W": rng.normal(size=(6, 4)), "b": rng.normal(size=6), "v": rng.normal(size=6),
              "x": rng.normal(size=(9, 4)), "y": rng.normal(size=9)}
    f = ic.compile(text, wrt=["W", "b", "v"])
    value, grads = f(arrays)
    steps = [line.split("=", 1)[1].split("#")[0].strip() for line in str(f).splitlines()[1:]]
    assert len(steps) == len(set(steps)), str(f)
    d = {name: ic.evaluate(ic.diff(text, wrt), arrays) for name, wrt in (("W", "W_pq"), ("b", "b_p"), ("v", "v_p"))}
    for name in grads:
        np.testing.assert_allclose(grads[name], d[name], rtol=1e-10, atol=1e-12)
