"""dask, block by block: the NumPy plan run on each block of the batch as one task, and
the blocks' results added by a tree of tasks.

dask's own route runs the plan's steps on dask arrays: each step is a graph layer with a
task per block, built in Python on every call (tens of milliseconds for a small model,
whatever the data's size), and its tasks are scheduled one by one. When the program is a
sum or a mean over the batch of per-row terms (`indexcalc.batch` decides, from its
lines), the same numbers come from one task per block, the compiled NumPy plan on that
block's arrays, and a tree of additions, as `dask.array.reduction` adds a sum's blocks:
a graph as small as the blocks are few, each task at NumPy's speed. Nothing of the data
is gathered: a block is read by its task, and only the value and gradients, the
parameters' size, travel up the tree.

A task carries the program as its lines (`_Program` pickles without its plans), so a
distributed scheduler can ship it to another process, which plans each block shape once.
"""

from __future__ import annotations

import itertools
import threading
import uuid
import weakref
from typing import Any, Mapping

import numpy as np

from ..batch import MEAN, batch_reduction
from ..compile import Compiled, lower
from ..errors import IndexCalcError
from ..program import numeric_array


class _Program:
    """A compiled program as its tasks carry it: its lines, and the NumPy callable made
    from them where the task runs (once per process; it keeps a plan per block shape).

    Planning runs one block shape at a time (`_PLANNING`): dask's threads start a call's
    first blocks side by side, and each would plan the same shape again, filling the
    compiled program's table of plans, which has no lock of its own, at once."""

    def __init__(self, compiled):
        self.lines = (compiled.forward, compiled.backward, compiled.params, compiled.scales)
        self._numpy, self._planned = None, set()

    def __getstate__(self) -> dict:
        return {"lines": self.lines}

    def __setstate__(self, state: dict) -> None:
        self.lines, self._numpy, self._planned = state["lines"], None, set()

    def __call__(self, arrays: dict[str, Any]) -> tuple:
        signature = tuple((np.shape(a), np.result_type(a).str) for a in arrays.values())
        if signature in self._planned:
            return self.compiled()(arrays)
        with _PLANNING:
            result = self.compiled()(arrays)
            self._planned.add(signature)
        return result

    def compiled(self):
        if self._numpy is None:
            self._numpy = Compiled(*self.lines)
        return self._numpy


_PLANNING = threading.Lock()


class _Split:
    """What one compiled program's block-by-block calls remember: its program as tasks
    carry it, the answer of `batch_reduction` per choice of batched inputs, and the value's
    shape per block signature."""

    def __init__(self, compiled):
        self.program = _Program(compiled)
        self.kinds: dict[tuple, str | None] = {}
        self.value_shapes: dict[tuple, tuple[int, ...]] = {}

    def kind(self, axes: dict[str, int]) -> str | None:
        key = tuple(sorted(axes.items()))
        if key not in self.kinds:
            forward, _, _, scales = self.program.lines
            with _PLANNING:  # one plan at a time (see _Program)
                self.kinds[key] = batch_reduction(forward, scales, axes)
        return self.kinds[key]

    def value_shape(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype) -> tuple[int, ...]:
        key = (tuple(shapes.items()), dtype)
        if key not in self.value_shapes:
            with _PLANNING:
                lowering, value, _ = lower(self.program.compiled(), shapes, [dtype] * len(shapes), {})
            self.value_shapes[key] = lowering.shapes[value]
        return self.value_shapes[key]


_SPLITS: "weakref.WeakKeyDictionary[Any, _Split]" = weakref.WeakKeyDictionary()


