"""dask block by block (issue 11, item 1): a program that is a sum or mean over the batch
of per-row terms runs as one NumPy-plan task per block and a tree sum
(indexcalc.backends.dask_blocks), and nothing else is split (indexcalc.batch).

- A generator of row-by-row programs (layers over a batch letter that is not always n nor
  always on axis 0, σ/tanh/exp, squared error, softmax cross-entropy, sum or mean, a
  weight penalty beside a mean, a Hessian by diff): each is split, and on any chunking
  (uneven, one row a block, float32) gives the NumPy plan's value and gradients.
- The same programs changed by one construct that reads across rows (a batch norm's mean
  on a hidden line, a penalty beside a sum, a function of the sum, a pairwise sum, a
  shift, a mask or a max over the batch, a batched array given whole): none is split.
- Never a wrong number: any program of the cross-route generator, one input chunked along
  any axis: split or not, where it is split the numbers are the NumPy plan's.
- The graph is lazy, runs on the threaded and the process scheduler (its tasks pickle).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import route_cases, sample

dask = pytest.importorskip("dask", reason="dask is not installed (pip install \"indexcalc[dask]\")")
da = pytest.importorskip("dask.array", reason="dask.array is not installed (pip install \"indexcalc[dask]\")")
from indexcalc.backends.dask_blocks import by_blocks  # noqa: E402

SETTINGS = sample(25, derandomize=True, database=None)


class RowProgram:
    """A drawn row-by-row program: its text, the batch letter's axis in each data array,
    and the arrays. `across` swaps in one construct that reads across rows."""

    FUNCTIONS = ("σ", "tanh", "exp")

    def __init__(self, draw, across: str | None = None):
        n = draw(st.sampled_from("nmb"))  # the batch letter
        self.rows = draw(st.integers(2, 13))
        self.features, self.hidden, self.classes = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        transposed = draw(st.booleans())  # X_jn: the batch on axis 1
        X = f"X_j{n}" if transposed else f"X_{n}j"
        self.axes = {"X": 1 if transposed else 0, "Y": 0}
        f = draw(st.sampled_from(self.FUNCTIONS))
        lines = [f"h_{n}k = {f}(W_kj {X} + b_k)"]
        if across == "batch norm":
            lines += [f"mu_k = mean_{n}(h_{n}k)", f"g_{n}k = h_{n}k - mu_k"]
        else:
            lines += [f"g_{n}k = h_{n}k"]
        lines.append(f"s_{n}c = V_ck g_{n}k")
        if draw(st.booleans()):
            term = f"logsumexp_c(s_{n}c) - s_{n}c Y_{n}c"
        else:
            term = f"(s_{n}c - Y_{n}c)(s_{n}c - Y_{n}c)"
        mean = draw(st.booleans())
        reduce = "mean" if mean else "sum"
        loss = {
            None: f"{reduce}_{n}({term})",
            "penalty beside a sum": f"sum_{n}({term}) + lam W_kj W_kj",
            "function of the sum": f"log(1 + sum_{n}({term}))",
            "pairwise": f"sum_{n}(sum_q(s_{n}c s_qc))",
            "shift": f"{reduce}_{n}({term} + X_{{({n}+1)j}} X_{{({n}+1)j}})",
            "mask": f"{reduce}_{n}([{n} <= 1] ({term}))",
            "max over the batch": f"max_{n}({term})",
            "batch norm": f"{reduce}_{n}({term})",
            "whole": f"{reduce}_{n}({term})",
        }[across]
        if across is None and mean and draw(st.booleans()):
            loss += " + lam W_kj W_kj"  # beside a mean, a term read once comes out once
        if across == "shift":
            lines[0] = f"h_{n}k = {f}(W_kj X_{n}j + b_k)"
            self.axes["X"] = 0
        self.sign = draw(st.sampled_from(["", "-", "0.5 "]))
        lines.append(f"L = {self.sign}{loss}" if across is None else f"L = {loss}")
        self.text = "\n".join(lines)
        self.across = across
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        d, h, c, r = self.features, self.hidden, self.classes, self.rows
        self.arrays = {
            "X": rng.normal(size=(d, r) if self.axes["X"] == 1 else (r, d)), "Y": rng.uniform(size=(r, c)),
            "W": rng.normal(size=(h, d)) * 0.5, "b": rng.normal(size=h) * 0.5, "V": rng.normal(size=(c, h)) * 0.5,
            "lam": 0.1,
        }
        self.chunks = tuple(draw(st.lists(st.integers(1, r), min_size=1, max_size=5).map(lambda s: _cut(s, r))))

    def lazy(self, dtype=np.float64) -> dict:
        out = {k: np.asarray(v, dtype) for k, v in self.arrays.items()}
        for name, axis in self.axes.items():
            if name == "Y" and self.across == "whole":
                continue  # Y given as a NumPy array: its rows are not blocks
            value = out[name]
            out[name] = da.from_array(value, chunks=tuple(self.chunks if a == axis else -1 for a in range(value.ndim)))
        return out


def _cut(sizes: list[int], rows: int) -> list[int]:
    """Block sizes adding to `rows`, from the drawn ones; at least two blocks where rows allow."""
    out, left = [], rows
    for s in sizes:
        if left == 0:
            break
        out.append(min(s, left))
        left -= out[-1]
    if left:
        out.append(left)
    return out if len(out) > 1 or rows < 2 else [1, rows - 1]


def _same(got, want, rtol: float, what: str) -> None:
    got = dask.compute(got)[0]
    assert np.shape(got) == np.shape(want), what
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, float(np.abs(want).max(initial=0))), err_msg=what)


def _check_split(f, program: RowProgram, dtype=np.float64, scheduler: str = "sync") -> None:
    lazy = program.lazy(dtype)
    given = {k: np.asarray(v, dtype) for k, v in program.arrays.items()}
    result = by_blocks(f, lazy)
    assert result is not None, f"not split:\n{program.text}"
    value, grads = dask.compute(*result, scheduler=scheduler)
    want, want_grads = f(given)
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    _same(value, want, rtol, f"value of\n{program.text}\nchunks {program.chunks}")
    assert set(grads) == set(want_grads)
    for name in grads:
        _same(grads[name], want_grads[name], rtol, f"gradient by {name} of\n{program.text}\nchunks {program.chunks}")
        assert np.asarray(grads[name]).dtype == np.asarray(want_grads[name]).dtype == np.dtype(dtype)


@SETTINGS
@given(st.data())
def test_row_by_row_programs_split_and_give_the_numpy_plans_numbers(data):
    program = RowProgram(data.draw)
    f = ic.compile(program.text, wrt=["W", "b", "V"])
    _check_split(f, program)


@sample(8, derandomize=True, database=None)
@given(st.data())
def test_float32_blocks_stay_float32(data):
    program = RowProgram(data.draw)
    _check_split(ic.compile(program.text, wrt=["W", "V"]), program, dtype=np.float32)


@sample(6, derandomize=True, database=None)
@given(st.data())
def test_a_hessian_splits(data):
    """The Hessian by the bias: derivative lines on the way, a sum over the batch at the end."""
    program = RowProgram(data.draw)
    hessian = ic.compile(ic.diff(ic.diff(program.text, "b_g"), "b_h"))
    _check_split(hessian, program)


ACROSS = ("batch norm", "penalty beside a sum", "function of the sum", "pairwise", "shift", "mask",
          "max over the batch", "whole")


@pytest.mark.parametrize("across", ACROSS)
@sample(5, derandomize=True, database=None)
@given(data=st.data())
def test_a_program_that_reads_across_rows_is_not_split(across, data):
    """...and the dask route runs its steps on the blocks, to the NumPy plan's numbers."""
    program = RowProgram(data.draw, across)
    f = ic.compile(program.text, wrt=["W", "V"])
    lazy = program.lazy()
    assert by_blocks(f, lazy) is None, program.text
    value, grads = dask.compute(*ic.compile(program.text, wrt=["W", "V"], backend="dask")(lazy), scheduler="sync")
    want, want_grads = f(program.arrays)
    _same(value, want, 1e-9, f"value of\n{program.text}")
    for name in want_grads:
        _same(grads[name], want_grads[name], 1e-9, f"gradient by {name} of\n{program.text}")


