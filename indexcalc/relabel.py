"""Renaming indices without changing what an expression means.

Index letters are bound by scopes: a product binds the indices it sums, a reduction binds
its own. Renaming index `old` to `new` in a node renames the occurrence of `old` that
belongs to that node's level, follows it into the inner scopes where it is free, and
leaves alone inner scopes that bind a letter of their own of the same name. Where `new`
is already bound at a level the rename passes through, that bound letter is first moved
to a fresh one, so nothing is captured. The differentiator, inlining and δ elimination
all rename through here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable

from .expr import (
    Call, Compare, Delta, Deriv, Expr, Mask, MatrixCall, Number, Power, Product, Reduce, Shift, Sum, Tensor,
    leaf_factors,
    with_children,
)
from .indices import LEAVES, free_indices, relabelled_index, summed_indices

Fresh = Callable[[], str]

POOL = "pqrstuvklmabcdefijnowxyzgh"


def letter_counts(node: Expr) -> Counter:
    """How often each index letter is written in `node` (on tensors, δs and masks, as a
    reduction's or a relabelling's letter)."""
    counts: Counter = Counter()
    for sub in node.walk():
        counts.update(_own_letters(sub))
    return counts


def letter_count(node: Expr, letter: str) -> int:
    """How often `letter` is written in `node`: only the subtrees that hold it are read."""
    total, stack = 0, [node]
    while stack:
        top = stack.pop()
        if letter in _remembered_letters(top):
            total += _own_letters(top).count(letter)
            stack.extend(top.children())
    return total


def letters_in(node: Expr) -> frozenset[str]:
    """Every index letter that occurs anywhere in `node` (worked out once a node)."""
    return _remembered_letters(node)


def _own_letters(node: Expr) -> tuple[str, ...]:
    if isinstance(node, (Tensor, Delta, Mask, Shift)):
        return node.all_indices
    if isinstance(node, Reduce):
        return node.indices
    if isinstance(node, Call) and node.relabel:
        return (node.relabel,)
    if isinstance(node, MatrixCall):
        return node.relabel
    return ()


def _remembered_letters(node: Expr) -> frozenset[str]:
    """The letters of `node`, kept on each node once worked out (nodes never change):
    renaming asks for them at every level it passes, and a rewrite rebuilds a tree around
    subtrees whose letters are known. Worked out bottom-up by a stack, not by recursion,
    so a deep tree is no problem."""
    known = node.__dict__.get("_letters")
    if known is not None:
        return known
    stack = [node]
    while stack:
        top = stack[-1]
        if "_letters" in top.__dict__:
            stack.pop()
            continue
        children = top.children()
        missing = [c for c in children if "_letters" not in c.__dict__]
        if missing:
            stack.extend(missing)
            continue
        letters = frozenset(_own_letters(top)).union(*(c.__dict__["_letters"] for c in children))
        object.__setattr__(top, "_letters", letters)
        stack.pop()
    return node.__dict__["_letters"]


def exposed_letters(factors: Iterable[Expr], fixed: frozenset[str]) -> set[str]:
    """The letters factors show to a product they stand in: all of a tensor's, δ's or
    mask's, only the free ones of a scope (what a function argument sums stays inside)."""
    out: set[str] = set()
    for factor in factors:
        if isinstance(factor, (Tensor, Delta, Mask, Shift)):
            out.update(factor.all_indices)
        elif isinstance(factor, Product):
            out |= exposed_letters(factor.factors, fixed)
        else:
            out.update(free_indices(factor, fixed))
    return out


def fresh_letters(used: Iterable[str], preferred: str = POOL) -> Fresh:
    """A source of index letters none of which is in `used` (nor handed out before)."""
    taken = set(used)
    candidates = _candidates(preferred)  # one pass: a candidate passed over stays taken

    def fresh() -> str:
        for candidate in candidates:
            if candidate not in taken:
                taken.add(candidate)
                return candidate
        raise AssertionError("unreachable: the candidates are endless")

    return fresh


def avoiding(fresh: Fresh, letters: Iterable[str]) -> Fresh:
    """`fresh`, passing over `letters` too (ones it never saw: another equation's)."""
    skip = set(letters)

    def fresh_avoiding() -> str:
        while (letter := fresh()) in skip:
            pass
        return letter

    return fresh_avoiding


def _candidates(preferred: str):
    yield from preferred
    n = 1
    while True:
        for letter in preferred:
            yield f"{letter}{n}"
        n += 1


def _swap(indices: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if i == old else i for i in indices)


