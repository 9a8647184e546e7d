"""The reference evaluator: the notation's meaning, spelled out by enumeration.

A second reading of the notation, independent of the einsum evaluator: it shares nothing
with it but the summation rules (`indexcalc.indices`), so agreement between the two is a
real check. Every index is given its values explicitly, a tensor is read entry by entry
at those values, and a product is the literal sum, over every value of its summed
indices, of the product of its factors: no contraction order, no einsum.

To be fast enough to run every time, the enumeration is vectorised rather than done one
number at a time: the entries of the result being computed are handled together, each
bound index holding an integer array of its values over them (a tensor is read by
indexing its array with those), and a summed index runs over a new leading axis that is
then summed away. Where that would make an array larger than `BUDGET` numbers, the
remaining summed indices are looped over in Python one value at a time instead, so
memory stays bounded whatever the sizes.

`evaluate_loops_at` computes only some entries of the result (a random sample, or given
positions): the way to check a result too large to enumerate.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from . import functions, matrices, shifts
from .errors import IndexCalcError
from .expr import (
    MATRIX_REDUCTIONS, Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce,
    Shift, Sum, Tensor, leaf_factors,
)
from .indices import free_indices, relabelled_index, summed_indices
from .driver import run
from .program import Environment
from .wellformed import as_parsed

BUDGET = 1 << 20  # numbers in the largest array built; summed indices beyond it are looped in Python
CHUNK = 1 << 13  # entries of the result computed together, between two progress updates


class Bar(Protocol):
    """What a progress bar must do here (tqdm's does)."""

    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


# Makes a progress bar, as tqdm.tqdm does: called with total= (entries) and desc=.
Progress = Callable[..., Bar]


@dataclass(frozen=True)
class Entries:
    """Some entries of a result of `shape`: `values[k]` is the entry at `positions[k]`
    (a row of indices), so that `full[tuple(positions.T)] == values`."""

    positions: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]

    @property
    def total(self) -> int:
        """How many entries the whole result has."""
        return math.prod(self.shape)


def evaluate_loops(source, arrays: Mapping[str, Any], *, progress: Progress | None = None) -> np.ndarray:
    """Evaluate like `evaluate`, by enumerating the values of every index.

    `progress`, a callable like `tqdm.tqdm`, is given a bar for each equation."""
    return run(source, arrays, *_evaluators(None, None, progress))


def evaluate_loops_at(
    source,
    arrays: Mapping[str, Any],
    entries: int | np.ndarray,
    *,
    seed: int | None = 0,
    progress: Progress | None = None,
) -> Entries:
    """Some entries of the value `evaluate_loops` gives: `entries` random ones (all of
    them if there are fewer; drawn with `seed`), or those at the given positions (an
    array of shape (count, ndim)). Earlier equations of a program are computed whole,
    as the last one reads them."""
    counted = isinstance(entries, (int, np.integer)) and not isinstance(entries, bool)
    if not isinstance(entries, np.ndarray) and not (counted and entries >= 1):
        raise IndexCalcError(f"entries must be a positive whole number or an array of positions, got {entries!r}")
    node = as_parsed(source)
    last = node.equations[-1].lhs.key if isinstance(node, Program) else None
    return run(source, arrays, *_evaluators(last, (entries, seed), progress))


def _evaluators(last: str | None, sample, progress: Progress | None):
    """The per-equation and per-expression callbacks of `program.run`: the last equation
    (a bare expression, a lone equation) is sampled when `sample` is given."""

    def on_equation(eq: Equation, env: Environment):
        axes = eq.lhs.all_indices
        return _compute(eq.rhs, axes, frozenset(axes), env, sample if last in (None, eq.lhs.key) else None,
                        progress, str(eq.lhs))

    def on_expression(node: Expr, env: Environment):
        return _compute(node, free_indices(node), frozenset(), env, sample, progress, "value")

    return on_equation, on_expression


def _compute(node: Expr, axes, fixed, env: Environment, sample, progress: Progress | None, what: str):
    """The whole value of `node` over `axes`, or, with `sample`, an `Entries` of it."""
    shape = tuple(env.size(i) for i in axes)
    positions = None if sample is None else _positions(sample, shape)
    values = np.empty(math.prod(shape) if positions is None else len(positions))
    bar = progress(total=len(values), desc=what) if progress else None
    with np.errstate(all="ignore"):  # as Python floats: inf and nan, never a warning
        for start, frame in _blocks(axes, shape) if positions is None else _lists(axes, positions):
            block = np.broadcast_to(_value(node, frame, fixed, env), frame.shape).reshape(-1)
            values[start : start + len(block)] = block
            if bar:
                bar.update(len(block))
    if bar:
        bar.close()
    return values.reshape(shape) if positions is None else Entries(positions, values, shape)


