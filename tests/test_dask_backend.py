"""dask (issue 11, item 3): the compiled plan on arrays chunked along the batch, lazily,
and full-batch Newton on data that does not fit in the memory it is given.

- On a few programs (the example's logistic regression with its Hessian, an MLP of
  test_compile, the softmax classifier of examples/ with a Hessian by its bias), the
  compiled loss, gradients and Hessians on dask arrays are dask arrays, nothing is
  computed until `dask.compute`, and then they are the NumPy plan's numbers (rtol 1e-6,
  float64); the logistic regression's are also the explicit loops' and the closed forms
  Xᵀ(p - y) and Xᵀ diag(p(1 - p)) X. Any chunking of the samples (hypothesis: uneven,
  one row, one chunk) gives the same numbers.
- examples/newton_dask.py's Newton's method, on data made block by block and four times
  the memory limit, reaches the optimality condition Xᵀ(σ(Xw) - y) = 0 (written here by
  hand in dask, not by indexcalc) in at most 10 steps, and a pass of the gradient and
  Hessian over all the rows allocates less than the limit at its peak (tracemalloc,
  which sees NumPy's buffers; one pass traced, since tracing slows dask's scheduler).
  The scheduler is the synchronous one, so the bound does not depend on how many
  threads the machine has.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import sample
from test_compile import mlp, mlp_arrays

dask = pytest.importorskip("dask", reason="dask is not installed (pip install \"indexcalc[dask]\")")
da = pytest.importorskip("dask.array", reason="dask.array is not installed (pip install \"indexcalc[dask]\")")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import newton_dask  # noqa: E402

RNG = np.random.default_rng(20261204)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Counted:
    """Dask arrays whose every block is read through a function that counts its calls:
    a count of 0 after a call proves the call computed nothing."""

    def __init__(self):
        self.blocks = 0

    def chunked(self, array: np.ndarray, rows: int) -> "da.Array":
        def read(block):
            self.blocks += 1
            return block

        blocks = da.from_array(array, chunks=(rows,) + array.shape[1:])
        return blocks.map_blocks(read, dtype=array.dtype, meta=np.empty((0,) * array.ndim, array.dtype))


def logistic():
    n, d = 23, 4
    X = RNG.normal(size=(n, d))
    return newton_dask.PROGRAM, ["w"], {"X": X, "y": (RNG.uniform(size=n) < 0.5) * 1.0, "w": RNG.normal(size=d) * 0.5}


def softmax():
    n, d, c = 17, 4, 3
    source = (EXAMPLES / "softmax_classifier.ic").read_text()
    return source, ["W", "b"], {"x": RNG.normal(size=(n, d)), "y": np.eye(c)[RNG.integers(0, c, size=n)],
                                "W": RNG.normal(size=(c, d)), "b": RNG.normal(size=c)}


def two_layer_mlp():
    return mlp("tanh", "mean"), ["W1", "b1", "W2", "b2"], mlp_arrays(n=19, sizes=(3, 5, 2))


# each case: the program, its parameters, arrays (the data first along the batch), the
# data's names, and the Hessian to compile too (by which two parameter letters), if any
CASES = {
    "logistic regression": (logistic, ("X", "y"), ("w_g", "w_h")),
    "softmax classifier": (softmax, ("x", "y"), ("b_g", "b_h")),
    "MLP": (two_layer_mlp, ("x", "y"), None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_dask_plan_is_lazy_and_gives_the_numpy_plans_numbers(name):
    make, data, hessian_by = CASES[name]
    source, wrt, arrays = make()
    counted = Counted()
    # the data chunked along the batch, unevenly (7 rows a block); the parameters stay NumPy
    lazy = {k: counted.chunked(v, 7) if k in data else v for k, v in arrays.items()}
    compiled = [ic.compile(source, wrt=wrt, backend="dask")]
    expected = [ic.compile(source, wrt=wrt)(arrays)]
    if hessian_by:
        second = ic.diff(ic.diff(source, hessian_by[0]), hessian_by[1])
        compiled.append(ic.compile(second, backend="dask"))
        expected.append(ic.compile(second)(arrays))
    results = [f(lazy) for f in compiled]
    outputs = [array for value, grads in results for array in [value, *grads.values()]]
    assert all(isinstance(array, da.Array) for array in outputs), [type(a).__name__ for a in outputs]
    assert counted.blocks == 0, f"{counted.blocks} blocks of the data were read before dask.compute"

    computed = iter(dask.compute(*outputs))
    assert counted.blocks > 0
    for (value, grads), (want, want_grads) in zip(results, expected):
        assert set(grads) == set(want_grads)
        for got, wanted, what in [(next(computed), want, "value")] + [
                (next(computed), want_grads[k], f"gradient by {k}") for k in grads]:
            assert np.shape(got) == np.shape(wanted), f"{name}, {what}"
            np.testing.assert_allclose(got, wanted, rtol=1e-6, atol=1e-12 * np.abs(wanted).max(), err_msg=f"{name}, {what}")
    if name == "logistic regression":  # and both are the explicit loops' numbers, and the closed forms
        X, y, w = arrays["X"], arrays["y"], arrays["w"]
        p = sigmoid(X @ w)
        (_, grads), (hessian, _) = expected
        for got, loops, closed in ((grads["w"], ic.diff(source, "w_g"), X.T @ (p - y)),
                                   (hessian, second, X.T @ (X * (p * (1 - p))[:, None]))):
            np.testing.assert_allclose(got, ic.evaluate_loops(loops, arrays), rtol=1e-10)
            np.testing.assert_allclose(got, closed, rtol=1e-10)


@sample(6, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_any_chunking_along_the_samples_gives_the_same_numbers(sizes):
    """The chunks a user's data comes in (uneven, one row, one chunk) do not change the
    numbers: each sum over n is the same sum, added up in another order."""
    source, _, arrays = logistic()
    rows = sum(sizes)
    X, y = np.resize(arrays["X"], (rows, 4)), np.resize(arrays["y"], rows)  # the rows repeated as needed
    given = {"X": X, "y": y, "w": arrays["w"]}
    lazy = {"X": da.from_array(X, chunks=(tuple(sizes), 4)), "y": da.from_array(y, chunks=(tuple(sizes),)), "w": arrays["w"]}
    gradient, hessian = GRADIENT_AND_HESSIAN
    (value, grads), (H, _) = gradient[1](lazy), hessian[1](lazy)
    value, g, H = dask.compute(value, grads["w"], H)
    (want, want_grads), (want_H, _) = gradient[0](given), hessian[0](given)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(g, want_grads["w"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(H, want_H, rtol=1e-9, atol=1e-12)


# the example's plans, NumPy's and dask's, compiled once for the property above
GRADIENT_AND_HESSIAN = tuple(zip(newton_dask.compile_model(backend="numpy"), newton_dask.compile_model()))


def test_newton_halves_a_step_that_does_not_lower_the_loss_and_stops_where_it_cannot_start():
    """newton's damping, on the NumPy plan and rows in memory (it takes any arrays)."""
    X, y, _ = newton_dask.make_data(2000, 4, 500, seed=3)
    X, y = dask.compute(X, y)
    gradient, hessian = newton_dask.compile_model(backend="numpy")
    result = newton_dask.newton(gradient, hessian, X, y, np.full(4, 5.0), max_passes=20)
    assert result.converged
    assert not all(p.accepted for p in result.passes)  # the full steps from so far away overshoot
    assert all(p.step == 1.0 for p in result.passes[-3:])  # near the optimum, whole steps
    reference = newton_dask.newton(gradient, hessian, X, y, np.zeros(4))
    np.testing.assert_allclose(result.w, reference.w, rtol=1e-7)
    # σ(X w) rounds to 1 for some rows: log(1 - p) is -inf, the loss nan, and newton stops
    stuck = newton_dask.newton(gradient, hessian, X, y, np.array([10.0, -10.0, 10.0, 10.0]), max_passes=20)
    assert len(stuck.passes) == 1 and not stuck.converged