def rename(node: Expr, old: str, new: str, fixed: frozenset[str], fresh: Fresh, merge: bool = False) -> Expr:
    """Rename the index `old` of `node`'s own level (and where it runs inside) to `new`.

    With `merge`, `new` may already be summed at this level and the two become one index
    (δ elimination: `a_i δ_ij b_j` → `a_j b_j`); otherwise such a `new` is moved aside.
    """
    if old == new or isinstance(node, Number):
        return node
    if not merge and old in fixed and new not in _remembered_letters(node):
        return substitute_letters(node, {old: new})  # nothing to capture, no scope to analyse
    if isinstance(node, Tensor):
        if not merge and new in summed_indices(node, fixed):
            node = rename(node, new, fresh(), fixed, fresh)  # a trace standing alone (T_nin)^2 keeps its own n
        derivs = tuple(Deriv(_swap(d.indices, old, new), d.wrt) for d in node.derivs)
        return Tensor(node.name, _swap(node.indices, old, new), derivs, span=node.span)
    if isinstance(node, Delta):
        return Delta(_swap(node.left, old, new), _swap(node.right, old, new), span=node.span)
    if isinstance(node, Mask):
        return _mask_renamed(node, {old: new})
    if isinstance(node, Shift):
        return _shift_renamed(node, {old: new})
    if isinstance(node, Product):
        if not merge and new in summed_indices(node, fixed):
            node = rename(node, new, fresh(), fixed, fresh)
        return _each_factor(node, lambda f: _rename_factor(f, old, new, fixed, fresh, merge))
    if isinstance(node, (Sum, Compare)):  # each term (each side) is a scope of its own
        return with_children(node, tuple(
            rename(t, old, new, fixed, fresh) if old in free_indices(t, fixed)
            else _move_bound(t, new, fixed, fresh) if old in fixed else t for t in node.children()))
    if isinstance(node, Power):
        return Power(rename(node.base, old, new, fixed, fresh), node.exponent, span=node.span)
    if isinstance(node, Call):
        if node.relabel is not None:
            if node.relabel != old and _relabels(node, new, fixed):  # σ_i(T_j) while renaming to j: its j moves aside
                node = replace(node, arg=rename(node.arg, new, fresh(), fixed, fresh))
            if node.relabel == old:
                # σ_l(T_ml) with l fixed reads the diagonal T_ll: the argument's l is renamed too;
                # a letter new the argument sums of its own (σ_j(T_kii), j to i) moves aside first
                node = replace(node, relabel=new, arg=_move_bound(node.arg, new, fixed, fresh))
                if old not in fixed:
                    return node
            if old not in free_indices(node.arg, fixed):
                return node
        return replace(node, arg=rename(node.arg, old, new, fixed, fresh))
    if isinstance(node, MatrixCall):
        # its letters are its argument's: renamed together (a letter new the argument sums
        # of its own moves aside, as in any scope)
        if old not in free_indices(node.arg, fixed):
            return node
        return replace(node, relabel=_swap(node.relabel, old, new), arg=rename(node.arg, old, new, fixed, fresh))
    if isinstance(node, Reduce):
        if old in node.indices:
            return node
        if new in node.indices:
            node = rebind_reduction(node, new, fresh(), fixed, fresh)
        inner = fixed | set(node.indices)
        return replace(node, body=rename(node.body, old, new, inner, fresh))
    raise TypeError(f"cannot rename indices in {type(node).__name__}")


def _mask_renamed(node: Mask, mapping: dict[str, str]) -> Mask:
    right = node.right if node.right is None else mapping.get(node.right, node.right)
    return Mask(node.op, mapping.get(node.left, node.left), right, node.offset, span=node.span)


def _shift_renamed(node: Shift, mapping: dict[str, str]) -> Shift:
    """A shifted δ with its letters renamed, like δ's: every one is an occurrence."""
    terms = tuple((coef, mapping.get(letter, letter)) for coef, letter in node.terms)
    return Shift(mapping.get(node.index, node.index), terms, node.offset, span=node.span)


def _rename_factor(factor: Expr, old: str, new: str, fixed, fresh, merge: bool) -> Expr:
    if isinstance(factor, (Tensor, Delta, Mask, Shift)):
        return rename(factor, old, new, fixed, fresh, merge)
    if old in free_indices(factor, fixed):
        return rename(factor, old, new, fixed, fresh)
    return _move_bound(factor, new, fixed, fresh) if old in fixed else factor


