"""The function table's values are right over the whole real line, on every route.

σ was computed as 0.5 (1 + tanh(x / 2)), where 1 + tanh cancels below x ≈ -5: σ(-30)
kept 4 digits, σ(-40) was 0, so a logistic loss written as the notes write it,
`-log(σ(z))`, was inf at z = -40 (it is 40) and its gradient nan (it is -1). Every
route agreed, and finite differences of the same σ agreed with them: only a reference
computed another way tells. Here each function of the table is held, at points from
-700 to 700, to its value in extended precision (np.longdouble) or NumPy's own ufunc,
relative to the value (the functions) or to the scale of the function (the derivative
functions σ' and tanh', computed from the value as every framework's backward pass does:
exact where the value is small, to 1e-16 absolutely where it saturates). Routes:
evaluate, the explicit loops, compile (the plan's in-place σ too), and each installed
backend.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import indexcalc as ic
from routes import to_numpy

# to ±700: below -709 σ is under 1e-308, and 0 here
X = np.concatenate([-np.geomspace(1e-3, 700, 40), [0.0], np.geomspace(1e-3, 700, 40)])


def _extended(f):
    def reference(x):
        with np.errstate(over="ignore"):
            return f(x.astype(np.longdouble)).astype(np.float64)
    return reference


def _sigma(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


# name: (reference, relative to the value (True) or to the function's scale, 1, (False))
FUNCTIONS = {
    "sigma": (_extended(_sigma), True),
    "sigma'": (_extended(lambda x: _sigma(x) * _sigma(-x)), False),
    "tanh": (_extended(np.tanh), True),
    "tanh'": (_extended(lambda x: 1 / np.cosh(x) ** 2), False),
    "softplus": (_extended(lambda x: np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))), True),
    "relu": (lambda x: np.maximum(x, 0.0), True),
    "abs": (np.abs, True),
    "sin": (np.sin, True),
    "cos": (np.cos, True),
}
ROUTES = ["evaluate", "evaluate_loops", "compile"]
BACKENDS = [name for name in ("jax", "torch", "dask") if importlib.util.find_spec(name)]


def _on(route: str, text: str, arrays: dict) -> np.ndarray:
    """y by `route`: evaluate, the explicit loops or the compiled plan (in place: checked
    to overwrite its array with σ)."""
    if route == "evaluate":
        return ic.evaluate(text, arrays)
    if route == "evaluate_loops":
        return ic.evaluate_loops(text, arrays)
    plan = ic.compile(text)
    value = plan(arrays)[0]
    if route == "compile, in place":
        assert "_sigma_into" in plan._last.source, plan._last.source
    return value


def _text(name: str, route: str) -> str:
    """`y_n = f(x_n)`; for the in-place route σ of a product the plan made and nothing
    else reads (`x_n c_n`), which the plan overwrites with σ."""
    if route == "compile, in place":
        return f"u_n = x_n c_n\ny_n = {name}(u_n)"
    return f"y_n = {name}(x_n)"


def _assert_close(got, want, relative: bool, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    scale = np.abs(want) if relative else 1.0
    bad = ~(np.abs(got - want) <= 1e-15 * scale + (1e-300 if relative else 4e-16))  # a few ulps
    assert not np.any(bad), f"{what}: at x = {X[bad][:4]} got {got[bad][:4]}, want {want[bad][:4]}"


CASES = [(name, route) for name in FUNCTIONS for route in ROUTES] + [("sigma", "compile, in place")]


@pytest.mark.parametrize("name, route", CASES)
def test_each_function_is_exact_over_the_whole_line(name, route):
    reference, relative = FUNCTIONS[name]
    text = _text(name, route)
    arrays = {"x": X} if route != "compile, in place" else {"x": X, "c": np.ones_like(X)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way either
        got = _on(route, text, arrays)
    _assert_close(got, reference(X), relative, f"{name} by {route}")


@pytest.mark.skipif(not BACKENDS, reason="no other backend is installed")
@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_is_exact_over_the_whole_line_on_every_backend(name):
    if "jax" in BACKENDS:
        import jax

        jax.config.update("jax_enable_x64", True)
    reference, relative = FUNCTIONS[name]
    for backend in BACKENDS:
        got = to_numpy(ic.compile(f"y_n = {name}(x_n)", backend=backend)({"x": X})[0])
        if backend == "dask":  # NumPy's kernels underneath (σ dask's overflow-free form)
            _assert_close(got, reference(X), relative, f"{name} on {backend}")
        else:  # the library's own (jax.nn.sigmoid, torch.tanh) round differently: a few ulps
            np.testing.assert_allclose(got, reference(X), rtol=1e-14, atol=0 if relative else 1e-15,
                                       err_msg=f"{name} on {backend}")


@pytest.mark.parametrize("route", ["evaluate(diff)", "compile(wrt)", "compile(diff)"])
def test_the_logistic_loss_as_the_notes_write_it_is_right_far_out(route):
    """`L = -sum_n(log(σ(z_n)))`: softplus(-z) summed, with gradient -σ(-z), at logits
    down to -700 (log σ(-40) was -inf and its gradient nan). The gradient is σ'/σ =
    1 - σ(z): exact where σ(z) is small, to 1e-16 absolutely where it is near 1 (as in
    every framework's backward pass of log(sigmoid(z)); softplus(-z) written is exact)."""
    z = X[np.abs(X) > 1]
    text = "L = -sum_n(log(σ(z_n)))"
    want_value = np.sum(np.logaddexp(0.0, -z))
    want = -_extended(_sigma)(-z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if route == "compile(wrt)":
            value, grads = ic.compile(text, wrt=["z"])({"z": z})
            np.testing.assert_allclose(value, want_value, rtol=1e-14)
            got = grads["z"]
        elif route == "evaluate(diff)":
            got = ic.evaluate(ic.diff(text, "z_a"), {"z": z})
        else:
            got = ic.compile(ic.diff(text, "z_a"))({"z": z})[0]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=4e-16, err_msg=route)
