"""What the rewrite rules share: the context a rule sees, a term as (number, factors),
the notes' order of factors, and which letters an array sizes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from .. import shifts
from ..errors import IndexNotationError
from ..expr import (
    Call, Compare, Delta, Expr, Mask, MatrixCall, Number, Power, Product, Reduce, Shift, Sum, Tensor, leaf_factors,
)
from ..indices import free_indices
from ..relabel import Fresh, letters_in


@dataclass(frozen=True)
class Context:
    """What a rule knows of where its node stands. A rule asks it only about letters the
    node writes: simplify remembers a subtree's rewrite by the node and the context's sets
    cut down to those letters, and reuses it wherever the subtree stands again."""

    fixed: frozenset[str]
    fresh: Fresh
    convention: frozenset[str] = frozenset()  # fixed by a sum the text leaves to the convention
    # fixed by the left-hand side and sized by an array elsewhere on the right, apart from
    # zero carriers: a carrier `(1 + 0 x_p)` of such a letter holds nothing
    held: frozenset[str] = frozenset()
    # letters nothing may hold: a first pass that held them lost them from the equation (the
    # terms that sized them cancelled after the hold was granted; see _simplified_keeping)
    unheld: frozenset[str] = frozenset()
    # what a subtree simplified to in this call: a rewrite re-simplifies the children of what
    # it made, and a Hessian repeats its subtrees many times
    done: dict = field(default_factory=dict, compare=False)
    # the letters each subtree sizes (sized_apart_from_carriers), asked at every rewrite
    sized: dict = field(default_factory=dict, compare=False)
    # the same with zero carriers counted (unsized), asked twice a reduction
    sized_with_carriers: dict = field(default_factory=dict, compare=False)
    # the terms and factors of sums up to their bound letters (sums.py), asked at each visit
    canonical: dict = field(default_factory=dict, compare=False)


Rule = Callable[[Expr, Context], "Expr | None"]


def coefficient(node: Expr) -> tuple[float, tuple[Expr, ...]]:
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


def make_product(c: float, factors: tuple[Expr, ...]) -> Expr:
    if c == 0:
        return Number(0.0) if not factors else Product((Number(0.0),) + factors)
    if not factors:
        return Number(c)
    if c == 1:
        return factors[0] if len(factors) == 1 else Product(factors)
    return Product((Number(c),) + factors)


def is_zero(node: Expr) -> bool:
    if isinstance(node, Reduce) and node.op in ("sum", "mean"):  # sum_k(0 W_gk x_nk)
        return is_zero(node.body)
    return coefficient(node)[0] == 0


_RANK = {Mask: 0.2, Compare: 0.5, Number: 0, Sum: 1, Reduce: 2, Call: 3, MatrixCall: 3.5, Power: 4, Tensor: 5, Delta: 6,
         Shift: 6}


def factor_rank(factor: Expr) -> int:
    if isinstance(factor, Number):  # the coefficient leads, as fold_numbers writes it: before (-2)^a too
        return -1
    if isinstance(factor, Power) and factor.exponent == Number(-1.0):
        return 9
    base = factor.base if isinstance(factor, Power) else factor
    return _RANK.get(type(base), 7)


def sorted_factors(factors) -> tuple[Expr, ...]:
    """Factors in the order of the notes, by kind, then by their text among those of one
    kind only: printing every factor cost the depth of a nested formula at every level."""
    ranks = [factor_rank(f) for f in factors]
    shared = Counter(ranks)
    keyed = sorted(zip(ranks, factors), key=lambda rf: (rf[0], str(rf[1]) if shared[rf[0]] > 1 else ""))
    return tuple(f for _, f in keyed)


def sized_apart_from_carriers(node: Expr, memo: dict | None = None) -> frozenset[str]:
    """The letters an array's axis in `node` sizes, directly or through a δ, the zero
    terms (`0 x_p`) aside; remembered in `memo` (one simplify call's, by equal subtree:
    rewrites make equal copies), not in a process-wide cache that would keep trees alive."""
    return _sizing(node, {} if memo is None else memo, carriers=False)[2]


def unsized(letters: frozenset[str], node: Expr, given: frozenset[str], memo: dict) -> frozenset[str]:
    """The `letters` a route finds no size for in `node`: sized are its arrays' axes, zero
    carriers (`1 + 0 x_p`) included, since keeping a size is what they are for, and what
    δs tie to those or to the letters `given` a size outside. A mask writes a letter
    without sizing it: a letter left on `[p != m - 1]` alone is free and has no size."""
    arrays, pairs, _ = _sizing(node, memo, carriers=True)
    missing = letters - arrays
    return frozenset(missing - shifts.tied_by_deltas(arrays | given, pairs)) if missing else missing


def _sizing(node: Expr, memo: dict, carriers: bool) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """(the letters of `node`'s arrays, its δs' pairs, the letters those size) built from
    the children's: asked of every node of a Hessian's sums, a walk of each subtree anew
    was quadratic in their depth. Zero terms count only with `carriers`, which leaves the
    last (the δ closure) to its caller."""
    known = memo.get(node)
    if known is not None:
        return known
    if not carriers and is_zero(node):
        arrays, pairs = frozenset(), frozenset()
    elif isinstance(node, Tensor):
        arrays, pairs = frozenset(node.all_indices), frozenset()
    elif isinstance(node, Delta):
        arrays, pairs = frozenset(), frozenset(node.pairs)
    else:
        parts = [_sizing(child, memo, carriers) for child in node.children()]
        arrays = frozenset().union(*(p[0] for p in parts))
        pairs = frozenset().union(*(p[1] for p in parts))
    closure = None if carriers else frozenset(shifts.tied_by_deltas(arrays, pairs))
    memo[node] = known = (arrays, pairs, closure)
    return known


def sized_letters(factors: tuple[Expr, ...], given=()) -> set[str]:
    """The letters an array's axis gives a size to in `factors`, directly or through a δ
    that pairs them with such a letter or with one of `given` (sized outside): a carrier
    is kept for any other (a shift's range is no stand-in for it: the carrier may hold the
    size an array gave, as in padding)."""
    return shifts.sized_letters(factors, given, through_shifts=False)


def valid(node: Expr, fixed: frozenset[str]) -> bool:
    try:
        free_indices(node, fixed)
    except IndexNotationError:
        return False
    return True


def merges_a_pair(node: Expr, old: str, new: str) -> bool:
    """Whether renaming `old` to `new` in `node` would write one letter on both axes of a
    matrix function: `sum_o(inv_oa(A_pq) δ_ao)` picks the diagonal of the inverse, and
    `inv_aa(...)` is not notation (refused as a pair relabelled to one letter), so the δ
    stays. Conservative: any matrix function that writes both letters anywhere in it."""
    return any(isinstance(n, MatrixCall) and {old, new} <= letters_in(n) for n in node.walk())


def delta_on(node: Expr, indices) -> bool:
    """Whether `node` is a product with a δ factor on one of `indices`, or a sum over
    other letters of one (`sum_j(a_nj δ_np)`: split out, it merges with the outer sum)."""
    if isinstance(node, Reduce) and node.op == "sum" and not set(node.indices) & set(indices):
        return delta_on(node.body, indices)
    factors = leaf_factors(node) if isinstance(node, Product) else (node,)
    return any(isinstance(f, Delta) and set(f.all_indices) & set(indices) for f in factors)