def test_a_gradient_by_the_data_is_not_split():
    rng = np.random.default_rng(3)
    X, w = rng.normal(size=(9, 2)), rng.normal(size=2)
    f = ic.compile("L = sum_n((X_nj w_j)^2)", wrt=["w", "X"])
    assert by_blocks(f, {"X": da.from_array(X, chunks=(4, 2)), "w": w}) is None
    assert by_blocks(ic.compile("L = sum_n((X_nj w_j)^2)", wrt=["w"]), {"X": da.from_array(X, chunks=(4, 2)), "w": w})


NEVER_WRONG = sample(40, derandomize=True, database=None)  # HYPOTHESIS_PROFILE=soak: 100,000


@NEVER_WRONG
@given(route_cases(), st.data())
def test_never_a_wrong_number(case, data):
    """Whatever the program and whichever input is chunked along whichever axis: where the
    program is split, the blocks' sum is the NumPy plan's number (about one program in
    sixteen of this generator is split: 18 of 300 in a count here)."""
    if not case.scalar:
        return
    arrays = case.arrays()
    chunkable = [(k, a) for k, v in arrays.items() for a in range(np.ndim(v)) if np.shape(v)[a] >= 2]
    if not chunkable:
        return
    name, axis = data.draw(st.sampled_from(chunkable))
    value = np.asarray(arrays[name], np.float64)
    lazy = dict(arrays, **{name: da.from_array(value, chunks=tuple(1 if a == axis else -1 for a in range(value.ndim)))})
    wrt = [w for w in ([case.wrt.partition("_")[0]] if case.wrt else []) if w != name]
    try:
        f = ic.compile(case.text, wrt=wrt)
        want, want_grads = f(arrays)
    except ic.IndexCalcError:
        return
    result = by_blocks(f, lazy)
    if result is None:
        return
    value, grads = dask.compute(*result, scheduler="sync")
    _same(value, want, 1e-7, f"value\n{case}")
    for k in grads:
        _same(grads[k], want_grads[k], 1e-7, f"gradient by {k}\n{case}")