def by_blocks(compiled, arrays: Mapping[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The call's value and gradients, as dask arrays computed block by block; None where
    the program is not a sum or mean over the batch, or the arrays are not chunked along
    one batch axis each (the caller then runs the plan's steps on dask arrays). Batched
    inputs are the dask arrays split into blocks along one axis; every other input goes
    whole to every task."""
    import dask.array as da

    if compiled.sizing:
        return None
    try:
        values = {k: arrays[k] for k in compiled.inputs}
        types = [v.dtype if isinstance(v, da.Array) else numeric_array(k, v).dtype for k, v in values.items()]
    except (KeyError, TypeError, IndexCalcError):
        return None  # the full path says what is wrong
    axes = {}
    for key, value in values.items():
        split = [a for a, sizes in enumerate(getattr(value, "chunks", ())) if len(sizes) > 1]
        if len(split) > 1 or (split and not isinstance(value, da.Array)):
            return None
        axes.update((key, a) for a in split)
    if not axes:
        return None
    split = _SPLITS.get(compiled)
    if split is None:
        split = _SPLITS[compiled] = _Split(compiled)
    kind = split.kind(axes)
    if kind is None:
        return None
    first = next(iter(axes))
    rows = values[first].chunks[axes[first]]
    if any(values[k].shape[a] != sum(rows) for k, a in axes.items()):
        return None  # a shape error, which the full path reports
    if any(name in axes for name in compiled.params):
        return None  # a gradient by the data: as large as the data, not a sum
    dtype = np.result_type(*[t if t.kind == "f" else np.float64 for t in types])
    return _graph(split, values, axes, rows, dtype, kind, compiled.params)


def _graph(split: _Split, values: dict, axes: dict[str, int], rows: tuple[int, ...], dtype: np.dtype,
           kind: str, params: list[str]):
    """One `blockwise` task per block, each a row of its flattened value and gradients,
    and dask's tree sum over the rows; the value and gradients are slices of the sum."""
    import dask.array as da

    # blockwise's axis labels: 0 the batch, 1 the row of results, 2 on each other axis of its own
    labels, args = itertools.count(2), []
    for key, value in values.items():
        if isinstance(value, da.Array):
            args += [value, tuple(0 if axes.get(key) == a else next(labels) for a in range(value.ndim))]
        else:
            args += [value, None]
    shapes = {k: np.shape(v) if k not in axes else _block_shape(v.shape, axes[k], rows[0]) for k, v in values.items()}
    value_shape = split.value_shape(shapes, dtype)
    layout = [value_shape] + [tuple(np.shape(values[name])) for name in params]
    width = sum(int(np.prod(s)) for s in layout)
    first, total = next(iter(axes)), sum(rows)
    weigh = (list(values).index(first), axes[first], total) if kind == MEAN else None
    # named, not tokenized: dask would pickle the program to hash it, on every call
    blocks = da.blockwise(_block, (0, 1), *args, name=f"indexcalc-blocks-{uuid.uuid4().hex}", dtype=dtype,
                          new_axes={1: width}, adjust_chunks={0: lambda _: 1}, concatenate=False,
                          meta=np.empty((0, 0), dtype),
                          program=split.program, names=list(values), float_type=dtype, weigh=weigh)
    flat, out, at = blocks.sum(axis=0), [], 0
    for shape in layout:
        size = int(np.prod(shape))
        out.append(flat[at:at + size].reshape(shape))
        at += size
    return out[0], dict(zip(params, out[1:]))


def _block_shape(shape: tuple[int, ...], axis: int, count: int) -> tuple[int, ...]:
    return shape[:axis] + (count,) + shape[axis + 1:]


def _single(blocks):
    """The one block blockwise gives, as a list per axis the output does not have."""
    while isinstance(blocks, list):
        (blocks,) = blocks
    return blocks


def _block(*arrays, program: _Program, names: list[str], float_type: np.dtype, weigh: tuple | None) -> np.ndarray:
    """One block's task: the NumPy plan on its arrays, its value and gradients in one row
    (weighted by the block's rows/N for a mean over the batch)."""
    arrays = [_single(a) for a in arrays]
    value, grads = program(dict(zip(names, arrays)))
    row = np.concatenate([np.ravel(value)] + [np.ravel(grads[name]) for name in program.lines[2]]).astype(float_type)
    if weigh is not None:
        which, axis, total = weigh
        row *= float_type.type(arrays[which].shape[axis] / total)
    return row[None, :]
