"""A NaN or ∞ among the inputs of a generated program: no route fails on it, and the
routes that compute the formula as written put NaN in the same places.

The cross-route property (test_routes.py) draws finite inputs, uniform in [-1, 1]; users
pass NaN (a missing value, a diverged weight) and ∞ too. Here one entry of one input of a
generated program is made non-finite, and

- every route, for the value and for the derivative, returns or raises an
  `IndexCalcError` of the user's making: none fails inside (evaluate's non-finite
  fallback failed on a factor with a repeated letter, `v11_luqq`, and said "could not
  evaluate: ValueError: axes don't match array");
- for a NaN, evaluate and the loops, which both compute the formula as written, agree
  entry by entry: NaN where the result reads the NaN, the same numbers elsewhere (δs
  and shifted δs select, masks multiply).

Not compared: ∞ patterns (the order of a sum decides between ∞ and ∞ − ∞ = NaN, and
each route sums in its own order); the routes that rewrite the formula first, simplify
and compile, which simplifies each line (`k_qt - k_qt` is 0, whatever k holds; and the
plan reads windows padded with zeros, so a NaN in a kernel entry that meets only padding
is 0 · NaN there, as docs/notation.md says); the derivatives' values (a derivative where
the function is NaN or ∞ has no right value).
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, strategies as st

import indexcalc as ic
from strategies import route_cases, sample


def _poisoned(case, value: float, seed: int) -> dict:
    """The case's arrays with one entry of one tensor set to `value`."""
    arrays = case.arrays()
    rng = np.random.default_rng(seed)
    tensors = sorted(k for k, v in arrays.items() if isinstance(v, np.ndarray) and v.ndim)
    if tensors:
        name = tensors[rng.integers(len(tensors))]
        arrays[name] = arrays[name].copy()
        arrays[name].flat[rng.integers(arrays[name].size)] = value
    return arrays


def _run(routes: dict) -> dict:
    """Each route's value, or the IndexCalcError it raised; anything else fails the test."""
    out = {}
    for name, compute in routes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                out[name] = np.asarray(compute(), dtype=np.float64)
            except ic.IndexCalcError as err:
                assert not str(err).startswith("could not evaluate"), f"{name} failed inside: {err}"
                out[name] = err
    return out


@sample(25, derandomize=True, database=None)
@given(route_cases(), st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 2**32 - 1))
def test_a_non_finite_input_fails_no_route_and_reaches_the_same_entries(case, value, seed):
    check_non_finite(case, value, seed)


def check_non_finite(case, value: float, seed: int) -> None:
    """The property for one program, one non-finite value and the seed that places it."""
    arrays = _poisoned(case, value, seed)
    values = _run({
        "evaluate": lambda: ic.evaluate(case.text, arrays),
        "evaluate_loops": lambda: ic.evaluate_loops(case.text, arrays),
        "compile": lambda: ic.compile(case.text)(arrays)[0],
        "evaluate(simplify)": lambda: ic.evaluate(ic.simplify(case.text), arrays),
    })
    if case.wrt:
        d = ic.diff(case.text, case.wrt)
        _run({
            "evaluate(diff)": lambda: ic.evaluate(d, arrays),
            "evaluate_loops(diff)": lambda: ic.evaluate_loops(d, arrays),
            "compile(diff)": lambda: ic.compile(d)(arrays)[0],
            "evaluate(diff inline)": lambda: ic.evaluate(ic.diff(case.text, case.wrt, inline=True), arrays),
        })
    if not np.isnan(value):
        return
    got, want = values["evaluate"], values["evaluate_loops"]
    if isinstance(want, Exception) or isinstance(got, Exception):
        assert type(got) is type(want), f"evaluate: {got!r}, the loops: {want!r}"
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="where the NaN reaches")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_a_nan_beside_a_factor_with_a_repeated_letter():
    """The reproduction: a NaN in v10 sends evaluate to its non-finite fallback, which lined
    factors up by their letters and failed on v11_luqq (q twice)."""
    rng = np.random.default_rng(0)
    arrays = {"v10": rng.uniform(-1, 1, (2, 1, 2, 3)), "v11": rng.uniform(-1, 1, (3, 2, 2, 2)),
              "v12": rng.uniform(-1, 1, (3, 3, 1, 2))}
    arrays["v10"][1, 0, 1, 2] = np.nan
    text = "y_ul = δ_ln v11_luqq σ(v12_lnmu) δ_up Σ_v(v10_vmpl)"
    want = ic.evaluate_loops(text, arrays)
    assert np.isnan(want).any() and np.isfinite(want).any()
    for got in (ic.evaluate(text, arrays), ic.compile(text)(arrays)[0]):
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
