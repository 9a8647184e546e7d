"""The rules of a sum: like terms collected, reductions over the same letters merged,
common factors taken out."""

from __future__ import annotations

import functools
import operator
from collections import Counter
from dataclasses import replace

from ..expr import Delta, Expr, Mask, Number, Power, Product, Reduce, Shift, Sum, Tensor, with_children
from ..indices import free_indices
from ..relabel import canonical_bound, rebind_reduction
from ..scope import origin
from .terms import Context, coefficient, delta_on, is_zero, make_product, sized_letters, sorted_factors, valid


def flatten_sum(node: Sum, ctx: Context) -> Expr | None:
    if any(isinstance(t, Sum) for t in node.terms):
        terms = []
        for t in node.terms:
            terms.extend(t.terms if isinstance(t, Sum) else (t,))
        return Sum(tuple(terms))
    return None


def collect_terms(node: Sum, ctx: Context) -> Expr | None:
    """2 a + 3 a → 5 a, numbers added up, zero terms dropped where nothing is lost."""
    groups: dict[object, list] = {}
    order = []
    split = [coefficient(term) for term in node.terms]
    # a term no other could equal keeps a key of its own: the canonical key prints the term,
    # and a chain of nested sqrt(1 + ...) printed its whole depth at every level
    heads = Counter(_head_key(rest) for _, rest in split)
    for k, (c, rest) in enumerate(split):
        key = _canonical_key(rest, ctx) if heads[_head_key(rest)] > 1 else ("alone", k)
        if key not in groups:
            groups[key] = [0.0, rest]
            order.append(key)
        groups[key][0] += c
    if len(order) == len(split) and all(c != 0 for c, _ in split):
        return None  # no two terms alike and none zero: nothing to collect or drop
    terms = [make_product(groups[k][0], groups[k][1]) for k in order]
    needed = set(free_indices(node, ctx.fixed))
    nonzero = [t for t in terms if not is_zero(t)]
    # a letter only a mask carries has no size there (j in [j <= i] x_i), and one only a
    # shift carries its valid range at most (i in w_k x_(i+k-1)): a zero term that an
    # array sizes stays, as its size wins (`+ 0 b_i`: padding, or a pooled line's i)
    carried = set().union(*(set(free_indices(t, ctx.fixed)) - _mask_only(t) - _shift_only(t)
                            for t in nonzero)) if nonzero else set()
    if carried != needed:
        nonzero += [t for t in terms if is_zero(t) and set(free_indices(t, ctx.fixed)) - carried][:1]
    if not nonzero:
        return Number(0.0)
    result = nonzero[0] if len(nonzero) == 1 else Sum(tuple(nonzero))
    return None if result == node else result


def _mask_only(node: Expr) -> set[str]:
    """The letters of `node` written on masks and on no tensor or δ: none of them sized."""
    masked = {i for m in node.walk() if isinstance(m, Mask) for i in m.all_indices}
    if not masked:
        return set()
    return masked - {i for t in node.walk() if isinstance(t, (Tensor, Delta, Shift)) for i in t.all_indices}


def _shift_only(node: Expr) -> set[str]:
    """The letters of `node` that a shift carries and no array's axis (nor a δ to one)
    sizes: their size is a valid range at most, which an array's size elsewhere overrides."""
    shifted = {i for s in node.walk() if isinstance(s, Shift) for _, i in s.terms}
    return shifted - sized_letters((node,)) if shifted else set()


def _head_key(factors: tuple[Expr, ...]) -> tuple:
    """What a term's canonical key determines, cheaply: its factors' kinds and names (a
    power's and its base's)."""
    return tuple(sorted(_head(f) + (_head(f.base) if isinstance(f, Power) else ()) for f in factors))


def _canonical_key(factors: tuple[Expr, ...], ctx: Context):
    """Factors up to order and up to the names of the indices summed, at every level."""
    if not factors:
        return ()
    key = (factors, ctx.fixed)
    if key not in ctx.canonical:
        canonical = canonical_bound(Product(sorted_factors(factors)), ctx.fixed)
        ctx.canonical[key] = frozenset(Counter(canonical.factors).items())  # trees compare by structure
    return ctx.canonical[key]


