"""The rules of a product: numbers folded, δs contracted, zero carriers dropped, equal
factors made powers, factors in the notes' order, factors taken into a sum beside them."""

from __future__ import annotations

import math
from dataclasses import replace

from ..expr import Delta, Expr, Mask, Number, Power, Product, Reduce, Sum, leaf_factors
from ..indices import free_indices, occurrence_counts
from ..relabel import exposed_letters, letters_in, rebind_reduction, rename, rename_summed_apart
from .terms import (
    Context, coefficient, is_zero, make_product, merges_a_pair, sized_apart_from_carriers, sized_letters, sorted_factors,
)


def flatten_product(node: Product, ctx: Context) -> Expr | None:
    """Parentheses around a product only group: open them."""
    if any(isinstance(f, Product) for f in node.factors):
        return Product(tuple(leaf_factors(node)))
    return None


def fold_numbers(node: Product, ctx: Context) -> Expr | None:
    """One leading number: 2 x 3 y → 6 x y; a lone factor stands alone."""
    c, rest = coefficient(node)
    if c == 0 and rest:
        kept = _zero_carrier(node, ctx)
        return None if kept == node else kept
    result = make_product(c, rest)
    return None if result == node else result


def _zero_carrier(node: Product, ctx: Context) -> Expr:
    """0 times anything is 0, but a zero must keep the indices it runs over."""
    if not free_indices(node, ctx.fixed):
        return Number(0.0)
    return node


def order_factors(node: Product, ctx: Context) -> Expr | None:
    """Numbers, masks, brackets, functions, tensors, δ, divisors: the order of the notes
    (`[j <= i] exp(s_ij)`)."""
    ordered = sorted_factors(node.factors)
    return None if ordered == node.factors else Product(ordered)


def eliminate_delta(node: Product, ctx: Context) -> Expr | None:
    """δ_ig x_i → x_g: a δ contracted through an index it sums is removed by renaming."""
    counts = occurrence_counts(node, ctx.fixed)

    def summed(i: str) -> bool:
        return i not in ctx.fixed and counts[i] > 1

    for k, factor in enumerate(node.factors):
        if not isinstance(factor, Delta):
            continue
        for p, (a, b) in enumerate(factor.pairs):
            if a == b:
                if a in ctx.fixed:
                    return drop_delta_pair(node, k, p, None, None, ctx)
                continue
            for old, new in ((a, b), (b, a)):
                if summed(old) and (summed(new) or new in ctx.fixed or counts[old] == 2):
                    result = drop_delta_pair(node, k, p, old, new, ctx)
                    if result is not None:
                        return result
    return None


def drop_delta_pair(node: Product, k: int, p: int, old, new, ctx: Context) -> Expr | None:
    """`node` without pair `p` of its δ factor `k`, and `old` renamed `new` if given; None
    where that rename would merge the two axes of a matrix function (`merges_a_pair`)."""
    delta = node.factors[k]
    pairs = [pair for q, pair in enumerate(delta.pairs) if q != p]
    rest = list(node.factors[:k] + node.factors[k + 1 :])
    if pairs:
        rest.append(Delta(tuple(a for a, _ in pairs), tuple(b for _, b in pairs)))
    result = Product(tuple(rest)) if rest else Number(1.0)
    if old is not None and isinstance(result, Product):
        if merges_a_pair(result, old, new):
            return None
        result = rename(result, old, new, ctx.fixed, ctx.fresh, merge=True)
    return result


def drop_repeated_masks(node: Product, ctx: Context) -> Expr | None:
    """[j <= i] [j <= i] → [j <= i]: a mask is 0 or 1, its square itself (not a power)."""
    masks = [f for f in node.factors if isinstance(f, Mask)]
    if len(set(masks)) == len(masks):
        return None
    seen: set[Expr] = set()
    kept = [f for f in node.factors if not isinstance(f, Mask) or (f not in seen and not seen.add(f))]
    return Product(tuple(kept))