LIMIT = 6 * 2**20  # bytes a pass may allocate at its peak


def test_newton_on_data_four_times_the_memory_limit():
    rows, d, chunk = 300_000, 10, 10_000  # 25.2 MB of data (4.2x the limit), blocks of 0.84 MB
    assert rows * (d + 1) * 8 >= 4 * LIMIT
    X, y, truth = newton_dask.make_data(rows, d, chunk, seed=1)
    gradient, hessian = newton_dask.compile_model()
    with dask.config.set(scheduler="synchronous"):
        # outside the trace: the plans for these shapes, and dask's first-use imports
        gradient({"X": X, "y": y, "w": np.zeros(d)})
        hessian({"X": X, "y": y, "w": np.zeros(d)})
        small_X, small_y, _ = newton_dask.make_data(100, d, 50)
        newton_dask.evaluate(gradient, hessian, small_X, small_y, np.zeros(d))
        # the first pass traced (every pass computes the same graph on other weights)
        result = newton_dask.newton(gradient, hessian, X, y, np.zeros(d), tol=1e-8, max_passes=11, trace=1)
        # the optimality condition at the result, written by hand in dask
        w = result.w
        condition = (X.T @ (1.0 / (1.0 + da.exp(-(X @ w))) - y)).compute()
    assert result.converged, [(p.loss, p.relative) for p in result.passes]
    assert result.steps <= 10
    peak = result.passes[0].peak
    assert 0 < peak < LIMIT, f"a pass allocated {peak / 2**20:.1f} MB at its peak, over the {LIMIT / 2**20:.0f} MB limit"
    start = np.linalg.norm(result.passes[0].grad)  # at w = 0: X^T (1/2 - y)
    assert np.linalg.norm(condition) < 1e-8 * start
    last = result.passes[-1]
    np.testing.assert_allclose(last.grad, condition, rtol=0, atol=1e-9 * start)
    # the model's weights, to the sampling error of 300,000 rows
    assert np.linalg.norm(w - truth) < 0.05 * np.linalg.norm(truth)