def _blocks(axes, shape):
    """Frames for the whole result, some rows of its first axis at a time: each index
    runs over its own axis, so what depends on fewer indices is computed fewer times."""
    if not shape:
        yield 0, _Frame({}, ())
        return
    rest = math.prod(shape[1:])
    rows = max(1, CHUNK // max(1, rest))
    grids = [np.arange(n).reshape([n if a == k else 1 for a in range(len(shape))]) for k, n in enumerate(shape)]
    for first in range(0, shape[0], rows):
        block = grids[0][first : first + rows]
        yield first * rest, _Frame(dict(zip(axes, [block, *grids[1:]])), (len(block), *shape[1:]))


def _lists(axes, positions: np.ndarray):
    """Frames for listed entries, `CHUNK` at a time, each index on the one axis of the list."""
    for start in range(0, len(positions), CHUNK):
        chunk = positions[start : start + CHUNK]
        yield start, _Frame(dict(zip(axes, chunk.T)), (len(chunk),))


def _positions(sample, shape: tuple[int, ...]) -> np.ndarray:
    """The (count, ndim) positions asked for: given ones checked, or a number drawn."""
    entries, seed = sample
    if not isinstance(entries, np.ndarray):
        total = math.prod(shape)
        flat = np.sort(np.random.default_rng(seed).choice(total, size=min(entries, total), replace=False))
        return np.stack(np.unravel_index(flat, shape), axis=1) if shape else np.zeros((len(flat), 0), dtype=int)
    if entries.ndim != 2 or entries.shape[1] != len(shape) or entries.dtype.kind not in "iu":
        raise IndexCalcError(f"positions must be whole numbers of shape (count, {len(shape)}), got {entries.shape}")
    if entries.size and (entries.min() < 0 or np.any(entries >= np.array(shape))):
        raise IndexCalcError(f"a position lies outside the result's shape {shape}")
    return entries


class _Frame:
    """The entries being computed: each bound index's values over them, as an integer
    array that broadcasts against `shape` (or a plain int, for an index looped over).

    Its trailing axes run over entries of the result (a block of the whole, one axis per
    index, or a list of entries on one axis); each summed index enumerated in one go adds
    a leading axis. Every value computed in a frame has its number of axes."""

    def __init__(self, at: dict[str, Any], shape: tuple[int, ...]):
        self.at, self.shape = at, shape

    def bind(self, indices, values) -> _Frame:
        return _Frame({**self.at, **dict(zip(indices, values))}, self.shape)

    def widen(self, indices, sizes) -> _Frame:
        """One new leading axis for each index, running over all its values."""
        ndim = len(indices) + len(self.shape)
        grids = [np.arange(n).reshape([n if a == k else 1 for a in range(ndim)]) for k, n in enumerate(sizes)]
        return _Frame({**self.at, **dict(zip(indices, grids))}, tuple(sizes) + self.shape)

    def lift(self, value) -> np.ndarray:
        """`value` as float64 with the frame's number of axes (missing ones of size 1)."""
        value = np.asarray(value, dtype=np.float64)
        return value.reshape((1,) * (len(self.shape) - value.ndim) + value.shape)


def _value(node: Expr, frame: _Frame, fixed: frozenset[str], env: Environment) -> np.ndarray:
    if isinstance(node, Number):
        return frame.lift(node.value)
    if isinstance(node, (Tensor, Delta, Mask, Shift, Product)):
        factors = [node] if isinstance(node, (Tensor, Delta, Mask, Shift)) else list(leaf_factors(node))
        return _over("sum", summed_indices(node, fixed), frame, env, lambda inner: _product(factors, inner, fixed, env))
    if isinstance(node, Sum):
        return sum(_value(term, frame, fixed, env) for term in node.terms)
    if isinstance(node, Compare):
        left, right = _value(node.left, frame, fixed, env), _value(node.right, frame, fixed, env)
        return frame.lift(functions.compare_values(node.op, left, right, np.float64))
    if isinstance(node, Power):
        return np.power(_value(node.base, frame, fixed, env), _value(node.exponent, frame, fixed, env))
    if isinstance(node, Call):
        if node.relabel is not None:
            frame = frame.bind((relabelled_index(node, fixed),), (frame.at[node.relabel],))
        return frame.lift(functions.lookup(node.func).compute(_value(node.arg, frame, fixed, env)))
    if isinstance(node, MatrixCall):
        return _matrix_entry(node, frame, fixed, env)
    if isinstance(node, Reduce) and node.op in MATRIX_REDUCTIONS:
        rows = _matrix_rows(node.body, node.indices, frame, fixed | set(node.indices), env)
        return frame.lift(matrices.reference(node.op, rows, str(node)))
    if isinstance(node, Reduce):
        inner_fixed = fixed | set(node.indices)
        return _over(node.op, node.indices, frame, env, lambda inner: _value(node.body, inner, inner_fixed, env))
    raise TypeError(f"cannot evaluate {type(node).__name__}")


def _matrix_rows(body: Expr, pair, frame: _Frame, fixed, env: Environment) -> list:
    """The matrix over `pair`, entry by entry: body's value with the pair bound to (a, b)."""
    n = env.size(pair[0])
    if env.size(pair[1]) != n:
        from .errors import ShapeError

        raise ShapeError(f"a matrix function takes a square matrix: {pair[0]} has size {n}, {pair[1]} "
                         f"{env.size(pair[1])}")
    return [[_value(body, frame.bind(pair, (a, b)), fixed, env) for b in range(n)] for a in range(n)]


def _matrix_entry(node: MatrixCall, frame: _Frame, fixed, env: Environment) -> np.ndarray:
    """An entry of a matrix-valued function: the whole matrix by its explicit formula
    (the adjugate over the determinant), then the entry at the frame's (i, j)."""
    i, j = node.relabel
    rows = _matrix_rows(node.arg, node.relabel, frame, fixed, env)
    result = matrices.reference(node.func, rows, str(node))
    at_i, at_j = frame.at[i], frame.at[j]
    total = frame.lift(0.0)
    for a, row in enumerate(result):
        for b, entry in enumerate(row):
            total = total + np.where((at_i == a) & (at_j == b), frame.lift(entry), 0.0)
    return total


def _product(factors: list[Expr], frame: _Frame, fixed: frozenset[str], env: Environment) -> np.ndarray:
    """The product of `factors` at the frame's index values. A δ or a shift selects: where
    it fails the term is 0 whatever the others are (NaN or ∞ included), as `δ_ij x_j` is
    x_i and `w_k x_(i+k)` reads x only at i + k; the plan, which takes diagonals and
    windows instead of multiplying by 0/1, agrees. A mask multiplies, as on every route
    (the plan contracts its 0/1 array)."""
    term = frame.lift(1.0)
    keep = True
    for factor in factors:
        if isinstance(factor, Tensor):
            term = term * frame.lift(env.array(factor)[tuple(frame.at[i] for i in factor.all_indices)])
        elif isinstance(factor, Delta):
            keep = functools.reduce(np.logical_and, (frame.at[a] == frame.at[b] for a, b in factor.pairs), keep)
        elif isinstance(factor, Mask):  # the comparison of the index values themselves
            right = factor.offset + (0 if factor.right is None else frame.at[factor.right])
            term = term * frame.lift(functions.compare_values(factor.op, frame.at[factor.left], right, np.float64))
        elif isinstance(factor, Shift):  # p == 2i + k - 1, on the index values
            keep = keep & shifts.holds(factor, frame.at.__getitem__)
        else:
            term = term * _value(factor, frame, fixed, env)
    if keep is True:
        return term
    return np.where(frame.lift(keep) != 0, term, 0.0)


_COMBINE = {"logsumexp": np.logaddexp, "max": np.maximum, "min": np.minimum}  # of two parts; else added


def _over(op: str, indices: tuple[str, ...], frame: _Frame, env: Environment, body) -> np.ndarray:
    """`op` (sum, mean, max, min or logsumexp) of `body` over every value of `indices`.

    The first indices that fit in `BUDGET` are enumerated at once on leading axes; the
    rest are looped over, and the parts combined (a mean of equal parts' means, the
    logsumexp of their logsumexps, the max of their maxima)."""
    if not indices:
        return body(frame)
    sizes = [env.size(i) for i in indices]
    wide = len(sizes)
    if 0 not in sizes:
        room = BUDGET // max(1, math.prod(frame.shape))
        wide = next((k for k in range(len(sizes)) if math.prod(sizes[: k + 1]) > room), len(sizes))
    axes = tuple(range(wide))
    total = None
    for values in itertools.product(*(range(n) for n in sizes[wide:])):
        inner = frame.bind(indices[wide:], values).widen(indices[:wide], sizes[:wide])
        part = body(inner)
        part = functions.reduce_array(op, np.broadcast_to(part, tuple(sizes[:wide]) + part.shape[wide:]), axes)
        total = part if total is None else _COMBINE.get(op, np.add)(total, part)
    if op == "mean":
        total = total / math.prod(sizes[wide:])
    return frame.lift(total)