def _each_factor(node: Product, change: Callable[[Expr], Expr]) -> Product:
    """`node` with `change` applied to each of its factors, those in parenthesised groups
    too, the grouping kept. Parentheses around a product only group: a factor inside one
    is a factor of `node`, read with the letters fixed around `node` (as `indices` reads
    it), so `a_t (σ_u(W_t) b_u)` is renamed as `a_t σ_u(W_t) b_u` is."""
    return Product(tuple(_each_factor(f, change) if isinstance(f, Product) else change(f) for f in node.factors),
                   span=node.span)


def _move_bound(node: Expr, letter: str, fixed, fresh: Fresh) -> Expr:
    """`node`, beside which `letter` is about to be fixed, with the scopes inside it that
    bind a `letter` of their own moved to fresh letters (in `σ(a_j b_j)` the j is its own)."""
    if letter not in letters_in(node) or letter in free_indices(node, fixed):
        return node
    if isinstance(node, (Tensor, Product)) and letter in summed_indices(node, fixed):
        node = rename(node, letter, fresh(), fixed, fresh)
    if isinstance(node, Product):
        return _each_factor(node, lambda f: _move_bound(f, letter, fixed, fresh))
    if isinstance(node, (Sum, Compare)):
        return with_children(node, tuple(_move_bound(t, letter, fixed, fresh) for t in node.children()))
    if isinstance(node, Power):
        return Power(_move_bound(node.base, letter, fixed, fresh), _move_bound(node.exponent, letter, fixed, fresh),
                     span=node.span)
    if isinstance(node, Call):
        if _relabels(node, letter, fixed):
            node = replace(node, arg=rename(node.arg, letter, fresh(), fixed, fresh))
        return replace(node, arg=_move_bound(node.arg, letter, fixed, fresh))
    if isinstance(node, MatrixCall):
        return replace(node, arg=_move_bound(node.arg, letter, fixed, fresh))
    if isinstance(node, Reduce) and letter not in node.indices:
        return replace(node, body=_move_bound(node.body, letter, fixed | set(node.indices), fresh))
    return node


def _relabels(call: Call, letter: str, fixed) -> bool:
    """Whether `call` relabels its argument's own index `letter` (σ_i(T_j), letter j)."""
    return call.relabel is not None and call.relabel != letter and relabelled_index(call, fixed) == letter


def rebind_reduction(node: Reduce, old: str, new: str, fixed: frozenset[str], fresh: Fresh) -> Reduce:
    """`sum_old(body)` as `sum_new(body)`, the body's old renamed with it."""
    if old == new:
        return node
    inner = fixed | set(node.indices)
    # old stays fixed while it is renamed: inside the body it is the reduction's, never summed
    body = rename(node.body, old, new, inner, fresh) if new not in letters_in(node.body) else None
    if body is None:
        body = rename(rename(node.body, new, fresh(), inner, fresh), old, new, inner, fresh)
    return replace(node, indices=_swap(node.indices, old, new), body=body)


def rename_summed_apart(node: Expr, avoid: set[str], fixed: frozenset[str], fresh: Fresh) -> Expr:
    """Move the indices summed at `node`'s own level off the letters in `avoid`, so the
    node can be set beside other factors in a product without sharing a summation."""
    if not isinstance(node, (Product, Tensor)):
        return node
    for index in summed_indices(node, fixed):
        if index in avoid:
            node = rename(node, index, fresh(), fixed, fresh)
    return node


def rename_fixed(node: Expr, mapping: dict[str, str], fixed: frozenset[str], fresh: Fresh) -> Expr:
    """Rename indices fixed from outside (a definition's left-hand side indices, when it is
    inlined where it is used) all at once, through temporaries so that swaps are safe."""
    changed = {old: new for old, new in mapping.items() if old != new}
    if not changed:
        return node
    targets = set(changed.values())
    present = targets & _remembered_letters(node)
    if len(targets) == len(changed) and present <= set(changed) and (not present or not _rebinds(node, changed)):
        # new letters found nowhere else in node capture nothing: one simultaneous pass
        return substitute_letters(node, changed)
    temps = {old: fresh() for old in mapping}
    for old, temp in temps.items():
        node = rename(node, old, temp, fixed, fresh)
        fixed = (fixed - {old}) | {temp}
    for old, temp in temps.items():
        target = mapping[old]
        node = rename(node, temp, target, fixed, fresh)
        fixed = (fixed - {temp}) | {target}
    return node


def _rebinds(node: Expr, letters) -> bool:
    """Whether a reduction in `node` binds one of `letters` of its own."""
    return any(isinstance(sub, Reduce) and set(sub.indices) & set(letters) for sub in node.walk())


