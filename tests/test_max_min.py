"""max_j(...) and min_j(...) reductions (issue 10, item 4): max-pooling, hinge and margin
losses, on every route.

The derivative is the subgradient that splits a tie evenly, as jax.numpy.max and
torch.amax do: d max_j(b_j) = Σ_j w_j db_j, w_j = [b_j == max_k(b_k)] / Σ_l [b_l ==
max_k(b_k)]. Away from ties (random arrays tie with probability zero) every route must
agree with finite differences; at ties they must agree with that rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, strategies as st

import indexcalc as ic
from indexcalc.expr import Compare, Equation, Reduce, Tensor
from families import max_programs
from routes import assert_routes_agree
from strategies import sample

ROUTES = sample(15, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
VALUES = sample(60, suppress_health_check=[HealthCheck.too_slow])
RNG = np.random.default_rng(10)


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


# ---------------------------------------------------------------- values


@VALUES
@given(st.sampled_from(["max", "min"]), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from(["float64", "float32"]))
def test_max_and_min_evaluate_as_numpy_does_by_einsum_and_by_loops(op, n, c, seed, dtype):
    x = np.random.default_rng(seed).normal(size=(n, c)).astype(dtype)
    reference = getattr(np, op)
    cases = {
        f"m_n = {op}_c(x_nc)": reference(x, axis=1),
        f"m = {op}_nc(x_nc)": reference(x),
        f"m_c = {op}_n(tanh(x_nc) + 1)": reference(np.tanh(x) + 1, axis=0),
        f"y_nc = x_nc - {op}_k(x_nk)": x - reference(x, axis=1, keepdims=True),
        f"m = sum_n({op}_c(x_nc) x_nc x_nc)": None,  # checked against the loops only
    }
    for text, want in cases.items():
        got = ic.evaluate(text, {"x": x})
        loops = ic.evaluate_loops(text, {"x": x})
        # the loops add in Python floats: in float32, tanh(x) + 1 near 0 differs by its rounding (~6e-8)
        tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12}
        np.testing.assert_allclose(loops, got, err_msg=text, **tolerance)
        if want is not None:
            assert got.dtype == np.dtype(dtype), text
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=text)
            np.testing.assert_allclose(ic.compile(text)({"x": x})[0], want, rtol=1e-6, err_msg=text)


def test_a_tree_built_in_python_means_what_the_text_means():
    tree = Equation(Tensor("m", ("n",)), Reduce("max", ("c",), Tensor("x", ("n", "c"))))
    assert tree == ic.parse("m_n = max_c(x_nc)")
    x = rand(3, 4)
    np.testing.assert_array_equal(ic.evaluate(tree, {"x": x}), x.max(axis=1))


def test_the_max_of_nothing_is_minus_infinity_by_every_route():
    """As the sum of nothing is 0: the identity that lets the loops split a reduction."""
    x = np.zeros((2, 0))
    for text, want in (("m_n = max_c(x_nc)", -np.inf), ("m_n = min_c(x_nc)", np.inf)):
        for route in (ic.evaluate, ic.evaluate_loops, lambda t, a: ic.compile(t)(a)[0]):
            np.testing.assert_array_equal(route(text, {"x": x}), [want, want])


def test_max_with_zero_stays_relu():
    assert ic.parse("y_i = max(0, x_i)") == ic.parse("y_i = relu(x_i)")


def test_the_loops_combine_parts_of_a_large_max(monkeypatch):
    """Past their budget the loops take a max in parts: the max of the parts' maxima."""
    import indexcalc.loops as loops

    monkeypatch.setattr(loops, "BUDGET", 8)
    x = rand(3, 5, 7)
    for op in ("max", "min"):
        text = f"m_n = {op}_ij(x_nij)"
        np.testing.assert_array_equal(ic.evaluate_loops(text, {"x": x}), getattr(np, op)(x, axis=(1, 2)))


# ---------------------------------------------------------------- the derivative and its tie rule


def test_the_derivative_is_written_with_the_tie_weights():
    d = ic.simplify(ic.diff("m_n = max_c(x_nc)", "x_gh"))
    compares = [n for n in d.walk() if isinstance(n, Compare)]
    assert compares and all(c.op == "==" for c in compares)
    assert any(isinstance(n, Reduce) and n.op == "max" for n in compares[0].right.walk())
    assert ic.parse(str(d)) is not None  # prints and parses back