def merge_reductions(node: Sum, ctx: Context) -> Expr | None:
    """mean_n(a) + mean_n(b) → mean_n(a + b): one pass over n instead of two."""
    seen: dict[tuple, int] = {}
    terms = list(node.terms)
    for k, term in enumerate(terms):
        c, rest = coefficient(term)
        if len(rest) != 1 or not isinstance(rest[0], Reduce) or rest[0].op not in ("sum", "mean"):
            continue
        reduce = rest[0]
        if delta_on(reduce.body, reduce.indices):
            continue
        # letters made from one letter (n, n1) have its size: the sums run over the same range
        signature = (reduce.op, tuple(origin(i) for i in reduce.indices))
        if signature in seen:
            j = seen[signature]
            cj, (first,) = coefficient(terms[j])[0], coefficient(terms[j])[1]
            for mine, theirs in zip(reduce.indices, first.indices):
                reduce = rebind_reduction(reduce, mine, theirs, ctx.fixed, ctx.fresh)
            body = Sum((make_product(cj, (first.body,)), make_product(c, (reduce.body,))))
            if not valid(body, ctx.fixed | set(first.indices)):
                continue  # sum_j(T_ijj) + sum_j(U_jj): the two bodies run over different letters
            terms[j] = replace(first, body=body, implicit=first.implicit and reduce.implicit)
            del terms[k]
            return terms[0] if len(terms) == 1 else Sum(tuple(terms))
        seen[signature] = k
    return None


def factor_common(node: Sum, ctx: Context) -> Expr | None:
    """2 a - 2 b → 2 (a - b); a f + b f → (a + b) f, for a factor f shared by every term
    that runs only over fixed indices (so taking it out changes no summation)."""
    splits = [coefficient(t) for t in node.terms]
    if len(splits) < 2 or any(not rest for _, rest in splits):
        return None
    if any(isinstance(f, Delta) for _, rest in splits for f in rest):
        return None  # a δ is better contracted inside its product than taken out
    scale = abs(splits[0][0])
    if scale not in (0.0, 1.0) and all(abs(c) == scale for c, _ in splits):
        return Product((Number(scale), Sum(tuple(make_product(c / scale, rest) for c, rest in splits))))
    heads = [Counter(map(_head, rest)) for _, rest in splits]
    if not functools.reduce(operator.and_, heads):
        return None  # no kind of factor in every term: nothing to compare letter by letter
    keyed = [[(_up_to_bound_letters(f, ctx), f) for f in rest] for _, rest in splits]
    shared = Counter(key for key, _ in keyed[0])
    for factors in keyed[1:]:
        shared &= Counter(key for key, _ in factors)
    first = dict(keyed[0])
    common = [key for key in shared.elements() if _runs_over_fixed_only(first[key], ctx)]
    if not common:
        return None
    terms = []
    for (c, _), factors in zip(splits, keyed):
        remaining = list(factors)
        for key in common:
            remaining.remove(next(pair for pair in remaining if pair[0] == key))
        terms.append(make_product(c, tuple(f for _, f in remaining)))
    return Product(tuple(first[key] for key in common) + (Sum(tuple(terms)),))


def _up_to_bound_letters(factor: Expr, ctx: Context) -> Expr:
    """A factor with the letters it sums renamed in order of appearance, its products'
    factors first put in an order that does not depend on those letters: the same factor
    written with other summed letters (tanh(m_gj x_j) and tanh(x_{j~1} m_{g j~1}), as
    `explicit` and two branches of a derivative spell it) is one factor to take out. The
    tree is explicit, so a factor's summed letters are bound inside it and any of its
    spellings can stand for all. A tensor, a δ, a mask or a number sums nothing."""
    if isinstance(factor, (Tensor, Delta, Mask, Shift, Number)):
        return factor
    key = (factor, ctx.fixed)
    if key not in ctx.canonical:
        ctx.canonical[key] = canonical_bound(_products_ordered(factor, ctx.fixed), ctx.fixed)
    return ctx.canonical[key]


def _products_ordered(node: Expr, fixed: frozenset[str]) -> Expr:
    """Every product's factors sorted by their shape with the letters not in `fixed`
    blanked (factors alike in shape keep their order: only the comparison uses this)."""
    children = node.children()
    if children:
        node = with_children(node, tuple(_products_ordered(child, fixed) for child in children))
    if isinstance(node, Product):
        return Product(tuple(sorted(node.factors, key=lambda f: _shape(f, fixed))))
    return node


def _head(node: Expr) -> tuple[str, str]:
    """A node's kind and what it names (a tensor's name, a function, a reduction)."""
    label = node.value if isinstance(node, Number) else getattr(node, "name", getattr(node, "func", getattr(node, "op", "")))
    return type(node).__name__, str(label)


def _shape(node: Expr, fixed: frozenset[str]) -> tuple:
    letters = tuple(i if i in fixed else "" for i in getattr(node, "all_indices", ()))
    return _head(node) + (letters, tuple(_shape(child, fixed) for child in node.children()))


def _runs_over_fixed_only(factor: Expr, ctx: Context) -> bool:
    if isinstance(factor, (Tensor, Delta, Mask, Shift)):
        axes = factor.all_indices
        return len(set(axes)) == len(axes) and set(axes) <= ctx.fixed
    return all(i in ctx.fixed for i in free_indices(factor, ctx.fixed))