def substitute_letters(node: Expr, mapping: dict[str, str]) -> Expr:
    """Fixed letters replaced at once, where they run free (a reduction that binds one of
    its own keeps it): what `rename` does to a fixed letter, without its scope analysis,
    when the new letters are distinct and occur in `node` only as letters being replaced
    (the callers check)."""
    def swap(indices: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(mapping.get(i, i) for i in indices)

    if mapping.keys().isdisjoint(_remembered_letters(node)):
        return node
    if isinstance(node, Tensor):
        derivs = tuple(Deriv(swap(d.indices), d.wrt) for d in node.derivs)
        return Tensor(node.name, swap(node.indices), derivs, span=node.span)
    if isinstance(node, Delta):
        return Delta(swap(node.left), swap(node.right), span=node.span)
    if isinstance(node, Mask):
        return _mask_renamed(node, mapping)
    if isinstance(node, Shift):
        return _shift_renamed(node, mapping)
    if isinstance(node, Reduce):
        inner = {old: new for old, new in mapping.items() if old not in node.indices}
        return replace(node, body=substitute_letters(node.body, inner)) if inner else node
    if isinstance(node, Call) and node.relabel is not None:
        return replace(node, relabel=mapping.get(node.relabel, node.relabel),
                       arg=substitute_letters(node.arg, mapping))
    if isinstance(node, MatrixCall):
        return replace(node, relabel=swap(node.relabel), arg=substitute_letters(node.arg, mapping))
    children = node.children()
    return with_children(node, tuple(substitute_letters(c, mapping) for c in children)) if children else node


def canonical_bound(node: Expr, fixed: frozenset[str]) -> Expr:
    """`node` with every bound index renamed #0, #1, ... in order of appearance, scope by
    scope: two expressions that differ only in the names of what they sum become equal.

    One walk: each scope names the letters it binds and looks up the others in the names
    the scopes around it gave, so an inner scope's own letter shadows an outer one of the
    same name, as it does for the evaluators, and no # name can capture a user's letter.
    (Renaming one bound letter at a time walked the tree once per letter: the keys of a
    Hessian's terms took most of the time of compiling it.)"""
    return _canonical(node, frozenset(fixed), {}, itertools.count())


def _canonical(node: Expr, fixed: frozenset[str], names: dict[str, str], counter) -> Expr:
    if isinstance(node, (Product, *LEAVES)):
        names = _named(names, summed_indices(node, fixed), counter)
        if not isinstance(node, Product):
            return _leaf_renamed(node, names)
        return Product(tuple(
            _leaf_renamed(f, names) if isinstance(f, LEAVES) else _canonical(f, fixed, names, counter)
            for f in leaf_factors(node)
        ))
    if isinstance(node, (Sum, Compare, Power)):
        return with_children(node, tuple(_canonical(c, fixed, names, counter) for c in node.children()))
    if isinstance(node, Call):
        if node.relabel is None:
            return replace(node, arg=_canonical(node.arg, fixed, names, counter))
        own = relabelled_index(node, fixed)  # σ_i(T_j): j is the call's own letter
        inner = names if own == node.relabel else _named(names, (own,), counter)
        return replace(node, arg=_canonical(node.arg, fixed, inner, counter), relabel=names.get(node.relabel, node.relabel))
    if isinstance(node, MatrixCall):
        relabel = tuple(names.get(i, i) for i in node.relabel)
        return replace(node, relabel=relabel, arg=_canonical(node.arg, fixed, names, counter))
    if isinstance(node, Reduce):
        inner = _named(names, node.indices, counter)
        body = _canonical(node.body, fixed | set(node.indices), inner, counter)
        return replace(node, indices=tuple(inner[i] for i in node.indices), body=body)
    return node


def _named(names: dict[str, str], letters: Iterable[str], counter) -> dict[str, str]:
    """`names` with each of `letters` bound anew to the next # name."""
    if not letters:
        return names
    return {**names, **{letter: f"#{next(counter)}" for letter in letters}}


def _leaf_renamed(node: Expr, names: dict[str, str]) -> Expr:
    """A tensor, δ, mask or shift with its letters looked up in `names`."""
    if not names:
        return node
    if isinstance(node, Mask):
        return _mask_renamed(node, names)
    if isinstance(node, Shift):
        return _shift_renamed(node, names)
    def swap(indices: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(names.get(i, i) for i in indices)
    if isinstance(node, Delta):
        return Delta(swap(node.left), swap(node.right))
    return Tensor(node.name, swap(node.indices), tuple(Deriv(swap(d.indices), d.wrt) for d in node.derivs))