@pytest.mark.parametrize("op", ["max", "min"])
def test_a_tie_splits_the_gradient_evenly_by_every_route(op):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, -1.0]])
    if op == "min":
        x = -x
    want = np.array([[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25], [0, 0, 1, 0]])  # as jax.grad(jnp.max)
    text = f"L = sum_n({op}_c(x_nc))"
    d = ic.diff(text, "x_gh")
    for label, got in {
        "evaluate(diff)": ic.evaluate(d, {"x": x}),
        "evaluate(simplify(diff))": ic.evaluate(ic.simplify(d), {"x": x}),
        "evaluate_loops(diff)": ic.evaluate_loops(d, {"x": x}),
        "evaluate(parse(str(diff)))": ic.evaluate(ic.parse(str(d)), {"x": x}),
        "compile(wrt)": ic.compile(text, wrt=["x"])({"x": x})[1]["x"],
        "compile(diff)": ic.compile(d)({"x": x})[0],
    }.items():
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=label)


def test_a_hinge_loss_at_a_tie_takes_half_of_each_side():
    """L = max_c(z_c): with z_0 = z_1 the gradient by w in z_c = w_c t is t/2 on each."""
    text = "z_c = w_c t\nL = max_c(z_c)"
    arrays = {"w": np.array([1.0, 1.0, -2.0]), "t": 3.0}
    value, grads = ic.compile(text, wrt=["w", "t"])(arrays)
    assert value == 3.0
    np.testing.assert_allclose(grads["w"], [1.5, 1.5, 0.0])
    assert grads["t"] == pytest.approx(1.0)
    np.testing.assert_allclose(ic.evaluate(ic.diff(text, "w_g"), arrays), [1.5, 1.5, 0.0])


def test_the_second_derivative_of_a_max_is_that_of_its_maximum():
    """max_c(z_c^2) has Hessian 2 at the maximum (the weights are constant): diff(diff)."""
    z = np.array([0.3, -0.9, 0.5])
    h = ic.evaluate(ic.diff(ic.diff("L = max_c(z_c^2)", "z_g"), "z_h"), {"z": z})
    np.testing.assert_allclose(h, np.diag([0.0, 2.0, 0.0]), atol=1e-12)


# ---------------------------------------------------------------- every route, on generated programs


@ROUTES
@given(max_programs())
def test_every_route_gives_the_numbers_of_finite_differences(case):
    assert_routes_agree(case, timeout=20)


# ---------------------------------------------------------------- simplify and the plan


@pytest.mark.parametrize("text", [
    "L = max_j(x_j) + max_j(y_j)",  # not max_j(x_j + y_j)
    "L = max_j(x_j) + sum_j(y_j)",
    "L = sum_j(max_k(x_j y_k)) - max_k(sum_j(x_j y_k))",
    "L = min_j(x_j) + min_j(x_j)",
    "z_j = max_k(x_j y_k) delta_jj",
])
def test_simplify_never_merges_a_max_with_another_reduction(text):
    arrays = {"x": rand(4), "y": rand(4)}
    simplified = ic.simplify(text)
    np.testing.assert_allclose(ic.evaluate(simplified, arrays), ic.evaluate(text, arrays), rtol=1e-12)
    assert sum(isinstance(n, Reduce) and n.op in ("max", "min") for n in simplified.walk()) >= 1


def test_the_compiled_hinge_gradient_builds_nothing_larger_than_the_scores():
    """The backward pass multiplies the adjoint by the tie weights over (n, c): no step is
    shaped like a Jacobian (n, c, n, c) or a one-hot structure beside the scores."""
    n, c, j = 64, 10, 20
    text = "z_nc = W_cj x_nj\nL = mean_n(max_c(1 + z_nc - z_nk y_nk))"
    arrays = {"W": rand(c, j), "x": rand(n, j), "y": np.eye(c)[RNG.integers(0, c, n)]}
    f = ic.compile(text, wrt=["W"])
    value, grads = f(arrays)
    largest = max(np.prod(step.shape) for step in f._last.lowering.steps)
    assert largest <= max(n * c, n * j)  # the scores, or the input x itself
    np.testing.assert_allclose(grads["W"], ic.evaluate(ic.diff(text, "W_gh"), arrays), rtol=1e-10, atol=1e-12)
    assert "max" in str(f) and "compare ==" in str(f)


@pytest.mark.parametrize("text", ["y_i = max_j(x_i)", "y = max_j(3)", "y_i = max_i(x_i)"])
def test_a_max_over_an_index_its_body_lacks_is_refused(text):
    with pytest.raises(ic.IndexCalcError) as info:
        ic.evaluate(text, {"x": rand(3)})
    assert "max_" in str(info.value) or "indices" in str(info.value)
