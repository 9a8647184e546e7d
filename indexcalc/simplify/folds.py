"""Constant folding of powers, calls, masks and comparisons; a δ standing alone."""

from __future__ import annotations

import numpy as np

from .. import functions
from ..expr import Call, Compare, Delta, Expr, Mask, Number, Power, Product
from ..indices import free_indices
from .products import eliminate_delta
from .terms import Context


def fold_power(node: Power, ctx: Context) -> Expr | None:
    """u^1 → u; 2^3 → 8; u^0 → 1 where u runs over no index."""
    if node.exponent == Number(1.0):
        return node.base
    if isinstance(node.base, Number) and isinstance(node.exponent, Number):
        try:
            value = node.base.value ** node.exponent.value
        except (OverflowError, ZeroDivisionError):
            return None
        return Number(value) if isinstance(value, float) or isinstance(value, int) else None
    if node.exponent == Number(0.0) and not free_indices(node.base, ctx.fixed):
        return Number(1.0)
    return None


def fold_call(node: Call, ctx: Context) -> Expr | None:
    """A function of a number is a number (relu'(2) → 1)."""
    if isinstance(node.arg, Number):
        with np.errstate(all="ignore"):
            value = float(functions.lookup(node.func).compute(np.float64(node.arg.value)))
        return Number(value) if np.isfinite(value) else None
    return None


def fold_mask(node: Mask, ctx: Context) -> Expr | None:
    """[i <= i] → 1, [i < i] → 0, [i >= 0] → 1 (index values start at 0): a mask that
    holds or fails at every value is that number. δ elimination makes the first kind
    (`[j <= i] δ_ij` → `[i <= i]`); like δ_ii with i fixed, it folds where it stands."""
    value = _constant_mask(node)
    return None if value is None else Number(float(value))


def _constant_mask(node: Mask) -> bool | None:
    """Whether `node` holds at every index value, fails at every one, or depends (None)."""
    compare = functions.COMPARE[node.op]
    if node.right == node.left:  # i op i + c, at every i: 0 op c
        return bool(compare(0, node.offset))
    if node.right is None and (node.offset < 0 or (node.offset == 0 and node.op in (">=", "<"))):
        return bool(compare(0, node.offset))  # i op c at i = 0, 1, 2, ... all alike: as at 0
    return None


def fold_compare(node: Compare, ctx: Context) -> Expr | None:
    """[2 < 3] → 1: a comparison of two numbers is a number."""
    if isinstance(node.left, Number) and isinstance(node.right, Number):
        return Number(float(functions.COMPARE[node.op](node.left.value, node.right.value)))
    return None


def lone_delta(node: Delta, ctx: Context) -> Expr | None:
    """A δ standing alone sums what it repeats: δ_(ii)(gh) → δ_gh."""
    return eliminate_delta(Product((node,)), ctx)
