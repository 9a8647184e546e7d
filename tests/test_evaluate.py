"""Numbers: the summation rules of DESIGN.md, evaluated.

Every rule is checked three ways: by `ic.evaluate` (einsum), by `ic.evaluate_loops` (the
explicit-loop reference) and against a NumPy formula written out by hand. Then random
well-formed programs check that the two evaluators always agree, and the plan cache is
checked to plan once per shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc.evaluate import plan_cache_size
from strategies import SAFE_PROGRAMS, ProgramGenerator, sample

RNG = np.random.default_rng(20240601)


def rand(*shape):
    return RNG.normal(size=shape)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def check(source, arrays, expected):
    """Both evaluators give `expected` (shape and numbers); returns the einsum value."""
    expected = np.asarray(expected, dtype=float)
    got = ic.evaluate(source, arrays)
    ref = ic.evaluate_loops(source, arrays)
    assert np.shape(got) == expected.shape, f"evaluate: shape {np.shape(got)}, expected {expected.shape}"
    assert np.shape(ref) == expected.shape, f"evaluate_loops: shape {np.shape(ref)}, expected {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"evaluate {source!r}")
    np.testing.assert_allclose(ref, expected, rtol=1e-10, atol=1e-12, err_msg=f"evaluate_loops {source!r}")
    return got


# --------------------------------------------------------------------------------------
# Free indices are fixed from the outside in


def test_lhs_indices_are_fixed_outer_product():
    a, b = rand(3), rand(4)
    check("y_ij = a_i b_j", {"a": a, "b": b}, np.outer(a, b))


def test_lhs_index_is_not_summed_even_when_repeated():
    # j is on the left, so w_ij x_j is elementwise in j, not a matrix-vector product
    w, x = rand(3, 4), rand(4)
    check("y_ij = w_ij x_j", {"w": w, "x": x}, w * x[None, :])


def test_mean_fixes_its_index_mean_of_squares():
    y, u = rand(6), rand(6)
    check("C = mean_n((y_n - u_n)(y_n - u_n))", {"y": y, "u": u}, np.mean((y - u) ** 2))


def test_without_mean_the_same_product_is_a_sum_of_squares():
    y, u = rand(6), rand(6)
    check("C = (y_n - u_n)(y_n - u_n)", {"y": y, "u": u}, np.sum((y - u) ** 2))


def test_mean_fixes_n_inside_a_function_only_j_is_summed():
    y, X, w = rand(7), rand(7, 3), rand(3)
    expected = np.mean(np.log(1.0 + np.exp(-y * (X @ w))))
    check("L = mean_n(log(1 + exp(-y_n X_nj w_j)))", {"y": y, "X": X, "w": w}, expected)


def test_sum_fixes_its_index_inside_a_function():
    # inside sum_j(...) j is fixed: exp acts per (i, j), then j is summed
    w, x = rand(3, 4), rand(4)
    check("r_i = sum_j(exp(w_ij x_j))", {"w": w, "x": x}, np.exp(w * x[None, :]).sum(axis=1))
    # without the explicit sum, j is summed inside the argument first
    check("r_i = exp(w_ij x_j)", {"w": w, "x": x}, np.exp(w @ x))


def test_reduction_over_two_indices():
    m = rand(3, 4)
    check("s = mean_ij(m_ij m_ij)", {"m": m}, np.mean(m**2))
    check("s = Σ_ij(m_ij)", {"m": m}, m.sum())


# --------------------------------------------------------------------------------------
# Trace, diagonal, elementwise product, three factors


def test_trace():
    m = rand(4, 4)
    check("t = m_ii", {"m": m}, np.trace(m))


def test_diagonal():
    m = rand(4, 4)
    check("d_i = m_ii", {"m": m}, np.diag(m))


def test_trace_inside_a_product_sums_over_three_occurrences():
    # i three times in one product: refused unless the sum is written out (issue 8)
    m, x = rand(4, 4), rand(4)
    check("s = sum_i(m_ii x_i)", {"m": m, "x": x}, np.diag(m) @ x)


def test_elementwise_product_over_lhs_index():
    a, b = rand(5), rand(5)
    check("h_i = a_i b_i", {"a": a, "b": b}, a * b)


def test_index_summed_over_three_factors():
    a, b, c = rand(5), rand(5), rand(5)
    check("s = sum_i(a_i b_i c_i)", {"a": a, "b": b, "c": c}, np.sum(a * b * c))


def test_index_summed_over_three_factors_with_free_index():
    w, x, v = rand(3, 4), rand(4), rand(4)
    check("y_i = sum_j(w_ij x_j v_j)", {"w": w, "x": x, "v": v}, w @ (x * v))


# --------------------------------------------------------------------------------------
# Scopes: function arguments and parenthesised sums


def test_function_argument_is_a_scope():
    a, b = rand(5), rand(5)
    check("y = exp(a_i b_i) c", {"a": a, "b": b, "c": 1.5}, np.exp(a @ b) * 1.5)


def test_function_of_elementwise_then_summed_outside():
    a, b = rand(5), rand(5)
    check("y = exp(a_i) b_i", {"a": a, "b": b}, np.exp(a) @ b)
    check("y = sum_i(exp(a_i b_i)) c", {"a": a, "b": b, "c": 1.5}, np.exp(a * b).sum() * 1.5)


def test_same_letter_summed_inside_scope_and_free_outside():
    a, b, c = rand(5), rand(5), rand(5)
    check("y_i = exp(a_i b_i) c_i", {"a": a, "b": b, "c": c}, np.exp(a * b) * c)  # i fixed
    check("tanh(a_i b_i) c_i", {"a": a, "b": b, "c": c}, np.tanh(a @ b) * c)  # bare: inner i summed


def test_parenthesised_sum_is_a_scope_dot_product():
    t, y = rand(5), rand(5)
    check("e = (t_i - y_i)(t_i - y_i)", {"t": t, "y": y}, np.dot(t - y, t - y))
    check("(t_i - y_i)(t_i - y_i)", {"t": t, "y": y}, np.dot(t - y, t - y))


def test_parentheses_around_a_product_only_group():
    w, x, v = rand(3, 4), rand(4), rand(3)
    check("s = v_i (w_ij x_j)", {"w": w, "x": x, "v": v}, v @ w @ x)
    check("s = (v_i w_ij) x_j", {"w": w, "x": x, "v": v}, v @ w @ x)


# --------------------------------------------------------------------------------------
# Subscripted functions relabel


def test_relabelling_function():
    w, x = rand(3, 4), rand(4)
    check("y_i = σ_i(w_jk x_k)", {"w": w, "x": x}, sigmoid(w @ x))


def test_relabelling_function_batched():
    W, x = rand(3, 4), rand(5, 4)
    check("h_ni = σ_i(W_jk x_nk)", {"W": W, "x": x}, sigmoid(x @ W.T))


def test_relabelling_with_the_new_letter_summed_inside():
    # bare: i is not fixed, so it is summed inside the argument (a scope), and the
    # argument's one free index j becomes i outside it
    # (one letter has one size in an equation, so a and b are as long as i)
    w, x, a, b = rand(3, 4), rand(4), rand(3), rand(3)
    arrays = {"w": w, "x": x, "a": a, "b": b}
    check("tanh_i(w_jk x_k a_i b_i)", arrays, np.tanh((w @ x) * (a @ b)))
    v = rand(3)
    check("s = v_i tanh_i(w_jk x_k a_i b_i)", arrays | {"v": v}, v @ np.tanh((w @ x) * (a @ b)))


def test_relabelling_to_an_index_fixed_inside_the_argument():
    # σ_i(W_jk x_nk a_i) means σ(W_ik x_nk a_i): i is fixed by the left-hand side
    W, x, a = rand(3, 4), rand(5, 4), rand(3)
    check("h_ni = σ_i(W_jk x_nk a_i)", {"W": W, "x": x, "a": a}, sigmoid((x @ W.T) * a[None, :]))
    w, x, a, b = rand(3, 4), rand(4), rand(3), rand(3)
    check("y_i = tanh_i(w_jk x_k a_i b_i)", {"w": w, "x": x, "a": a, "b": b}, np.tanh((w @ x) * a * b))


# --------------------------------------------------------------------------------------
# Broadcasting and scalar expansion


def test_bias_broadcast_over_batch():
    W, x, b = rand(3, 4), rand(5, 4), rand(3)
    check("h_ni = sigma(W_ij x_nj + b_i)", {"W": W, "x": x, "b": b}, sigmoid(x @ W.T + b))


def test_scalar_expansion():
    u = rand(6)
    check("y_n = 1 + exp(u_n)", {"u": u}, 1.0 + np.exp(u))
    check("1 + exp(u_n)", {"u": u}, 1.0 + np.exp(u))
    w, x = rand(3, 4), rand(4)
    check("y_i = w_ij x_j - c", {"w": w, "x": x, "c": 0.25}, w @ x - 0.25)


def test_term_without_lhs_index_is_broadcast():
    a, b = rand(3), rand(4)
    check("y_ij = a_i + b_j", {"a": a, "b": b}, a[:, None] + b[None, :])


def test_softmax():
    z = rand(6)
    check("p_i = exp(z_i) / sum_j(exp(z_j))", {"z": z}, np.exp(z) / np.exp(z).sum())


def test_batched_softmax():
    z = rand(4, 6)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    check("p_ni = exp(z_ni) / sum_j(exp(z_nj))", {"z": z}, expected)


# --------------------------------------------------------------------------------------
# Kronecker deltas


def test_delta_contracts():
    x = rand(5)
    check("y_i = δ_ij x_j", {"x": x}, x)
    check("y_i = delta_ij x_j", {"x": x}, x)


def test_delta_with_both_indices_free():
    x = rand(5)
    check("y_ij = δ_ij x_j", {"x": x}, np.diag(x))
    z = rand(5, 5)
    check("y_ij = δ_ij z_ij", {"z": z}, np.diag(np.diag(z)))


def test_delta_trace():
    m = rand(4, 4)
    check("t = δ_ij m_ij", {"m": m}, np.trace(m))
    x = rand(4)
    check("t = δ_ii x_i", {"x": x}, x.sum())


def test_grouped_delta():
    w = rand(3, 4)
    check("y_ij = δ_(ij)(kl) w_kl", {"w": w}, w)
    check("y_ji = δ_(ij)(kl) w_kl", {"w": w}, w.T)
    check("y_ijkl = δ_(ij)(kl) w_kl", {"w": w}, np.einsum("ik,jl->ijkl", np.eye(3), np.eye(4)) * w)
    check("s = δ_(ij)(kl) w_ij w_kl", {"w": w}, np.sum(w * w))


# --------------------------------------------------------------------------------------
# Axis order


def test_bare_expression_axes_in_order_of_first_appearance():
    a, b = rand(3), rand(4)
    check("a_j b_i", {"a": a, "b": b}, np.outer(a, b))
    check("b_i a_j", {"a": a, "b": b}, np.outer(b, a))
    w, x = rand(3, 4), rand(5, 4)
    check("x_nj w_ij", {"w": w, "x": x}, x @ w.T)  # n first, then i
    check("w_ij x_nj", {"w": w, "x": x}, w @ x.T)  # i first, then n
    check("exp(v_k) u_i", {"v": a, "u": b}, np.outer(np.exp(a), b))


def test_axis_order_is_lhs_order():
    w = rand(3, 4)
    check("y_ji = w_ij", {"w": w}, w.T)
    x = rand(3)
    check("y_ji = w_ij x_i", {"w": w, "x": x}, (w * x[:, None]).T)
    a = rand(2, 3, 4)
    check("y_kij = a_ijk", {"a": a}, np.transpose(a, (2, 0, 1)))
    v = rand(4)
    xs = rand(5)
    check("y_ni = W_ij v_j + x_n", {"W": w, "v": v, "x": xs}, (w @ v)[None, :] + xs[:, None])


def test_matrix_product_transposed_output():
    a, b = rand(3, 4), rand(4, 5)
    check("c_ki = a_ij b_jk", {"a": a, "b": b}, (a @ b).T)


# --------------------------------------------------------------------------------------
# Programs


MLP = """
# a two-layer perceptron on a batch n, and its squared loss
h_ni = tanh(W1_ij x_nj + b1_i)
yhat_nj = W2_ji h_ni + b2_j        # j is now the output index: letters are local
loss = mean_n((yhat_nj - y_nj)(yhat_nj - y_nj))
"""


def mlp_arrays():
    return {"x": rand(6, 4), "W1": rand(5, 4), "b1": rand(5), "W2": rand(3, 5), "b2": rand(3), "y": rand(6, 3)}


def test_program_mlp_with_loss():
    arr = mlp_arrays()
    h = np.tanh(arr["x"] @ arr["W1"].T + arr["b1"])
    yhat = h @ arr["W2"].T + arr["b2"]
    loss = np.mean(np.sum((yhat - arr["y"]) ** 2, axis=1))
    value = check(MLP, arr, loss)
    assert np.ndim(value) == 0


def test_program_returns_the_last_equation():
    arr = mlp_arrays()
    h = np.tanh(arr["x"] @ arr["W1"].T + arr["b1"])
    first_two = "\n".join(MLP.strip().splitlines()[:3])
    check(first_two, arr, h @ arr["W2"].T + arr["b2"])
    first = "h_ni = tanh(W1_ij x_nj + b1_i)\nz_in = h_ni"
    check(first, arr, h.T)


def test_program_accepts_a_parsed_program():
    arr = mlp_arrays()
    parsed = ic.parse(MLP)
    assert isinstance(parsed, ic.Program)
    np.testing.assert_allclose(ic.evaluate(parsed, arr), ic.evaluate(MLP, arr), rtol=1e-12)
    np.testing.assert_allclose(ic.evaluate_loops(parsed, arr), ic.evaluate(MLP, arr), rtol=1e-12)


def test_program_intermediates_are_computed_not_taken_from_arrays():
    # an array supplied under an intermediate's name is replaced by the computed value
    x = rand(4)
    src = "y_i = 2 x_i\nz = y_i y_i"
    check(src, {"x": x, "y": np.zeros(4)}, 4 * x @ x)


def test_program_does_not_change_the_given_mapping():
    arr = mlp_arrays()
    before = dict(arr)
    ic.evaluate(MLP, arr)
    ic.evaluate_loops(MLP, arr)
    assert arr.keys() == before.keys()
    assert all(arr[k] is before[k] for k in before)


# --------------------------------------------------------------------------------------
# dtypes


F32_CASES = [
    ("y_i = a_i b_i", lambda a, b, W, x: a * b),
    ("s = a_i b_i", lambda a, b, W, x: a @ b),
    ("y_i = 2 a_i + 1", lambda a, b, W, x: 2 * a + 1),
    ("y_i = a_i^2 / 3", lambda a, b, W, x: a**2 / 3),
    ("y_ij = δ_ij a_j", lambda a, b, W, x: np.diag(a)),
    ("y_i = exp(a_i) / sum_j(exp(a_j))", lambda a, b, W, x: np.exp(a) / np.exp(a).sum()),
    ("h_ni = sigma(W_ij x_nj + b_i)", lambda a, b, W, x: sigmoid(x @ W.T + b)),
    ("L = mean_n(log(1 + exp(-x_nj W_ij a_i)))", lambda a, b, W, x: np.mean(np.log1p(np.exp(-(x @ W.T @ a))))),
    ("h_ni = σ_i(W_jk x_nk)\nz = mean_n(h_ni h_ni)", lambda a, b, W, x: np.mean(np.sum(sigmoid(x @ W.T) ** 2, axis=1))),
]


@pytest.mark.parametrize("source, formula", F32_CASES, ids=[c[0] for c in F32_CASES])
def test_float32_inputs_stay_float32(source, formula):
    f32 = {"a": rand(3), "b": rand(3), "W": rand(3, 4), "x": rand(5, 4)}
    f32 = {k: v.astype(np.float32) for k, v in f32.items()}
    value = ic.evaluate(source, f32)
    assert np.asarray(value).dtype == np.float32
    expected = formula(*(f32[k].astype(float) for k in "abWx"))
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ic.evaluate_loops(source, f32), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("source", [c[0] for c in F32_CASES] + ["y_i = mean_n(x_nj W_ij)"])
def test_arrays_the_program_does_not_read_leave_its_float_type_alone(source):
    f32 = {k: v.astype(np.float32) for k, v in {"a": rand(3), "b": rand(3), "W": rand(3, 4), "x": rand(5, 4)}.items()}
    alone = ic.evaluate(source, f32)
    beside = ic.evaluate(source, {**f32, "c": 0.5, "unread": np.ones(2)})
    assert alone.dtype == beside.dtype == ic.compile(source)({**f32, "c": 0.5})[0].dtype == np.float32
    np.testing.assert_array_equal(alone, beside)


def test_float64_inputs_stay_float64_and_ints_become_float():
    assert ic.evaluate("y_i = 2 a_i", {"a": rand(3)}).dtype == np.float64
    value = ic.evaluate("y_i = a_i / 2", {"a": np.array([1, 2, 3])})
    assert value.dtype.kind == "f"
    np.testing.assert_allclose(value, [0.5, 1.0, 1.5])


# --------------------------------------------------------------------------------------
# The plan cache


def test_plan_cache_plans_once_per_shape():
    source = "y_ni = tanh(W_ij x_nj + b_i) v_qi u_q"  # a spec not used by other tests
    arrays = {"W": rand(3, 4), "x": rand(5, 4), "b": rand(3), "v": rand(2, 3), "u": rand(2)}
    first = ic.evaluate(source, arrays)
    size = plan_cache_size()
    second = ic.evaluate(source, arrays)
    assert plan_cache_size() == size
    np.testing.assert_array_equal(first, second)
    # new arrays of the same shapes: still no new plan
    again = {k: rand(*np.shape(v)) for k, v in arrays.items()}
    ic.evaluate(source, again)
    assert plan_cache_size() == size
    # a new batch size is a new shape signature: it is planned
    arrays["x"] = rand(7, 4)
    value = ic.evaluate(source, arrays)
    assert plan_cache_size() > size
    grown = plan_cache_size()
    ic.evaluate(source, arrays)
    assert plan_cache_size() == grown
    np.testing.assert_allclose(value, ic.evaluate_loops(source, arrays), rtol=1e-10, atol=1e-12)


def test_plan_cache_reused_for_a_parsed_equation_and_for_text():
    eq = ic.parse("y_i = sum_j(w_ij x_j z_j)")
    arrays = {"w": rand(2, 9), "x": rand(9), "z": rand(9)}
    ic.evaluate(eq, arrays)
    size = plan_cache_size()
    ic.evaluate(eq, arrays)
    ic.evaluate("y_i = sum_j(w_ij x_j z_j)", arrays)
    ic.evaluate("y_k = sum_l(w_kl x_l z_l)", arrays)  # other letters, same contraction
    assert plan_cache_size() == size


# --------------------------------------------------------------------------------------
# Random well-formed programs: einsum and explicit loops agree

@st.composite
def programs(draw):
    gen = ProgramGenerator(draw(st.data()), SAFE_PROGRAMS)
    text = gen.program()
    arrays = gen.arrays(draw(st.integers(0, 2**32 - 1)))
    return text, arrays


@sample(150)
@given(programs())
def test_einsum_agrees_with_explicit_loops(case):
    text, arrays = case
    fast = ic.evaluate(text, arrays)
    slow = ic.evaluate_loops(text, arrays)
    assert np.shape(fast) == np.shape(slow)
    assert np.all(np.isfinite(slow)), "the generator should stay on safe domains"
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=1e-9, err_msg=text)


def test_logsumexp_is_the_log_of_a_sum_of_exps_and_does_not_overflow():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(3, 4))
    text = "s_n = logsumexp_c(z_nc)"
    expected = np.log(np.exp(z).sum(axis=1))
    np.testing.assert_allclose(ic.evaluate(text, {"z": z}), expected, rtol=1e-12)
    np.testing.assert_allclose(ic.evaluate_loops(text, {"z": z}), expected, rtol=1e-12)
    huge = 1000.0 * z  # exp overflows; the shifted form does not
    top = huge.max(axis=1)
    stable = top + np.log(np.exp(huge - top[:, None]).sum(axis=1))
    for evaluator in (ic.evaluate, ic.evaluate_loops):
        assert np.all(np.isfinite(evaluator(text, {"z": huge})))
        np.testing.assert_allclose(evaluator(text, {"z": huge}), stable, rtol=1e-12)


@pytest.mark.parametrize("source, shapes, operands", [
    # a derivative's nested binders, each letter also used outside: one contraction each
    ("y_i = a_ij sum_k(b_jk sum_m(c_km d_m)) sum_j(e_j)", {"a": (3, 4), "b": (4, 5), "c": (5, 2), "d": (2,), "e": (4,)}, 5),
    ("y_i = sum_j(a_ij mean_k(b_jk c_k delta_kj))", {"a": (3, 4), "b": (4, 4), "c": (4,)}, 5),  # and 1/n
    ("y = sum_k(sum_k(a_k) b_k)", {"a": (4,), "b": (4,)}, 2),  # the inner k is its own letter
])
def test_sums_and_means_of_products_open_into_one_contraction(monkeypatch, source, shapes, operands):
    """A sum or mean over a product joins the enclosing product's einsum, its letters
    renamed apart (a Hessian's nested binders evaluated one by one made intermediates of
    ten and more axes): the numbers are the loops', and the body is no separate einsum."""
    import importlib

    evaluate_module = importlib.import_module("indexcalc.evaluate")
    specs = []
    original = evaluate_module.contraction
    monkeypatch.setattr(evaluate_module, "contraction", lambda spec, sizes: specs.append(spec) or original(spec, sizes))
    rng = np.random.default_rng(3)
    arrays = {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}
    np.testing.assert_allclose(ic.evaluate(source, arrays), ic.evaluate_loops(source, arrays), rtol=1e-12, atol=1e-12)
    assert len(specs) == 1 and specs[0].split("->")[0].count(",") + 1 == operands, specs
