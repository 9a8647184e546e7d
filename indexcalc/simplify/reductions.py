"""The rules of a reduction: a δ summed away, a shift solved, numbers taken out, nested
sums merged, a sum split over its terms."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from ..expr import Delta, Expr, Mask, Number, Product, Reduce, Shift, Sum, Tensor, leaf_factors
from ..indices import free_indices
from ..relabel import rename
from .products import drop_delta_pair
from .terms import Context, delta_on, is_zero, make_product, merges_a_pair, sized_letters


def reduce_delta(node: Reduce, ctx: Context) -> Expr | None:
    """sum_j(δ_jg X_j) → X_g: a δ inside a sum over its own index picks one entry; also
    through a sum nested right inside (sum_n(sum_k(δ_na K_k ...)), the sum a shifted
    index leaves around the kernel's letter), and where the sum binds both its letters
    (sum_jk(x_j z_k δ_jk) → sum_k(x_k z_k)): one of them goes, where an array still
    sizes the other."""
    if node.op != "sum":
        return None
    inner = node.body if isinstance(node.body, Reduce) and node.body.op == "sum" else None
    body = inner.body if inner is not None else node.body
    bound = set(node.indices) | (set(inner.indices) if inner is not None else set())
    factors = list(leaf_factors(body)) if isinstance(body, Product) else [body]
    for k, factor in enumerate(factors):
        if not isinstance(factor, Delta):
            continue
        for p, (a, b) in enumerate(factor.pairs):
            for old, new in ((a, b), (b, a)):
                if old in node.indices and (new not in bound or new in node.indices) and old != new:
                    picked = drop_delta_pair(Product(tuple(factors)), k, p, None, None, ctx)
                    if merges_a_pair(picked, old, new):
                        continue  # the diagonal of an inverse has no spelling: the δ stays
                    picked = rename(picked, old, new, ctx.fixed | bound | {new}, ctx.fresh, merge=True)
                    if new in bound and new not in sized_letters((picked,)):
                        continue  # sum_ij(δ_ij δ_ij): no array would give the sum left over j its size
                    if inner is not None:
                        picked = replace(inner, body=picked)
                    kept = tuple(i for i in node.indices if i != old)
                    return replace(node, indices=kept, body=picked) if kept else picked
    return None


def solve_shift(node: Reduce, ctx: Context) -> Expr | None:
    """sum_k(K_cbk δ_{e(i+k)}) → sum_k(K_cbk δ_{k(e-i)}), printed K_{cb(e-i)}: a shifted δ
    whose index no tensor carries is solved for a letter of coefficient ±1 that the sum
    binds and one tensor carries once, so that it reads as a shifted index of that
    tensor (the derivative of a convolution by its input is the transposed convolution,
    as one writes it). [p == ±L + r] and [L == ±(p - r)] hold at the same integers."""
    if node.op != "sum":
        return None
    factors = list(leaf_factors(node.body)) if isinstance(node.body, Product) else [node.body]
    tensors = [f for f in factors if isinstance(f, Tensor)]
    carried = Counter(i for t in tensors for i in t.all_indices)
    for k, shift in enumerate(factors):
        if not isinstance(shift, Shift) or carried[shift.index]:
            continue
        letters = Counter(letter for _, letter in shift.terms)
        for coef, letter in shift.terms:
            if abs(coef) != 1 or letter not in node.indices or letters[letter] != 1 or letter == shift.index:
                continue
            holders = [t for t in tensors if letter in t.all_indices]
            written = sum(f.all_indices.count(letter) for f in factors if isinstance(f, (Tensor, Delta, Mask, Shift)))
            if len(holders) != 1 or holders[0].indices.count(letter) != 1 or carried[letter] != 1 or written != 2:
                continue
            if any(letter in free_indices(f, ctx.fixed | set(node.indices)) for f in factors
                   if not isinstance(f, (Tensor, Delta, Mask, Shift))):
                continue
            # p = coef·L + Σ rest + c  ⇔  L = coef·(p - Σ rest - c)
            terms = ((coef, shift.index),) + tuple((-coef * c, name) for c, name in shift.terms if name != letter)
            solved = Shift(letter, tuple(sorted(terms, key=lambda t: t[0] < 0)), -coef * shift.offset)  # (2i-e+1)
            return replace(node, body=Product(tuple(factors[:k]) + (solved,) + tuple(factors[k + 1 :])))
    return None


def numbers_out_of_sum(node: Reduce, ctx: Context) -> Expr | None:
    """sum_k(-2 sum_m(x)) → -2 sum_k(sum_m(x)): a number left beside a nested sum (where
    absorb_into_reduction took the other factors in) goes out, so that the two sums merge
    and a δ inside meets the sum over its letter. From a sum the convention leaves
    unwritten every number goes out (it prints as a product, whose numbers then fold:
    -2 (-2) T3_a T3_l T4_l → 4 T3_a T3_l T4_l)."""
    if node.op != "sum" or not isinstance(node.body, Product):
        return None
    rest = [f for f in node.body.factors if not isinstance(f, Number)]
    if len(rest) == len(node.body.factors) or not rest:
        return None
    if not node.implicit and (len(rest) != 1 or inner_op(rest[0]) != "sum"):
        return None
    c = math.prod(f.value for f in node.body.factors if isinstance(f, Number))
    return make_product(c, (replace(node, body=rest[0] if len(rest) == 1 else Product(tuple(rest))),))


def merge_nested_sums(node: Reduce, ctx: Context) -> Expr | None:
    """sum_i(sum_j(x)) → sum_ij(x): one contraction over both (each letter is bound once,
    so nothing is captured)."""
    inner = node.body
    if node.op == inner_op(inner) == "sum" and inner.implicit == node.implicit:
        return replace(node, indices=node.indices + inner.indices, body=inner.body)
    return None


def inner_op(node: Expr) -> str | None:
    return node.op if isinstance(node, Reduce) else None


def sum_inside(node: Reduce, ctx: Context) -> Expr | None:
    """sum_h(mean_n(x)) → mean_n(sum_h(x)): the sum meets the factors it contracts (a
    Hessian–vector product multiplies v into X first and never builds the Hessian). A
    sum the convention leaves implicit goes inside one the user wrote, where it can
    stay unwritten."""
    inner = node.body
    if node.op != "sum" or inner_op(inner) not in ("sum", "mean"):
        return None
    if inner.op == "mean" or (node.implicit and not inner.implicit):
        return replace(inner, body=replace(node, body=inner.body))
    return None


def zero_reduction(node: Reduce, ctx: Context) -> Expr | None:
    """sum_i(0 x_i) → 0, where nothing outside runs over it."""
    if node.op in ("sum", "mean") and is_zero(node.body) and not free_indices(node, ctx.fixed):
        return Number(0.0)
    return None


def split_reduction(node: Reduce, ctx: Context) -> Expr | None:
    """sum_j(a δ_jg + b) → sum_j(a δ_jg) + sum_j(b), so the δ can pick its entry."""
    if node.op not in ("sum", "mean") or not isinstance(node.body, Sum):
        return None
    if not any(delta_on(t, node.indices) for t in node.body.terms):
        return None
    inner = ctx.fixed | set(node.indices)
    if not all(set(node.indices) <= set(free_indices(t, inner)) for t in node.body.terms):
        return None
    # each part still sizes the letters the whole sized: a term whose carrier went, held by a
    # sibling term's array, may carry a summed letter on a shift's δ alone (`δ_{o(2n+i)}`)
    # (a δ to a letter fixed outside sizes too: `δ_ja` of the Hessian of `sum_ij([i < j] (x_i - x_j)^2)`
    # sized j in the whole; the part `sum_j(2 [a < j] δ_ab)` left j on the mask alone)
    given = ctx.fixed - set(node.indices)
    sized = set(node.indices) & sized_letters((node.body,), given)
    if not all(sized <= sized_letters((t,), given) for t in node.body.terms):
        return None
    return Sum(tuple(replace(node, body=t) for t in node.body.terms))


def distribute_delta_sum(node: Reduce, ctx: Context) -> Expr | None:
    """sum_n((a δ_ng + b δ_ng) m_n) → sum_n(a δ_ng m_n + b δ_ng m_n), which split_reduction
    and reduce_delta turn into (a_g + b_g) m_g: a δ in a parenthesised sum beside other
    factors is contracted like one standing in the product. Left there, the plan must
    embed it, a dense array over the summed and the free letters alike ((batch·T)² for a
    per-position loss weighted by m_t; (batch·d)² for a layer norm's gradient, whose
    (δ_pr - 1/d) stood beside the rest). Only where a δ can pick its entry: elsewhere
    multiplying out only makes the formula longer. Every letter of the body is fixed here
    (the sums are explicit), so multiplying the factors into each term sums nothing new."""
    if node.op != "sum" or not isinstance(node.body, Product):
        return None
    factors = list(leaf_factors(node.body))
    inner = ctx.fixed | set(node.indices)
    for k, factor in enumerate(factors):
        if isinstance(factor, Sum) and any(_picks_entry(t, node.indices) for t in factor.terms):
            others = factors[:k] + factors[k + 1 :]
            if not all(set(free_indices(f, inner)) <= inner for f in factors):
                return None
            return replace(node, body=Sum(tuple(Product(tuple(others) + (t,)) for t in factor.terms)))
    return None


def _picks_entry(node: Expr, indices) -> bool:
    """Whether `node` is a product with a δ that reduce_delta contracts in a sum over
    `indices`: one side summed, the other not (only then does multiplying out pay); also
    under a sum over other letters (`sum_qn(v_rq w_qn u_hn δ_ig)`, as explicit writes a
    term that sums of its own), which absorb_into_reduction opens for reduce_delta."""
    if isinstance(node, Reduce) and node.op == "sum" and not set(node.indices) & set(indices):
        return _picks_entry(node.body, indices)
    factors = leaf_factors(node) if isinstance(node, Product) else (node,)
    return any(isinstance(f, Delta) and any((a in indices) != (b in indices) for a, b in f.pairs) for f in factors)
