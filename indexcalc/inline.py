"""Derivative lines substituted into one another, as the notes write one formula: what
`diff(..., inline=True)` prints, what compile reads a program's derivative lines through,
and how a named sum of exponentials is read through its definition. Each substitution
renames the definition's bound letters apart and keeps the sizes its own line had."""

from __future__ import annotations

import itertools
import math

from .errors import InlineTooLargeError
from .expr import Equation, Expr, Number, Product, Reduce, Sum, Tensor, leaf_factors
from .indices import map_scoped, occurrence_counts, summed_indices
from .program import still_needed
from .relabel import fresh_letters, letters_in, rename, rename_fixed
from .scope import fresh_binders


INLINE_LIMIT = 20_000  # nodes of an inlined derivative, before it is simplified


def inline_last(lines: list[Equation], limit: int | None = None) -> list[Equation]:
    """The last derivative line with every named derivative replaced by its definition,
    after the definitions it still needs (none, unless a derivative sits where it cannot
    be substituted without changing what its indices mean).

    Past `limit` nodes (INLINE_LIMIT by default) an InlineTooLargeError: diff(inline=True)
    refuses a formula too long to simplify and print; compile, which asks with a lower
    limit, keeps the lines. Where the definitions' sizes alone pass it (a chain of update
    rules), that is known before the work."""
    limit = INLINE_LIMIT if limit is None else limit
    target = lines[-1]
    definitions = {eq.lhs.key: eq for eq in lines if eq.lhs.derivs}
    if _inlined_size(target, definitions, limit, {}) > limit:
        raise _too_large(f"more than {limit:,} nodes")
    fresh = fresh_letters(set().union(*(letters_in(eq) for eq in lines)))
    rhs = _within(substitute(target.rhs, definitions, frozenset(target.lhs.all_indices), fresh, target.lhs.key,
                             limit=limit), limit)
    return still_needed(lines[:-1], [Equation(target.lhs, rhs)])


def _within(node: Expr, limit: int) -> Expr:
    """`node`, if it has at most `limit` nodes (counting stops there)."""
    if sum(1 for _ in itertools.islice(node.walk(), limit + 1)) > limit:
        raise _too_large(f"more than {limit:,} nodes")
    return node


def _inlined_size(eq: Equation, definitions: dict[str, Equation], limit: int, memo: dict[str, int]) -> int:
    """At least how many nodes `eq` has once every named derivative in it is substituted
    (multiplying out products makes it more); counting stops past `limit`."""
    total = 0
    for node in eq.rhs.walk():
        key = node.key if isinstance(node, Tensor) else None
        if key in definitions and key != eq.lhs.key:
            if key not in memo:
                memo[key] = 0  # a definition never refers to itself; this guards the recursion
                memo[key] = _inlined_size(definitions[key], definitions, limit, memo)
            total += memo[key]
        else:
            total += 1
        if total > limit:
            break
    return total


def _too_large(what: str) -> InlineTooLargeError:
    return InlineTooLargeError(
        f"inlined, this derivative would be {what} (derivative lines substituted into one "
        "another multiply their terms): read it in the chain form, without inline "
        "(evaluate and compile take either and give the same numbers)")


def substitute(node: Expr, definitions, fixed, fresh, own: str, bodies: dict | None = None,
               limit: int | None = None) -> Expr:
    """Named derivatives replaced by their definitions. In a product the definition's
    terms are multiplied out with the other factors, so every index keeps its count
    (a definition `a_{i,g} = s_i t_i + u_i` used in `c_i a_{i,g}` gives
    `c_i s_i t_i + c_i u_i`); elsewhere a name is replaced only where its letters are
    fixed, as they were on the definition's left-hand side. `bodies` keeps each
    definition once substituted, so a derivative used along many paths of a Hessian's
    chain is worked out once, not once per path."""
    bodies = {} if bodies is None else bodies

    def again(child: Expr, inner=fixed) -> Expr:
        return substitute(child, definitions, inner, fresh, own, bodies, limit)

    def named(t: Expr) -> bool:
        return isinstance(t, Tensor) and bool(t.derivs) and t.key in definitions and t.key != own

    if named(node):
        return definition_of(node, definitions, fresh, bodies, limit) if set(node.all_indices) <= fixed else node
    if isinstance(node, Product):
        choices = []
        for factor in leaf_factors(node):
            if named(factor):
                body = definition_of(factor, definitions, fresh, bodies, limit)
                parts = body.terms if isinstance(body, Sum) else (body,)
                choices.append([(part, set(factor.all_indices)) for part in parts])
            else:
                choices.append([(again(factor), set())])
        count = math.prod(len(c) for c in choices)
        if limit is not None and count > limit:
            raise _too_large(f"{count:,} terms in one product")
        terms = [_summed_product(choice, fixed) for choice in itertools.product(*choices)]
        return terms[0] if len(terms) == 1 else Sum(tuple(terms))
    return map_scoped(node, fixed, again)


