"""Rewrite rules that make a derivative read the way one writes it by hand.

`simplify` rewrites bottom-up: the children of a node first, then the node's own rules,
in the order of the table `RULES`, until none applies. Each rule is one small function
that returns the rewritten node or None, and knows which indices are fixed from outside,
since whether an index is summed decides what is allowed (a δ is contracted away only
through an index it sums; equal factors become a power only over fixed indices).

The rules keep meaning, never only the look: every one is checked by evaluating before
and after in the tests.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

from .expr import (
    Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift, Sum, Tensor,
    leaf_factors, with_children,
)
from . import functions, shifts
from .indices import check_equation, free_indices, occurrence_counts
from .errors import IndexNotationError
from .notation import as_parsed
from .program import check_program
from .scope import explicit, origin, tidy
from .relabel import (
    Fresh, canonical_bound, exposed_letters, fresh_letters, letters_in, rebind_reduction, rename, rename_summed_apart,
)


@dataclass(frozen=True)
class Context:
    fixed: frozenset[str]
    fresh: Fresh
    convention: frozenset[str] = frozenset()  # fixed by a sum the text leaves to the convention
    # fixed by the left-hand side and sized by an array elsewhere on the right, apart from
    # zero carriers: a carrier `(1 + 0 x_p)` of such a letter holds nothing
    held: frozenset[str] = frozenset()
    # what a subtree simplified to in this call: a rewrite re-simplifies the children of what
    # it made, and a Hessian repeats its subtrees many times
    done: dict = field(default_factory=dict, compare=False)
    # the letters each subtree sizes (_sized_apart_from_carriers), asked at every rewrite
    sized: dict = field(default_factory=dict, compare=False)


Rule = Callable[[Expr, Context], "Expr | None"]


def simplify(source) -> Expr:
    """δ elimination, constant folding, like terms collected, zero terms dropped.

    Takes and returns what `parse` and `diff` return: an expression, an equation or a
    program (each equation simplified with its left-hand side's indices fixed).
    """
    node = as_parsed(source)
    if isinstance(node, Program):
        check_program(node.equations)
        return Program(tuple(simplify(eq) for eq in node.equations))
    if isinstance(node, Equation):
        check_equation(node)  # what no route would evaluate is not rewritten either
    keep = letters_in(node)
    node = explicit(node)  # every sum a node: no rule below can capture an index
    if isinstance(node, Equation):
        fresh = fresh_letters(letters_in(node))
        fixed = frozenset(node.lhs.all_indices)
        rhs = _simplify(node.rhs, Context(fixed, fresh, held=fixed & _sized_apart_from_carriers(node.rhs)))
        return _in_order(tidy(Equation(node.lhs, rhs), keep))
    return _simplify(node, Context(frozenset(), fresh_letters(letters_in(node))))


def _in_order(node: Expr) -> Expr:
    """Every product's factors in the notes' order again, once tidy has chosen the bound
    letters: factors of one kind are ordered by their printed text, which the letters
    change (`p_{m~1,a}` sorts before `p_{m~1}`, `p_m` before `p_{m,a}`), and without this
    a second simplify would reorder them."""
    children = node.children()
    if children:
        node = with_children(node, tuple(_in_order(child) for child in children))
    if not isinstance(node, Product):
        return node
    ordered = _sorted_factors(node.factors)
    return node if ordered == node.factors else Product(ordered, span=node.span)


def _simplify(node: Expr, ctx: Context) -> Expr:
    key = (node, ctx.fixed, ctx.convention, ctx.held)
    if key not in ctx.done:
        ctx.done[key] = _rewritten(node, ctx)
    return ctx.done[key]


def context_at(equation: Equation, target: Expr) -> Context:
    """The context `simplify` gives the sub-node `target` (by identity) of an explicit
    equation: what the rule tests hand a rule."""
    fixed = frozenset(equation.lhs.all_indices)
    ctx = Context(fixed, fresh_letters(letters_in(equation)), held=fixed & _sized_apart_from_carriers(equation.rhs))

    def down(node: Expr, ctx: Context) -> Context | None:
        if node is target:
            return ctx
        if isinstance(node, (Product, Sum)):
            parts = tuple(leaf_factors(node)) if isinstance(node, Product) else node.terms
            steps = [(part, _beside(ctx, parts, k)) for k, part in enumerate(parts)]
        elif isinstance(node, (Call, MatrixCall)):
            steps = [(node.arg, ctx if isinstance(node, Call) and node.relabel is None
                      else replace(ctx, held=frozenset()))]
        elif isinstance(node, Reduce):
            steps = [(node.body, replace(ctx, fixed=ctx.fixed | set(node.indices), held=ctx.held - set(node.indices)))]
        else:
            steps = [(child, ctx) for child in node.children()]
        for child, inner in steps:
            found = down(child, inner)
            if found is not None:
                return found
        return None

    return down(equation.rhs, ctx)


def _rewritten(node: Expr, ctx: Context) -> Expr:
    node = _children(node, ctx)
    seen = {node}
    for _ in range(100):
        for node_type, rule in RULES:
            if isinstance(node, node_type):
                new = rule(node, ctx)
                if new is not None and new != node and _finite(new):
                    node = _children(new, ctx)
                    break
        else:
            return node
        if node in seen:  # two rules undoing each other: each pass would re-simplify the subtree
            return node
        seen.add(node)
    return node


def _finite(node: Expr, depth: int = 3) -> bool:
    """No number folded to inf or nan: printed, one would read back as a tensor named
    `inf`, so the rewrite that makes one is not taken (evaluate gives the same value).
    A rule writes the numbers it folds near the top of what it returns (a coefficient, a
    term's coefficient inside a factored sum); deeper ones were there before, checked."""
    if isinstance(node, Number):
        return math.isfinite(node.value)
    return depth == 0 or all(_finite(child, depth - 1) for child in node.children())


def _children(node: Expr, ctx: Context) -> Expr:
    if isinstance(node, Product):
        # a δ factor's repeated index is the product's (x_i δ_(ii)(gh)): its rules are the product's
        leaves = tuple(leaf_factors(node))
        return _product_of(tuple(f if isinstance(f, Delta) else _simplify(f, _beside(ctx, leaves, k))
                                 for k, f in enumerate(leaves)), ctx, leaves)
    if isinstance(node, Sum):
        return Sum(tuple(_simplify(t, _beside(ctx, node.terms, k)) for k, t in enumerate(node.terms)))
    if isinstance(node, Power):
        return Power(_simplify(node.base, ctx), _simplify(node.exponent, ctx))
    if isinstance(node, Call):
        # inside σ_p(T_j) or inv_pq(...) a letter may stand for another: nothing is held there
        return Call(node.func, _simplify(node.arg, ctx if node.relabel is None else replace(ctx, held=frozenset())),
                    node.relabel)
    if isinstance(node, MatrixCall):
        return MatrixCall(node.func, _simplify(node.arg, replace(ctx, held=frozenset())), node.relabel)
    if isinstance(node, Compare):
        return Compare(node.op, _simplify(node.left, ctx), _simplify(node.right, ctx))
    if isinstance(node, Reduce):
        by_convention = ctx.convention | set(node.indices) if node.implicit else ctx.convention
        inner = replace(ctx, fixed=ctx.fixed | set(node.indices), convention=by_convention,
                        held=ctx.held - set(node.indices))
        return replace(node, body=_simplify(node.body, inner))
    return node


# ---------------------------------------------------------------- helpers


def _beside(ctx: Context, siblings: tuple[Expr, ...], k: int) -> Context:
    """The context of `siblings[k]`, a factor or a term: a fixed letter that an array in
    another sizes is held for it (the product or the sum runs over that letter anyway,
    and what does not carry it is broadcast over it)."""
    others = (s for j, s in enumerate(siblings) if j != k)
    held = ctx.fixed & set().union(*(_sized_apart_from_carriers(s, ctx.sized) for s in others))
    return ctx if held <= ctx.held else replace(ctx, held=ctx.held | held)


def _product_of(factors: tuple[Expr, ...], ctx: Context, leaves: tuple[Expr, ...] = ()) -> Product:
    """A product of simplified factors. A factor that was a scope (a one-term sum, a
    power 1) and became a product must not share its summed letters with its siblings,
    since parentheses around a product only group."""
    out = list(factors)
    for k, factor in enumerate(out):
        # a tensor that was a factor all along (m_ii in m_ii x_i) shares its letters with the product
        if isinstance(factor, (Product, Tensor)) and not (k < len(leaves) and factor is leaves[k]):
            others = exposed_letters((f for j, f in enumerate(out) if j != k), ctx.fixed)
            out[k] = rename_summed_apart(factor, others, ctx.fixed, ctx.fresh)
    return Product(tuple(out))


def _coefficient(node: Expr) -> tuple[float, tuple[Expr, ...]]:
    """A term as (number, the other factors)."""
    if isinstance(node, Number):
        return node.value, ()
    if isinstance(node, Product):
        c, rest = 1.0, []
        for f in node.factors:
            if isinstance(f, Number):
                c *= f.value
            else:
                rest.append(f)
        return c, tuple(rest)
    return 1.0, (node,)


def _make_product(c: float, factors: tuple[Expr, ...]) -> Expr:
    if c == 0:
        return Number(0.0) if not factors else Product((Number(0.0),) + factors)
    if not factors:
        return Number(c)
    if c == 1:
        return factors[0] if len(factors) == 1 else Product(factors)
    return Product((Number(c),) + factors)


def _is_zero(node: Expr) -> bool:
    if isinstance(node, Reduce) and node.op in ("sum", "mean"):  # sum_k(0 W_gk x_nk)
        return _is_zero(node.body)
    return _coefficient(node)[0] == 0


_RANK = {Mask: 0.2, Compare: 0.5, Number: 0, Sum: 1, Reduce: 2, Call: 3, MatrixCall: 3.5, Power: 4, Tensor: 5, Delta: 6,
         Shift: 6}


def _factor_rank(factor: Expr) -> int:
    if isinstance(factor, Number):  # the coefficient leads, as fold_numbers writes it: before (-2)^a too
        return -1
    if isinstance(factor, Power) and factor.exponent == Number(-1.0):
        return 9
    base = factor.base if isinstance(factor, Power) else factor
    return _RANK.get(type(base), 7)


def _sorted_factors(factors) -> tuple[Expr, ...]:
    """Factors in the order of the notes, by kind, then by their text among those of one
    kind only: printing every factor cost the depth of a nested formula at every level."""
    ranks = [_factor_rank(f) for f in factors]
    shared = Counter(ranks)
    keyed = sorted(zip(ranks, factors), key=lambda rf: (rf[0], str(rf[1]) if shared[rf[0]] > 1 else ""))
    return tuple(f for _, f in keyed)


# ---------------------------------------------------------------- product rules


def flatten_product(node: Product, ctx: Context) -> Expr | None:
    """Parentheses around a product only group: open them."""
    if any(isinstance(f, Product) for f in node.factors):
        return Product(tuple(leaf_factors(node)))
    return None


def fold_numbers(node: Product, ctx: Context) -> Expr | None:
    """One leading number: 2 x 3 y → 6 x y; a lone factor stands alone."""
    c, rest = _coefficient(node)
    if c == 0 and rest:
        kept = _zero_carrier(node, ctx)
        return None if kept == node else kept
    result = _make_product(c, rest)
    return None if result == node else result


def _zero_carrier(node: Product, ctx: Context) -> Expr:
    """0 times anything is 0, but a zero must keep the indices it runs over."""
    if not free_indices(node, ctx.fixed):
        return Number(0.0)
    return node


def order_factors(node: Product, ctx: Context) -> Expr | None:
    """Numbers, masks, brackets, functions, tensors, δ, divisors: the order of the notes
    (`[j <= i] exp(s_ij)`)."""
    ordered = _sorted_factors(node.factors)
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
                    return _drop_pair(node, k, p, None, None, ctx)
                continue
            for old, new in ((a, b), (b, a)):
                if summed(old) and (summed(new) or new in ctx.fixed or counts[old] == 2):
                    return _drop_pair(node, k, p, old, new, ctx)
    return None


def _drop_pair(node: Product, k: int, p: int, old, new, ctx: Context) -> Expr:
    delta = node.factors[k]
    pairs = [pair for q, pair in enumerate(delta.pairs) if q != p]
    rest = list(node.factors[:k] + node.factors[k + 1 :])
    if pairs:
        rest.append(Delta(tuple(a for a, _ in pairs), tuple(b for _, b in pairs)))
    result = Product(tuple(rest)) if rest else Number(1.0)
    if old is not None and isinstance(result, Product):
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
        sized = _sized_letters(node.factors[:k] + node.factors[k + 1 :])
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
        if not isinstance(factor, Sum) or not any(_is_zero(t) for t in factor.terms):
            continue
        kept = [t for t in factor.terms if not _is_zero(t)]
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
        sized = set(ctx.held) | set().union(*(_sized_apart_from_carriers(f, ctx.sized) for f in others))
        if letters <= ctx.fixed and letters <= sized:
            return _make_product(1.0, others) if others else Number(1.0)
    return None


def _sized_apart_from_carriers(node: Expr, memo: dict | None = None) -> frozenset[str]:
    """The letters an array's axis in `node` sizes, directly or through a δ, the zero
    terms (`0 x_p`) aside; remembered in `memo` (one simplify call's, by equal subtree:
    rewrites make equal copies), not in a process-wide cache that would keep trees alive."""
    sized = memo.get(node) if memo is not None else None
    if sized is None:
        sized = frozenset(_sized_letters(tuple(_leaves_apart_from_carriers(node))))
        if memo is not None:
            memo[node] = sized
    return sized


def _leaves_apart_from_carriers(node: Expr):
    if _is_zero(node):
        return
    if isinstance(node, (Tensor, Delta)):
        yield node
    for child in node.children():
        yield from _leaves_apart_from_carriers(child)


def _sized_letters(factors: tuple[Expr, ...]) -> set[str]:
    """The letters an array's axis gives a size to in `factors`, directly or through a δ
    that pairs them with such a letter: a carrier is kept for any other (a shift's range
    is no stand-in for it: the carrier may hold the size an array gave, as in padding)."""
    return shifts.sized_letters(factors, through_shifts=False)


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
    return _make_product(math.prod(n.value for n in numbers), (replace(reduce, body=Product((body,) + tuple(others))),))


# ---------------------------------------------------------------- sum rules


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
    split = [_coefficient(term) for term in node.terms]
    # a term no other could equal keeps a key of its own: the canonical key prints the term,
    # and a chain of nested sqrt(1 + ...) printed its whole depth at every level
    heads = Counter(_head_key(rest) for _, rest in split)
    for k, (c, rest) in enumerate(split):
        key = _canonical_key(rest, ctx) if heads[_head_key(rest)] > 1 else ("alone", k)
        if key not in groups:
            groups[key] = [0.0, rest]
            order.append(key)
        groups[key][0] += c
    terms = [_make_product(groups[k][0], groups[k][1]) for k in order]
    needed = set(free_indices(node, ctx.fixed))
    nonzero = [t for t in terms if not _is_zero(t)]
    # a letter only a mask carries has no size there (j in [j <= i] x_i), and one only a
    # shift carries its valid range at most (i in w_k x_(i+k-1)): a zero term that an
    # array sizes stays, as its size wins (`+ 0 b_i`: padding, or a pooled line's i)
    carried = set().union(*(set(free_indices(t, ctx.fixed)) - _mask_only(t) - _shift_only(t)
                            for t in nonzero)) if nonzero else set()
    if carried != needed:
        nonzero += [t for t in terms if _is_zero(t) and set(free_indices(t, ctx.fixed)) - carried][:1]
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
    return shifted - _sized_letters((node,)) if shifted else set()


def _head_key(factors: tuple[Expr, ...]) -> tuple:
    """What a term's canonical key determines, cheaply: its factors' kinds and names (a
    power's and its base's)."""
    return tuple(sorted(_head(f) + (_head(f.base) if isinstance(f, Power) else ()) for f in factors))


def _canonical_key(factors: tuple[Expr, ...], ctx: Context):
    """Factors up to order and up to the names of the indices summed, at every level."""
    if not factors:
        return ()
    canonical = canonical_bound(Product(_sorted_factors(factors)), ctx.fixed)
    return frozenset(Counter(canonical.factors).items())  # trees compare by structure: no printing


def merge_reductions(node: Sum, ctx: Context) -> Expr | None:
    """mean_n(a) + mean_n(b) → mean_n(a + b): one pass over n instead of two."""
    seen: dict[tuple, int] = {}
    terms = list(node.terms)
    for k, term in enumerate(terms):
        c, rest = _coefficient(term)
        if len(rest) != 1 or not isinstance(rest[0], Reduce) or rest[0].op not in ("sum", "mean"):
            continue
        reduce = rest[0]
        if _delta_on(reduce.body, reduce.indices):
            continue
        # letters made from one letter (n, n1) have its size: the sums run over the same range
        signature = (reduce.op, tuple(origin(i) for i in reduce.indices))
        if signature in seen:
            j = seen[signature]
            cj, (first,) = _coefficient(terms[j])[0], _coefficient(terms[j])[1]
            for mine, theirs in zip(reduce.indices, first.indices):
                reduce = rebind_reduction(reduce, mine, theirs, ctx.fixed, ctx.fresh)
            body = Sum((_make_product(cj, (first.body,)), _make_product(c, (reduce.body,))))
            if not _valid(body, ctx.fixed | set(first.indices)):
                continue  # sum_j(T_ijj) + sum_j(U_jj): the two bodies run over different letters
            terms[j] = replace(first, body=body, implicit=first.implicit and reduce.implicit)
            del terms[k]
            return terms[0] if len(terms) == 1 else Sum(tuple(terms))
        seen[signature] = k
    return None


def _valid(node: Expr, fixed: frozenset[str]) -> bool:
    try:
        free_indices(node, fixed)
    except IndexNotationError:
        return False
    return True


def factor_common(node: Sum, ctx: Context) -> Expr | None:
    """2 a - 2 b → 2 (a - b); a f + b f → (a + b) f, for a factor f shared by every term
    that runs only over fixed indices (so taking it out changes no summation)."""
    splits = [_coefficient(t) for t in node.terms]
    if len(splits) < 2 or any(not rest for _, rest in splits):
        return None
    if any(isinstance(f, Delta) for _, rest in splits for f in rest):
        return None  # a δ is better contracted inside its product than taken out
    scale = abs(splits[0][0])
    if scale not in (0.0, 1.0) and all(abs(c) == scale for c, _ in splits):
        return Product((Number(scale), Sum(tuple(_make_product(c / scale, rest) for c, rest in splits))))
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
        terms.append(_make_product(c, tuple(f for _, f in remaining)))
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
    return canonical_bound(_products_ordered(factor, ctx.fixed), ctx.fixed)


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


# ---------------------------------------------------------------- other rules


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
        from . import functions

        import numpy as np

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
                    picked = _drop_pair(Product(tuple(factors)), k, p, None, None, ctx)
                    picked = rename(picked, old, new, ctx.fixed | bound | {new}, ctx.fresh, merge=True)
                    if new in bound and new not in _sized_letters((picked,)):
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
    return _make_product(c, (replace(node, body=rest[0] if len(rest) == 1 else Product(tuple(rest))),))


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
    if node.op in ("sum", "mean") and _is_zero(node.body) and not free_indices(node, ctx.fixed):
        return Number(0.0)
    return None


def split_reduction(node: Reduce, ctx: Context) -> Expr | None:
    """sum_j(a δ_jg + b) → sum_j(a δ_jg) + sum_j(b), so the δ can pick its entry."""
    if node.op not in ("sum", "mean") or not isinstance(node.body, Sum):
        return None
    if not any(_delta_on(t, node.indices) for t in node.body.terms):
        return None
    inner = ctx.fixed | set(node.indices)
    if not all(set(node.indices) <= set(free_indices(t, inner)) for t in node.body.terms):
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


def _delta_on(node: Expr, indices) -> bool:
    """Whether `node` is a product with a δ factor on one of `indices`, or a sum over
    other letters of one (`sum_j(a_nj δ_np)`: split out, it merges with the outer sum)."""
    if isinstance(node, Reduce) and node.op == "sum" and not set(node.indices) & set(indices):
        return _delta_on(node.body, indices)
    factors = leaf_factors(node) if isinstance(node, Product) else (node,)
    return any(isinstance(f, Delta) and set(f.all_indices) & set(indices) for f in factors)


def lone_delta(node: Delta, ctx: Context) -> Expr | None:
    """A δ standing alone sums what it repeats: δ_(ii)(gh) → δ_gh."""
    result = eliminate_delta(Product((node,)), ctx)
    return None if result is None else result


RULES: tuple[tuple[type, Rule], ...] = (
    (Delta, lone_delta),
    (Product, flatten_product),
    (Product, fold_numbers),
    (Product, eliminate_delta),
    (Product, drop_zero_carriers),
    (Product, drop_held_carriers),
    (Product, drop_zero_powers),
    (Product, drop_repeated_masks),
    (Product, combine_powers),
    (Product, order_factors),
    (Product, absorb_into_reduction),
    (Sum, flatten_sum),
    (Sum, collect_terms),
    (Sum, merge_reductions),
    (Sum, factor_common),
    (Reduce, reduce_delta),
    (Reduce, solve_shift),
    (Reduce, numbers_out_of_sum),
    (Reduce, merge_nested_sums),
    (Reduce, sum_inside),
    (Reduce, zero_reduction),
    (Reduce, split_reduction),
    (Reduce, distribute_delta_sum),
    (Power, fold_power),
    (Call, fold_call),
    (Mask, fold_mask),
    (Compare, fold_compare),
)
