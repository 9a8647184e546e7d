"""Numbers by einsum: every product becomes one opt_einsum contraction.

A contraction's path is planned once per (spec, shapes) and the planned expression is
reused, so evaluating the same formula again on arrays of the same shapes does no path
search. Sums broadcast their terms over the indices fixed from outside; functions and
comparisons act elementwise; reductions sum, average, or take the max or min over their
axes (einsum sums only, so a max is NumPy's over the body's array). A mask `[j <= i]`
and a shifted δ `δ_{p(i+k)}` are arrays of ones and zeros over their letters, made once
per shape, and contracted as one more einsum operand; a δ or a shifted δ selects, so
where its 0 met a NaN or ∞ the product is done again entry by entry (`selected`). The meaning of every index comes
from `indexcalc.indices`, the same place the explicit-loop evaluator asks.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping

import numpy as np
import opt_einsum

from . import functions, matrices, shifts
from .errors import IndexCalcError, ShapeError
from .expr import (
    MATRIX_REDUCTIONS, Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Reduce, Shift,
    Sum, Tensor, leaf_factors,
)
from .indices import free_indices, relabelled_index
from .driver import run
from .program import Environment

_PLANS: dict[tuple, Any] = {}


class _Bound:
    """A letter summed inside a reduction opened into its enclosing product: a fresh name,
    equal only to itself, so that it meets no letter of the same spelling outside."""

    __slots__ = ("letter",)

    def __init__(self, letter: str):
        self.letter = letter

    def __repr__(self) -> str:
        return f"_Bound({self.letter!r})"


def contraction(spec: str, shapes: tuple[tuple[int, ...], ...]):
    """The opt_einsum expression for `spec` on these shapes, planned once and cached."""
    key = (spec, shapes)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = opt_einsum.contract_expression(spec, *shapes, optimize="auto")
    return plan


def plan_cache_size() -> int:
    return len(_PLANS)


def evaluate(source, arrays: Mapping[str, Any], *, backend: str = "numpy") -> np.ndarray:
    """Evaluate an expression, equation or program with einsum contractions.

    `arrays` maps tensor names to arrays (scalars may be floats). The result's axes are
    the left-hand side's indices in order (for a bare expression: its free indices in
    order of first appearance). For a program, the last equation's value is returned.
    """
    if backend != "numpy":
        raise IndexCalcError(f"unknown backend {backend!r}; this version evaluates with 'numpy'")
    return run(source, arrays, _evaluate_equation, _evaluate_expression)


def _evaluate_equation(eq: Equation, env: Environment) -> np.ndarray:
    fixed = frozenset(eq.lhs.all_indices)
    value, axes = _Einsum(env).eval(eq.rhs, fixed)
    return _arrange(value, axes, eq.lhs.all_indices, env)


def _evaluate_expression(node: Expr, env: Environment) -> np.ndarray:
    value, axes = _Einsum(env).eval(node, frozenset())
    return _arrange(value, axes, free_indices(node), env)


def _arrange(value: np.ndarray, axes: tuple[str, ...], target: tuple[str, ...], env: Environment) -> np.ndarray:
    """Transpose `value` (axes named `axes`) to `target`, broadcasting absent axes."""
    present = [i for i in target if i in axes]
    value = np.transpose(value, [axes.index(i) for i in present]) if axes else np.asarray(value)
    value = value.reshape([env.size(i) if i in axes else 1 for i in target])
    if len(present) < len(target):
        value = np.broadcast_to(value, [env.size(i) for i in target])
    return np.array(value)  # a fresh array: never a read-only view, never the caller's


def _one_axis_per_letter(array: np.ndarray, axes: tuple) -> tuple[np.ndarray, tuple]:
    """`m_ii`'s array as its diagonal `m_i`: one axis per letter, as einsum reads a
    repeated letter, for the code that lines arrays up by their letters."""
    letters = tuple(dict.fromkeys(axes))
    if len(letters) == len(axes):
        return array, axes
    symbol = {i: opt_einsum.get_symbol(k) for k, i in enumerate(letters)}
    spec = "".join(symbol[i] for i in axes) + "->" + "".join(symbol[i] for i in letters)
    return np.einsum(spec, array), letters


class _Einsum:
    def __init__(self, env: Environment):
        self.env = env
        self.dtype = env.dtype  # numbers and δ take the read arrays' float type: float32 in, float32 out

    def eval(self, node: Expr, fixed: frozenset[str]):
        if isinstance(node, Number):
            return np.asarray(node.value, dtype=self.dtype), ()
        if isinstance(node, (Tensor, Delta, Mask, Shift, Product)):
            return self.product(node, fixed)
        if isinstance(node, Sum):
            return self.sum(node, fixed)
        if isinstance(node, Compare):
            return self.compare(node, fixed)
        if isinstance(node, Power):
            base, axes = self.eval(node.base, fixed)
            exponent, _ = self.eval(node.exponent, fixed)
            with np.errstate(all="ignore"):
                return np.power(base, exponent), axes
        if isinstance(node, Call):
            arg, axes = self.eval(node.arg, fixed)
            if node.relabel is not None:
                source = relabelled_index(node, fixed)
                if node.relabel in axes and source != node.relabel:
                    # σ_i(W_jk x_nk a_i) with i fixed outside: σ(W_ik x_nk a_i), the diagonal
                    arg = np.diagonal(arg, axis1=axes.index(source), axis2=axes.index(node.relabel))
                    axes = tuple(i for i in axes if i not in (source, node.relabel)) + (node.relabel,)
                axes = tuple(node.relabel if i == source else i for i in axes)
            with np.errstate(all="ignore"):
                return functions.lookup(node.func).compute(arg), axes
        if isinstance(node, MatrixCall):
            arg, axes = self.eval(node.arg, fixed)
            return self.matrix(node.func, node.relabel, arg, axes, str(node))
        if isinstance(node, Reduce):
            return self.product(node, fixed) if self.opens(node) else self.reduce(node, fixed)
        raise IndexCalcError(f"cannot evaluate {type(node).__name__} {node}")

    def operand(self, factor: Expr, fixed):
        if isinstance(factor, Tensor):
            return self.env.array(factor), factor.all_indices
        if isinstance(factor, Delta):
            raise AssertionError("deltas are split into pairs before this point")
        if isinstance(factor, Mask):
            return functions.mask_operand(factor, self.env.size, self.dtype)
        if isinstance(factor, Shift):
            return shifts.shift_array(factor, self.env.size, self.dtype)
        return self.eval(factor, fixed)

    def product(self, node: Expr, fixed: frozenset[str]):
        out = free_indices(node, fixed)
        operands, structural = self.factors(node, fixed)
        if len(operands) == 1 and operands[0][1] == out:
            return operands[0]
        letters = {ix: opt_einsum.get_symbol(k) for k, ix in enumerate(dict.fromkeys(
            [i for _, axes in operands for i in axes]))}
        spec = ",".join("".join(letters[i] for i in axes) for _, axes in operands)
        spec += "->" + "".join(letters[i] for i in out)
        arrays = [np.asarray(a) for a, _ in operands]
        plan = contraction(spec, tuple(a.shape for a in arrays))
        with np.errstate(invalid="ignore") if any(structural) else contextlib.nullcontext():  # 0 · ∞ of a δ: put right below
            value = plan(*arrays)
        if any(structural) and not all(structural) and not np.all(np.isfinite(value)):
            value = self.selected(operands, structural, out)
        return value, out

    def factors(self, node: Expr, fixed: frozenset[str]):
        """The einsum operands of a product (array, axes) and which are conditions on the
        index values. A sum or mean over a product-like body is opened into the enclosing
        contraction, its summed letters renamed apart (`_Bound`), so that one einsum, on
        one planned path, does the work: evaluated on its own, the body of a reduction
        keeps every index fixed outside, and a derivative's nested binders then make
        intermediates of ten and more axes."""
        factors = [node] if isinstance(node, (Tensor, Delta, Mask, Shift, Reduce)) else list(leaf_factors(node))
        operands: list[tuple[np.ndarray, tuple]] = []
        structural: list[bool] = []  # which operands are conditions on the index values
        for factor in factors:
            if isinstance(factor, Delta):
                for a, b in factor.pairs:
                    operands.append((self.identity(a, b), (a, b)))
                    structural.append(True)
            elif self.opens(factor):
                inner_fixed = fixed | set(factor.indices)
                inner, conditions = self.factors(factor.body, inner_fixed)
                visible = set(free_indices(factor, fixed))
                bound = {i: _Bound(i) for _, axes in inner for i in axes if isinstance(i, str) and i not in visible}
                operands += [(array, tuple(bound.get(i, i) for i in axes)) for array, axes in inner]
                structural += conditions
                if factor.op == "mean":
                    operands.append((np.asarray(1.0 / math.prod(self.size(i) for i in factor.indices), self.dtype), ()))
                    structural.append(False)
            else:
                operands.append(self.operand(factor, fixed))
                structural.append(isinstance(factor, Shift))
        return operands, structural

    def opens(self, node: Expr) -> bool:
        """Whether a reduction can join the enclosing contraction: a sum, or a mean over a
        non-empty range, of a product-like body (a sum of terms is evaluated term by term)."""
        return (isinstance(node, Reduce) and node.op in ("sum", "mean")
                and isinstance(node.body, (Tensor, Delta, Mask, Shift, Product, Reduce))
                and (node.op == "sum" or all(self.size(i) for i in node.indices)))

    def size(self, index) -> int:
        return self.env.size(index.letter if isinstance(index, _Bound) else index)

    def selected(self, operands, structural: list[bool], out: tuple[str, ...]) -> np.ndarray:
        """The product again, where a NaN or ∞ met a 0 of a δ or a shifted δ in the
        einsum: those select, so a term where one fails is 0 whatever its other factors
        (`δ_ij x_j` is x_i, not NaN wherever x has a NaN; `w_k x_(i+k)` reads x only at
        i + k), as the loops and the plan read them (a mask multiplies, on every route).
        Done over the full grid of letters, one value of the first letter at a time, and
        only when the einsum gave a non-finite value."""
        operands = [_one_axis_per_letter(array, axes) for array, axes in operands]
        letters = tuple(dict.fromkeys(i for _, axes in operands for i in axes))
        grid = [self.size(i) for i in letters]
        summed = tuple(k for k, i in enumerate(letters) if i not in out)

        def full(array, axes, at):
            array = np.transpose(array, [axes.index(i) for i in letters if i in axes])
            array = np.reshape(array, [self.size(i) if i in axes else 1 for i in letters])
            return array[at] if letters[0] in axes else array

        parts = []
        for first in range(grid[0]):
            at = (slice(first, first + 1),)
            keep, term = True, np.ones((1,) * len(letters), dtype=self.dtype)
            for (array, axes), is_condition in zip(operands, structural):
                if is_condition:
                    keep = keep & (full(array, axes, at) != 0)
                else:
                    term = term * full(array, axes, at)
            with np.errstate(all="ignore"):
                parts.append(np.where(keep, term, 0).sum(axis=summed, keepdims=True))
        value = np.concatenate(parts, axis=0)
        if 0 in summed:
            value = value.sum(axis=0, keepdims=True)
        value = np.reshape(value, [n for k, n in enumerate(grid) if k not in summed])
        kept = [i for i in letters if i in out]
        return np.transpose(value, [kept.index(i) for i in out]) if kept else value

    def identity(self, a: str, b: str) -> np.ndarray:
        n = self.env.size(a)
        if self.env.size(b) != n:
            raise ShapeError(f"δ pairs index {a} (size {n}) with index {b} (size {self.env.size(b)})")
        return np.eye(n, dtype=self.dtype)

    def sum(self, node: Sum, fixed: frozenset[str]):
        out = free_indices(node, fixed)
        total = None
        for term in node.terms:
            value = self.aligned(*self.eval(term, fixed), out)
            with np.errstate(all="ignore"):  # ∞ - ∞ is nan here, an answer, as in powers and functions
                total = value if total is None else total + value
        return np.broadcast_to(total, [self.env.size(i) for i in out]), out

    def compare(self, node: Compare, fixed: frozenset[str]):
        """`[a op b]`, elementwise over the sides' indices, which combine as a sum's terms."""
        out = free_indices(node, fixed)
        left = self.aligned(*self.eval(node.left, fixed), out)
        right = self.aligned(*self.eval(node.right, fixed), out)
        value = functions.compare_values(node.op, left, right, self.dtype)
        return np.broadcast_to(value, [self.env.size(i) for i in out]), out

    def matrix(self, name: str, pair: tuple[str, ...], value, axes: tuple[str, ...], where: str):
        """A matrix function of the pair's axes (moved last, rows then columns), the other
        axes a batch: np.linalg's stacked routines."""
        batch = tuple(i for i in axes if i not in pair)
        out = batch + tuple(pair)
        stack = np.broadcast_to(self.aligned(value, axes, out), [self.env.size(i) for i in out])
        result = matrices.compute(name, stack, where)
        return result, (batch if matrices.lookup(name).scalar else out)

    def aligned(self, value, axes: tuple[str, ...], out: tuple[str, ...]):
        """`value` (axes `axes`) transposed and reshaped to broadcast against `out`."""
        present = [i for i in out if i in axes]
        value = np.transpose(value, [axes.index(i) for i in present]) if axes else value
        return np.reshape(value, [self.env.size(i) if i in axes else 1 for i in out])

    def reduce(self, node: Reduce, fixed: frozenset[str]):
        body, axes = self.eval(node.body, fixed | set(node.indices))
        if node.op in MATRIX_REDUCTIONS:
            return self.matrix(node.op, node.indices, body, axes, str(node))
        where = tuple(axes.index(i) for i in node.indices)
        value = functions.reduce_array(node.op, body, where)
        return value, tuple(i for i in axes if i not in node.indices)