def _logistic():
    rng = np.random.default_rng(5)
    X, y, w = rng.normal(size=(40, 3)), (rng.uniform(size=40) < 0.5) * 1.0, rng.normal(size=3)
    text = "z_n = X_nj w_j\np_n = σ(z_n)\nL = -sum_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))"
    return ic.compile(text, wrt=["w"]), {"X": X, "y": y, "w": w}


def test_the_dask_route_takes_the_blocks():
    """`compile(..., backend="dask")` and a call on chunked arrays: one task per block and
    the tree sum, not the plan's steps (their graph names each step's routine)."""
    f, arrays = _logistic()
    lazy = {"X": da.from_array(arrays["X"], chunks=(10, 3)), "y": da.from_array(arrays["y"], chunks=10), "w": arrays["w"]}
    value, grads = ic.compile(f.text, wrt=["w"], backend="dask")(lazy)
    keys = [k[0] if isinstance(k, tuple) else k for k in dict(value.__dask_graph__())]
    layers = {k.rpartition("-")[0] for k in keys}
    assert any(layer.startswith("indexcalc-blocks") for layer in layers), layers
    assert not any("einsum" in layer or "matmul" in layer for layer in layers), layers
    np.testing.assert_allclose(dask.compute(value)[0], f(arrays)[0], rtol=1e-12)


