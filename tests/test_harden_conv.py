"""Shifted indices tried from outside, as a new user writes them (issue 10's hardening):
each test here failed before its fix. Every value is compared on every route with an
independent NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import indexcalc as ic
from routes import gradient_routes, finite_difference


def routes(text, arrays):
    """The value of `text` by evaluate, the loops, the plan and evaluate(simplify)."""
    return {
        "evaluate": ic.evaluate(text, arrays),
        "evaluate_loops": ic.evaluate_loops(text, arrays),
        "compile": ic.compile(text)(arrays)[0],
        "evaluate(simplify)": ic.evaluate(ic.simplify(ic.parse(text)), arrays),
    }


# ------------------------------------------------- the valid range, whatever the order


@pytest.mark.parametrize("text, want", [
    # x of length 5: 2i reaches 0..2 but 2i+1 only 0..1, so the valid range is i = 0..1
    ("y_i = x_(2i) + x_(2i+1)", lambda x: x[0:4:2] + x[1:5:2]),
    ("y_i = x_(2i+1) + x_(2i)", lambda x: x[0:4:2] + x[1:5:2]),
    ("y_i = x_(2i) x_(2i+1)", lambda x: x[0:4:2] * x[1:5:2]),
    ("y_i = x_(2i+1) x_(2i)", lambda x: x[0:4:2] * x[1:5:2]),
    ("y_i = w_k x_(i+k) + x_(i+2)", lambda x: np.convolve(x, [2.0, 1.0], "valid")[:3] + x[2:5]),
    ("y_i = x_(i+2) + w_k x_(i+k)", lambda x: np.convolve(x, [2.0, 1.0], "valid")[:3] + x[2:5]),
])
def test_valid_range_is_inside_every_shift_whatever_the_order(text, want):
    """Before: the first shift met sized i, so `x_(2i) + x_(2i+1)` had 3 entries (its last
    reading x_5 = 0 past the edge) and the same sum written the other way round 2."""
    x = np.arange(1.0, 6.0)
    arrays = {"x": x, "w": np.array([1.0, 2.0])}
    for route, value in routes(text, arrays).items():
        np.testing.assert_allclose(value, want(x), err_msg=route)


def test_valid_range_order_free_through_a_derivative():
    text = "y_i = x_(2i) + x_(2i+1)\nL = y_i y_i"
    arrays = {"x": np.random.default_rng(0).uniform(-1, 1, 5)}
    fd = finite_difference(lambda a: ic.evaluate(text, a), arrays, "x")
    np.testing.assert_allclose(fd[4], 0.0, atol=1e-8)  # x_4 is read by no valid position
    for route, compute in gradient_routes(text, "x_a", arrays).items():
        np.testing.assert_allclose(compute(), fd, rtol=1e-5, atol=1e-7, err_msg=route)


# ------------------------------------------- NaN and ∞ read only where the shift reads them


def correlate(x, w):
    """h_i = Σ_k w_k x_{i+k} (valid), by plain loops, so that a NaN reaches only the
    positions that read it."""
    return np.array([sum(w[k] * x[i + k] for k in range(len(w))) for i in range(len(x) - len(w) + 1)])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_reaches_only_the_positions_that_read_it(bad):
    """`h_i = w_k x_(i+k)` reads x_0 at i = 0 only. Before, evaluate and the loops
    multiplied by the shifted δ's zeros, 0 · NaN = NaN, so every h_i was NaN (the plan,
    which takes windows, gave NaN at i = 0 alone: it was right)."""
    x = np.array([bad, 1.0, 2.0, 3.0, 4.0])
    w = np.array([1.0, 2.0])
    with np.errstate(invalid="ignore"):
        want = correlate(x, w)
    assert np.isfinite(want[1:]).all()
    for route, value in routes("h_i = w_k x_(i+k)", {"x": x, "w": w}).items():
        np.testing.assert_array_equal(value, want, err_msg=route)


def test_a_non_finite_input_through_a_delta():
    """`δ_ij x_j` is x_i: a NaN stays at its own position on every route."""
    x = np.array([1.0, np.nan, 3.0, np.inf])
    for route, value in routes("y_i = δ_ij x_j", {"x": x}).items():
        np.testing.assert_array_equal(value, x, err_msg=route)


def test_non_finite_inputs_through_2d_convolution_and_pooling():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (1, 1, 6, 6))
    x[0, 0, 0, 0], x[0, 0, 5, 2] = np.nan, np.inf
    K = rng.uniform(-1, 1, (2, 1, 2, 2))
    text = "h_ncij = K_cdkl x_{nd(i+k)(j+l)}"
    with np.errstate(invalid="ignore"):
        want = np.zeros((1, 2, 5, 5))
        for i in range(5):
            for j in range(5):
                want[:, :, i, j] = np.einsum("cdkl,ndkl->nc", K, x[:, :, i:i + 2, j:j + 2])
    assert np.isfinite(want).sum() == 2 * (25 - 1 - 2)  # NaN read by one window, ∞ by two
    for route, value in routes(text, {"K": K, "x": x}).items():
        np.testing.assert_allclose(value, want, rtol=1e-12, err_msg=route)
    h = rng.uniform(-1, 1, (1, 2, 6))
    h[0, 1, 3] = np.nan
    pooled = routes("m_nci = s_nci max_k(h_{nc(2i+k)})", {"h": h, "s": np.ones((1, 2, 3))})
    want = h.reshape(1, 2, 3, 2).max(axis=3)
    for route, value in pooled.items():
        np.testing.assert_array_equal(value, want, err_msg=route)


# ------------------------------------------------- a window that a shift leaves empty


@pytest.mark.parametrize("op", ["max", "min", "mean", "logsumexp"])
def test_a_reduction_over_an_empty_window_is_refused_on_every_route(op):
    """b sizes i to 5 over an x of 5 positions, so `x_(2i+k)` leaves k no value. Before:
    evaluate and the loops gave NaN or -inf with no error, and compile raised a bare
    ZeroDivisionError (mean) or ValueError (logsumexp)."""
    text = f"m_i = b_i {op}_k(x_(2i+k))"
    arrays = {"x": np.arange(1.0, 6.0), "b": np.ones(5)}
    routes = {"evaluate": ic.evaluate, "evaluate_loops": ic.evaluate_loops,
              "compile": lambda t, a: ic.compile(t)(a)[0]}
    for route, f in routes.items():
        with pytest.raises(ic.ShapeError, match=f"{op}_k runs over no value of k"):
            f(text, arrays)


def test_a_sum_over_an_empty_window_is_zero():
    arrays = {"x": np.arange(1.0, 6.0), "b": np.ones(5)}
    for route, value in routes("m_i = b_i sum_k(x_(2i+k))", arrays).items():
        np.testing.assert_array_equal(value, np.zeros(5), err_msg=route)


# ------------------------------------------- simplify keeps the zero term that sizes i


@pytest.mark.parametrize("text, size", [
    ("h_i = w_k x_(i+k-1) + 0 b_i", 5),       # "same" padding: b sizes i like x
    ("h_i = 0 b_i + w_k x_(i+k-1)", 5),
    ("m_i = mean_k(x_(2i+k)) + 0 c_i", 2),    # a pooled line of its own, i sized by c
])
def test_simplify_keeps_the_zero_term_whose_array_sizes_a_shifted_letter(text, size):
    """Before: simplify dropped `0 b_i`, so i took the shift's valid range (4, not 5: the
    plan, which simplifies, gave a shorter h than evaluate) or no size at all."""
    x = np.arange(1.0, 6.0)
    arrays = {"w": np.ones(3), "x": x, "b": np.zeros(5), "c": np.zeros(2)}
    values = routes(text, arrays)
    assert values["evaluate"].shape == (size,)
    for route, value in values.items():
        np.testing.assert_allclose(value, values["evaluate"], err_msg=route)
    if size == 5:
        np.testing.assert_allclose(values["evaluate"], np.convolve(x, np.ones(3), "same"))


# ------------------------------------------- pooling on a line of its own: what to do


def test_pooling_on_its_own_line_says_how_to_size_the_windows():
    """`max_{kl}(h_{nc(2i+k)(2j+l)})` cannot tell how many windows and how wide (i and k
    size each other); before, the message said only that no array had an axis for i,
    and compile's said "cannot tell the size of i in m_ncij"."""
    text = "m_{ncij} = max_{kl}(h_{nc(2i+k)(2j+l)})"
    arrays = {"h": np.zeros((2, 3, 6, 6))}
    for f in (ic.evaluate, ic.evaluate_loops, lambda t, a: ic.compile(t)(a)[0]):
        with pytest.raises(ic.ShapeError, match=r"in the shifted index \(2i\+k\) its range and k's depend on each "
                                                r"other .*give i a size by an array"):
            f(text, arrays)
    # and the way it names works: s of ones sizes i and j, so k and l run 0..1
    h = np.random.default_rng(0).uniform(-1, 1, (2, 3, 6, 6))
    sized = "m_{ncij} = s_ij max_{kl}(h_{nc(2i+k)(2j+l)})"
    want = h.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5))
    for route, value in routes(sized, {"h": h, "s": np.ones((3, 3))}).items():
        np.testing.assert_allclose(value, want, err_msg=route)


# ------------------------------------------- the plan's backward pass of a padded stride


@pytest.mark.parametrize("length", [6, 7])
def test_the_gradient_of_a_strided_convolution_with_offset_minus_one(length):
    """`x_{(2i+k-1)}` (the notation's own "stride 2, offset -1"), kernel 2, x of 6: the
    windows tile 6 positions from -1. Before, the plan took that for a tiling from 0 and
    reshaped 6 values into 7 (ValueError from compile(wrt); hypothesis found it in
    tests/test_conv_plan.py)."""
    rng = np.random.default_rng(length)
    text = "h_ci = w_ck x_{(2i+k-1)}\nL = sum_{ci}(g_ci h_ci)"
    arrays = {"w": rng.normal(size=(2, 2)), "x": rng.normal(size=length)}
    arrays["g"] = rng.normal(size=ic.evaluate(text.splitlines()[0], arrays).shape)
    fd = finite_difference(lambda a: ic.evaluate(text, a), arrays, "x")
    for route, compute in gradient_routes(text, "x_a", arrays).items():
        np.testing.assert_allclose(compute(), fd, rtol=1e-6, atol=1e-8, err_msg=route)