def _summed_product(choice, fixed) -> Expr:
    """The product of the chosen factors. A term of a definition that is constant along
    one of its name's indices (a scalar expanded over it) leaves that index to fewer
    factors; where it is then left to one, the sum over it is written out."""
    product = Product(tuple(part for part, _ in choice))
    counts = occurrence_counts(product, fixed)
    lost = set()
    for part, letters in choice:
        lost |= {i for i in letters if i not in fixed and i not in letters_in(part)}
    lone = tuple(sorted(i for i in lost if counts.get(i, 0) == 1))
    return Reduce("sum", lone, product, implicit=True) if lone else product


def definition_of(ref: Tensor, definitions, fresh, bodies: dict, limit: int | None = None) -> Expr:
    """The definition of `ref`: every letter it binds renamed to a fresh one (it comes
    from another equation, where a letter may have another size, and each use gets its
    own), its own indices renamed to the ones `ref` uses."""
    eq = definitions[ref.key]
    inner_fixed = frozenset(eq.lhs.all_indices)
    if ref.key not in bodies:  # a body past the limit is refused before its every use is renamed
        body = substitute(eq.rhs, definitions, inner_fixed, fresh, ref.key, bodies, limit)
        bodies[ref.key] = _within(body, limit) if limit is not None else body
    body = bodies[ref.key]
    parts = body.terms if isinstance(body, Sum) else (body,)
    renamed = []
    for part in parts:
        for index in _summed_here(part, inner_fixed):
            part = rename(part, index, fresh(), inner_fixed, fresh)
        renamed.append(fresh_binders(part, inner_fixed, fresh))
    body = Sum(tuple(renamed)) if isinstance(body, Sum) else renamed[0]
    body = rename_fixed(body, dict(zip(eq.lhs.all_indices, ref.all_indices)), inner_fixed, fresh)
    return _with_wrt_sizes(body, ref)


def _with_wrt_sizes(body: Expr, ref: Tensor) -> Expr:
    """`body`, the definition of the derivative `ref`, with a carrier `(1 + 0 w_gh)` for a
    derivative group whose letters reach it only through δ tensors (or none: a zero), and
    `(1 + 0 m_t)` for its own indices where the definition no longer reads them: on its
    own line each took its size from an array, and once the definition is
    substituted under a reduction that runs over them (`sum_lr(g_lr)`), eliminating the δ
    must not leave that reduction with no extent."""
    parts = list(body.terms) if isinstance(body, Sum) else [body]
    if ref.indices:  # the same for its own indices, sized by what it differentiates (m_t)
        carrier = Sum((Number(1.0), Product((Number(0.0), Tensor(ref.name, ref.indices)))))
        parts = [Product((part, carrier)) if not set(ref.indices) <= _sized_letters(part) else part for part in parts]
    position = len(ref.indices)
    for d in ref.derivs:
        group = ref.all_indices[position : position + len(d.indices)]
        position += len(d.indices)
        if not group or d.wrt is None:
            continue
        carrier = Sum((Number(1.0), Product((Number(0.0), Tensor(d.wrt, group)))))
        parts = [Product((part, carrier)) if not set(group) <= _sized_letters(part) else part for part in parts]
    return Sum(tuple(parts)) if isinstance(body, Sum) else parts[0]


def _sized_letters(node: Expr) -> set[str]:
    """The letters of `node` that an array's axis gives a size (a δ gives none)."""
    return {i for t in node.walk() if isinstance(t, Tensor) for i in t.all_indices}


def _summed_here(node: Expr, fixed) -> tuple[str, ...]:
    return summed_indices(node, fixed) if isinstance(node, (Product, Tensor)) else ()
