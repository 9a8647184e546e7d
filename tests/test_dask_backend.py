"""dask (issue 11, item 3): the compiled plan on arrays chunked along the batch, lazily,
and full-batch Newton on data that does not fit in the memory it is given.

- On a few programs (the example's logistic regression with its Hessian, an MLP of
  test_compile, the softmax classifier of examples/ with a Hessian by its bias), the
  compiled loss, gradients and Hessians on dask arrays are dask arrays, nothing is
  computed until `dask.compute`, and then they are the NumPy plan's numbers (rtol 1e-6,
  float64); the logistic regression's are also the closed forms Xᵀ(p - y) and
  Xᵀ diag(p(1 - p)) X.
- examples/newton_dask.py's Newton's method, on data made block by block and four times
  the memory limit, reaches the optimality condition Xᵀ(σ(Xw) - y) = 0 (written here by
  hand in dask, not by indexcalc) in at most 10 steps, and a pass of the gradient and
  Hessian over all the rows allocates less than the limit at its peak (tracemalloc,
  which sees NumPy's buffers). The scheduler is the synchronous one, so the bound does
  not depend on how many threads the machine has.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import indexcalc as ic
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
    if name == "logistic regression":  # and both are the closed forms
        X, y, w = arrays["X"], arrays["y"], arrays["w"]
        p = sigmoid(X @ w)
        (_, grads), (hessian, _) = expected
        np.testing.assert_allclose(grads["w"], X.T @ (p - y), rtol=1e-10)
        np.testing.assert_allclose(hessian, X.T @ (X * (p * (1 - p))[:, None]), rtol=1e-10)


LIMIT = 6 * 2**20  # bytes a pass may allocate at its peak


def test_newton_on_data_four_times_the_memory_limit():
    rows, d, chunk = 300_000, 10, 10_000  # 25.2 MB of data (4.2x the limit), blocks of 0.84 MB
    assert rows * (d + 1) * 8 >= 4 * LIMIT
    X, y, truth = newton_dask.make_data(rows, d, chunk, seed=1)
    gradient, hessian = newton_dask.compile_model()
    with dask.config.set(scheduler="synchronous"):
        small_X, small_y, _ = newton_dask.make_data(100, d, 50)
        newton_dask.evaluate(gradient, hessian, small_X, small_y, np.zeros(d))  # dask's own first-use imports and caches
        result = newton_dask.newton(gradient, hessian, X, y, np.zeros(d), tol=1e-8, max_passes=11)
        assert result.converged, [(p.loss, p.relative) for p in result.passes]
        assert result.steps <= 10
        w = result.w

        # one more pass over all the rows, at the optimum, traced: the compiled gradient and Hessian
        arrays = {"X": X, "y": y, "w": w}
        loss, grads = gradient(arrays)
        H, _ = hessian(arrays)
        tracemalloc.start()
        try:
            loss, g, H = dask.compute(loss, grads["w"], H)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # the optimality condition, written by hand in dask (a pass of its own: computed
        # with the plan's outputs, dask's ordering holds every block until the end)
        condition = (X.T @ (1.0 / (1.0 + da.exp(-(X @ w))) - y)).compute()
    assert peak < LIMIT, f"a pass allocated {peak / 2**20:.1f} MB at its peak, over the {LIMIT / 2**20:.0f} MB limit"
    start = np.linalg.norm(result.passes[0].grad)  # at w = 0: X^T (1/2 - y)
    assert np.linalg.norm(condition) < 1e-8 * start
    np.testing.assert_allclose(g, condition, rtol=0, atol=1e-9 * start)
    assert np.all(np.linalg.eigvalsh(H) > 0)  # a minimum
    assert np.isclose(loss, result.passes[-1].loss, rtol=1e-12)
    # the model's weights, to the sampling error of 300,000 rows
    assert np.linalg.norm(w - truth) < 0.05 * np.linalg.norm(truth)
