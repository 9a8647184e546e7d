"""dask: the plan builds one lazy graph for the loss and every gradient, over arrays
chunked along the batch; reductions over the batch become dask's tree reductions, and
whatever scheduler the user has set computes it (threads, or a dask.distributed cluster).
A loss that is a sum or mean over the batch of per-row terms takes a shorter route: the
NumPy plan on each block, one task a block (dask_blocks.py)."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend


def _whole(stack):
    """The stack with each matrix in one chunk: the matrix routines below run NumPy's per
    block of the batch (dask.array.linalg has no determinant and no batched inverse)."""
    return stack.rechunk({stack.ndim - 2: -1, stack.ndim - 1: -1})


def _inv(stack):
    return _whole(stack).map_blocks(np.linalg.inv, dtype=stack.dtype)


def _det(stack):
    return _whole(stack).map_blocks(np.linalg.det, drop_axis=[stack.ndim - 2, stack.ndim - 1], dtype=stack.dtype)


def _slogdet(stack):
    whole, matrix = _whole(stack), [stack.ndim - 2, stack.ndim - 1]
    return tuple(whole.map_blocks(lambda block, k=k: np.linalg.slogdet(block)[k], drop_axis=matrix, dtype=stack.dtype)
                 for k in (0, 1))


def _solve(stack, rhs):
    import dask.array as da

    stack, rhs = _whole(stack), _whole(rhs)
    batch = np.broadcast_shapes(stack.shape[:-2], rhs.shape[:-2])  # NumPy's solve broadcasts them
    stack = da.broadcast_to(stack, batch + stack.shape[-2:])
    rhs = da.broadcast_to(rhs, batch + rhs.shape[-2:]).rechunk(stack.chunks[:-2] + rhs.chunks[-2:])
    return stack.map_blocks(np.linalg.solve, rhs, dtype=rhs.dtype, chunks=rhs.chunks)  # the right-hand side's blocks


class DaskBackend(ArrayBackend):
    def __init__(self):
        import dask.array as da
        from types import SimpleNamespace

        def index_add(out, index, values):
            out[index] = out[index] + values
            return out

        def flip(x, axis):
            for a in axis if isinstance(axis, (tuple, list)) else (axis,):
                x = da.flip(x, a)
            return x

        def einsum(spec, *operands):
            """dask's einsum takes a diagonal (a letter twice in one operand) only where
            both axes are chunked alike: those axes become one chunk each first."""
            inputs = spec.split("->")[0].split(",")
            operands = [x.rechunk({a: -1 for a, letter in enumerate(sub) if sub.count(letter) > 1})
                        if len(set(sub)) < len(sub) else x for sub, x in zip(inputs, operands)]
            return da.einsum(spec, *operands)

        def sigmoid(x):
            """σ with no exp that overflows: e^min(x, 0) / (1 + e^-|x|). The table's
            1 / (1 + e^-x) overflows below x ≈ -709, which a NumPy plan computes with its
            warnings off; a dask graph computes later, where the caller's warnings are on."""
            return da.exp(da.minimum(x, 0.0)) / (1.0 + da.exp(-abs(x)))

        linalg = SimpleNamespace(inv=_inv, solve=_solve, det=_det, slogdet=_slogdet)
        self.da = da
        super().__init__("dask", da, {
            "permute_dims": da.transpose, "materialize": lambda x: x, "astype": lambda x, dtype: x.astype(dtype),
            "windows": lambda x, lengths, axes: da.lib.stride_tricks.sliding_window_view(x, lengths, axis=axes),
            "index_add": index_add, "flip": flip, "linalg": linalg, "einsum": einsum, "sigmoid": sigmoid,
            "float32": np.float32, "float64": np.float64, "nan": np.nan, "inf": np.inf,
        })

    reuses_plans = False

    def own_route(self, compiled, arrays):
        """A sum or mean over the batch of per-row terms, on arrays chunked along the batch,
        runs block by block (indexcalc.backends.dask_blocks); anything else, step by step.
        No fast path: each call sees whether its arrays split into blocks (microseconds,
        where building a graph takes milliseconds)."""
        from .dask_blocks import by_blocks

        result = by_blocks(compiled, arrays)
        return None if result is None else (result, None)

    def constant(self, array, like):
        return self.da.from_array(array)  # a mask or shift array: one chunk (xp.reshape and the like need dask's)

    def asarray(self, value, dtype, like):
        if isinstance(value, self.da.Array):
            return value if value.dtype == dtype else value.astype(dtype)
        return self.da.from_array(np.asarray(value, dtype=dtype))


def load() -> DaskBackend:
    return DaskBackend()
