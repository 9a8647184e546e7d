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