def combine_powers(node: Product, ctx: Context) -> Expr | None:
    """u u → u^2 and u^a u^b → u^(a+b), where u runs only over fixed indices."""
    seen: dict[Expr, int] = {}
    factors = list(node.factors)
    for k, factor in enumerate(factors):
        base, exponent = (factor.base, factor.exponent) if isinstance(factor, Power) else (factor, Number(1.0))
        if not isinstance(exponent, Number) or isinstance(base, (Number, Mask)):
            continue
        # (x_j - y_j)(x_j - y_j) under an implicit sum stays a product, as the notes write it
        if any(i not in ctx.fixed or i in ctx.convention for i in free_indices(base, ctx.fixed)):
            continue
        if base in seen:
            j = seen[base]
            other = factors[j]
            total = exponent.value + (other.exponent.value if isinstance(other, Power) else 1.0)
            factors[j] = Power(base, Number(total))
            del factors[k]
            return Product(tuple(factors))
        seen[base] = k
    return None


def drop_zero_carriers(node: Product, ctx: Context) -> Expr | None:
    """In σ'(u_i) (0 x_i + 1), the zero term only kept i alive; σ' already carries it."""
    counts = occurrence_counts(node, ctx.fixed)

    def carried_anyway(lost: set[str], k: int) -> bool:
        sized = sized_letters(node.factors[:k] + node.factors[k + 1 :])
        return all(i in ctx.fixed and counts[i] > 1 and i in sized for i in lost)

    return _without_zero_terms(node, ctx, carried_anyway)


def drop_held_carriers(node: Product, ctx: Context) -> Expr | None:
    """δ_pa - mean_i((1 + 0 x_p) δ_ia) → δ_pa - mean_i(δ_ia): a carrier of a letter that
    is held anyway (fixed from outside and sized by an array in a sibling term or factor,
    or by the equation's right side where the left side fixes it) keeps nothing alive,
    as what does not carry the letter is broadcast over it. Where it is the sole holder
    of its letter's size, it stays."""
    return _without_zero_terms(node, ctx, lambda lost, k: lost <= ctx.held)


def _without_zero_terms(node: Product, ctx: Context, droppable) -> Expr | None:
    """`node` with its first factor's zero terms dropped (a sum with a nonzero term left)
    where `droppable(letters only they carried, the factor's position)` says so."""
    for k, factor in enumerate(node.factors):
        if not isinstance(factor, Sum) or not any(is_zero(t) for t in factor.terms):
            continue
        kept = [t for t in factor.terms if not is_zero(t)]
        if not kept:
            continue
        lost = set(free_indices(factor, ctx.fixed)) - set().union(*(free_indices(t, ctx.fixed) for t in kept))
        if droppable(lost, k):
            new = kept[0] if len(kept) == 1 else Sum(tuple(kept))
            return Product(node.factors[:k] + (new,) + node.factors[k + 1 :])
    return None


def drop_zero_powers(node: Product, ctx: Context) -> Expr | None:
    """2 h_l^0 g_l → 2 g_l: u^0 is 1 at every entry (0^0 too, as NumPy has it); its letters
    only need another holder, fixed and sized beside it (fold_power drops one with none)."""
    for k, factor in enumerate(node.factors):
        if not (isinstance(factor, Power) and factor.exponent == Number(0.0)):
            continue
        others = node.factors[:k] + node.factors[k + 1 :]
        letters = set(free_indices(factor.base, ctx.fixed))
        sized = set(ctx.held) | set().union(*(sized_apart_from_carriers(f, ctx.sized) for f in others))
        if letters <= ctx.fixed and letters <= sized:
            return make_product(1.0, others) if others else Number(1.0)
    return None


def absorb_into_reduction(node: Product, ctx: Context) -> Expr | None:
    """sum_n(a_ng) v_g → sum_n(a_ng v_g): the factors beside one sum or mean go inside it,
    so that one contraction sees them all (a Hessian–vector product then multiplies v
    into X first and never builds the Hessian)."""
    reductions = [k for k, f in enumerate(node.factors) if isinstance(f, Reduce) and f.op in ("sum", "mean")]
    others = [f for k, f in enumerate(node.factors) if k not in reductions[:1] and not isinstance(f, Number)]
    if len(reductions) != 1 or not others:
        return None
    reduce = node.factors[reductions[0]]
    outside = set().union(*(letters_in(f) for f in others))
    for index in [i for i in reduce.indices if i in outside]:
        reduce = rebind_reduction(reduce, index, ctx.fresh(), ctx.fixed, ctx.fresh)
    inner = ctx.fixed | set(reduce.indices)
    body = rename_summed_apart(reduce.body, exposed_letters(others, ctx.fixed), inner, ctx.fresh)
    numbers = tuple(f for f in node.factors if isinstance(f, Number))
    return make_product(math.prod(n.value for n in numbers), (replace(reduce, body=Product((body,) + tuple(others))),))
