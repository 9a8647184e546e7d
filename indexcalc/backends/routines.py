"""The routines a plan calls by name, written once against an array namespace `xp`.

NumPy's plan has its own, which write in place (indexcalc.emit); these build every result
anew where that is what the library wants (JAX's arrays are immutable; `xp.index_add` is
`.at[...].add` there and an in-place add elsewhere). Each takes `xp` first and is bound to
a backend's namespace when its plan is made.
"""

from __future__ import annotations

import itertools
import math

from .. import matrices
from ..matrices import SingularMatrixError
from ..emit import scatter_layout


def reduce(xp, op: str, values, axes: tuple[int, ...], total=None):
    """As functions.reduce_array: the max of nothing is -inf, the min +inf; logsumexp
    shifted by the maximum, always (`total`, the forward pass's Σ exp, is not read: a test
    of its range would be data-dependent control flow, which jax.jit cannot trace)."""
    if op == "sum":
        return xp.sum(values, axis=axes)
    if op == "mean":
        return xp.mean(values, axis=axes)
    empty = any(values.shape[a] == 0 for a in axes)
    if op in ("max", "min"):
        if empty:
            shape = tuple(n for a, n in enumerate(values.shape) if a not in axes)
            return xp.full(shape, -math.inf if op == "max" else math.inf, dtype=values.dtype)
        return (xp.max if op == "max" else xp.min)(values, axis=axes)
    top = xp.max(values, axis=axes, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)
    return xp.squeeze(top, axis=axes) + xp.log(xp.sum(xp.exp(values - top), axis=axes))


def reduce_few(xp, op: str, values, axes: tuple[int, ...]):
    """A max, min or sum over a few values, each a large array: one elementwise call per value."""
    combine = {"max": xp.maximum, "min": xp.minimum, "sum": xp.add}[op]
    values = xp.moveaxis(values, axes, tuple(range(-len(axes), 0)))
    at = list(itertools.product(*(range(n) for n in values.shape[-len(axes):])))
    out = values[(...,) + at[0]]
    for index in at[1:]:
        out = combine(out, values[(...,) + index])
    return out


_OPERATORS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "==": "__eq__", "!=": "__ne__"}


def compare(xp, op: str, left, right, dtype):
    """`[left op right]` as 1.0 and 0.0 in `dtype`, by the arrays' own operators."""
    if not hasattr(left, "shape"):  # a literal on the left: the right side is an array
        left, right, op = right, left, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    return xp.astype(getattr(left, _OPERATORS[op])(right), dtype)


def embed(xp, values, shape: tuple[int, ...], spec: str):
    """`values` on the diagonal of zeros (the letter a and the new last axis b equal), by
    an einsum with the identity, which every backend has."""
    inputs, out = spec.split("->")
    a = inputs[-1]
    b = next(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in inputs)
    eye = xp.eye(shape[-1], dtype=values.dtype)
    return xp.einsum(f"{out},{a}{b}->{out}{b}", values, eye)


def scatter(xp, values, groups):
    """As emit._scatter (the transposed convolution's col2im), with `xp.index_add`."""
    order, flips, shape, adds, crop = scatter_layout(tuple(values.shape), groups)
    values = xp.moveaxis(values, order, tuple(range(-len(order), 0)))
    if adds is None:
        return xp.reshape(values, shape)
    if flips:
        values = xp.flip(values, axis=flips)
    out = xp.zeros(shape, dtype=values.dtype)
    for into, take in adds:
        out = xp.index_add(out, into, values[take])
    return out[crop] if crop else out


def matrix(xp, name: str, stack, where: str = ""):
    """inv, det or logdet of stacked matrices by `xp.linalg`; logdet is nan for det < 0."""
    try:
        if name == "inv":
            return xp.linalg.inv(stack)
        if name == "det":
            return xp.linalg.det(stack)
        sign, logabs = xp.linalg.slogdet(stack)
    except Exception as err:  # noqa: BLE001 - each library has its own LinAlgError
        if "LinAlgError" in type(err).__name__ or "singular" in str(err).lower():
            raise SingularMatrixError(f"{where}: the matrix to invert is singular ({err})") from None
        raise
    return xp.where(sign > 0, logabs, xp.where(sign == 0, -math.inf, math.nan))


def solve(xp, stack, rhs, transpose: bool = False, where: str = ""):
    """As matrices.solve: (A or Aᵀ)⁻¹ b without the inverse."""
    batch = stack.ndim - 2
    rest = tuple(rhs.shape[batch + 1:])
    flat = xp.reshape(rhs, tuple(rhs.shape[: batch + 1]) + (math.prod(rest),))
    matrix = xp.swapaxes(stack, -1, -2) if transpose else stack
    try:
        out = xp.linalg.solve(matrix, flat)
    except Exception as err:  # noqa: BLE001
        if "LinAlgError" in type(err).__name__ or "singular" in str(err).lower():
            raise SingularMatrixError(f"{where}: the matrix to solve with is singular ({err})") from None
        raise
    return xp.reshape(out, tuple(out.shape[: batch + 1]) + rest)


def window_by_take(xp, x, lengths: tuple[int, ...], axes: tuple[int, ...]):
    """NumPy's sliding_window_view for a library without one: each window axis, in turn,
    by gathering positions (the window axes come last, in order)."""
    for length, axis in zip(lengths, axes):
        n = x.shape[axis] - length + 1
        positions = xp.arange(n)[:, None] + xp.arange(length)[None, :]
        taken = xp.take(x, xp.reshape(positions, (-1,)), axis=axis)
        shape = tuple(x.shape[:axis]) + (n, length) + tuple(x.shape[axis + 1:])
        x = xp.moveaxis(xp.reshape(taken, shape), axis + 1, -1)
    return x


assert set(matrices.BY_NAME) <= {"inv", "det", "logdet"}, "a new matrix function needs its routine here"