def test_the_graph_is_lazy_and_runs_on_threads_and_processes():
    f, arrays = _logistic()
    reads = []

    def read(block):
        reads.append(block.shape)
        return block

    lazy = {"X": da.from_array(arrays["X"], chunks=(10, 3)).map_blocks(read, dtype=float, meta=np.empty((0, 0))),
            "y": da.from_array(arrays["y"], chunks=10), "w": arrays["w"]}
    value, grads = by_blocks(f, lazy)
    assert not reads, "blocks were read before dask.compute"
    want, want_grads = f(arrays)
    for scheduler in ("threads", "sync", "processes"):
        got, got_grads = dask.compute(value, grads, scheduler=scheduler)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(got_grads["w"], want_grads["w"], rtol=1e-12)
    assert reads  # the threaded and synchronous runs read the blocks here


def test_blocks_of_many_shapes_plan_one_at_a_time_on_threads():
    """dask's threads plan a call's first blocks side by side, and a plan is made with the
    printers and `ast.parse`: the blocks of many shapes give the NumPy plan's numbers on
    threads, and Python's recursion limit ends as the printers leave it (raised once, to
    PRINTING_STACK where it was lower; test_printing_threads has the why)."""
    import sys

    from indexcalc.printing import PRINTING_STACK

    limit = sys.getrecursionlimit()
    rng = np.random.default_rng(11)
    text = "z_n = X_nj w_j\np_n = σ(z_n)\nL = -sum_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))"
    for _ in range(10):
        sizes = tuple(int(s) for s in rng.integers(1, 9, size=6))
        rows = sum(sizes)
        X, y, w = rng.normal(size=(rows, 4)), (rng.random(rows) < 0.5) * 1.0, rng.normal(size=4)
        lazy = {"X": da.from_array(X, chunks=(sizes, 4)), "y": da.from_array(y, chunks=(sizes,)), "w": w}
        hessian = ic.compile(ic.diff(ic.diff(text, "w_g"), "w_h"))
        got = dask.compute(hessian(lazy)[0], scheduler="threads")[0]
        np.testing.assert_allclose(got, hessian({"X": X, "y": y, "w": w})[0], rtol=1e-10)
    assert sys.getrecursionlimit() == max(limit, PRINTING_STACK)


def test_training_on_chunked_data_takes_the_blocks(monkeypatch):
    """A run on data the user chunked: each full-batch step's shuffled batch keeps a block
    per chunk (dask gathers within the chunks), so the step runs block by block, and the
    run follows NumPy's losses and parameters."""
    from indexcalc.backends import dask_blocks
    from indexcalc.modelfile import load
    from indexcalc.optimisers import SGD
    from indexcalc.train import Trainer
    from indexcalc.training_arrays import to_numpy

    mf = load(os.path.join(os.path.dirname(ic.__file__), "examples", "logistic_regression.ic"))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 2))
    y = np.sign(x @ [1.0, -2.0] + 0.3 * rng.normal(size=400))
    want = Trainer(mf.model, SGD(lr=0.5), seed=1).fit({"x": x, "y": y}, 3)
    split, taken = dask_blocks.by_blocks, []
    monkeypatch.setattr(dask_blocks, "by_blocks", lambda f, a: taken.append(split(f, a)) or taken[-1])
    data = {"x": da.from_array(x, chunks=(100, 2)), "y": da.from_array(y, chunks=100)}
    got = Trainer(mf.model, SGD(lr=0.5), seed=1, backend="dask").fit(data, 3)
    assert sum(t is not None for t in taken) >= 3, taken  # every step's loss and gradient
    assert [h["loss"] for h in got.history] == pytest.approx([h["loss"] for h in want.history], rel=1e-12)
    np.testing.assert_allclose(to_numpy(got.params["w"]), want.params["w"], rtol=1e-12)
