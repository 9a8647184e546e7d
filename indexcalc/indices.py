"""Which indices are free and which are summed: the summation rules in one place.

Free indices are fixed from the outside in. `fixed` holds the indices fixed by the
left-hand side and by every enclosing `sum_j(...)` / `mean_n(...)`: they are never summed,
and terms and factors are broadcast over them. Inside a product any other index that
occurs more than once (in two or more factors, or twice on one tensor as in `m_ii`) is
summed there, einsum's rule; parentheses around a product only group. Function
arguments, reductions and sums are scopes: what is summed inside them stays inside.

Every evaluator asks `free_indices` and `summed_indices`, so the einsum evaluator and the
explicit loops can never disagree about what an expression means.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from .errors import IndexNotationError, ShapeError
from .expr import (
    Call,
    Delta,
    Equation,
    Expr,
    Number,
    Power,
    Product,
    Reduce,
    Sum,
    Tensor,
    leaf_factors,
)


def _error(message: str, node: Expr) -> IndexNotationError:
    span = getattr(node, "span", None)
    return IndexNotationError(message, pos=span[0] if span else None)


def _fmt(indices) -> str:
    return "{" + ", ".join(indices) + "}" if indices else "no index"


def free_indices(node: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The indices `node` leaves free when `fixed` are fixed from outside, in order of
    first appearance."""
    return _free(node, frozenset(fixed))


def summed_indices(product: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The indices a product (or a lone tensor, `m_ii`) sums over, given `fixed`."""
    return _occurrence_split(product, frozenset(fixed))[1]


def occurrence_counts(product: Expr, fixed: frozenset[str] = frozenset()) -> Counter:
    """How many times each index occurs among the factors of a product."""
    return Counter(_occurrences(product, frozenset(fixed)))


def relabelled_index(call: Call, fixed: frozenset[str] = frozenset()) -> str:
    """For `σ_i(arg)`: the index of arg that becomes i."""
    free = _free(call.arg, frozenset(fixed))
    candidates = [i for i in free if i not in fixed]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and call.relabel in free:
        return call.relabel
    raise _error(
        f"{call.func}_{call.relabel}(...) relabels one free index of its argument, "
        f"but the argument {call.arg} has {_fmt(candidates)} free beside the fixed {_fmt(sorted(fixed))}",
        call,
    )


def _occurrences(node: Expr, fixed: frozenset[str]) -> list[str]:
    if isinstance(node, (Tensor, Delta)):
        return list(node.all_indices)
    out: list[str] = []
    for factor in leaf_factors(node):
        if isinstance(factor, (Tensor, Delta)):
            out.extend(factor.all_indices)
        else:
            out.extend(_free(factor, fixed))
    return out


@lru_cache(maxsize=65536)
def _occurrence_split(node: Expr, fixed: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    counts = Counter(_occurrences(node, fixed))
    free = tuple(i for i in counts if i in fixed or counts[i] == 1)
    summed = tuple(i for i in counts if i not in fixed and counts[i] > 1)
    return free, summed


@lru_cache(maxsize=65536)
def _free(node: Expr, fixed: frozenset[str]) -> tuple[str, ...]:
    if isinstance(node, Number):
        return ()
    if isinstance(node, (Tensor, Delta, Product)):
        return _occurrence_split(node, fixed)[0]
    if isinstance(node, Sum):
        return _sum_free(node, fixed)
    if isinstance(node, Power):
        exponent_free = _free(node.exponent, fixed)
        if exponent_free:
            raise _error(f"the exponent {node.exponent} must carry no free index, it has {_fmt(exponent_free)}", node.exponent)
        return _free(node.base, fixed)
    if isinstance(node, Call):
        free = _free(node.arg, fixed)
        if node.relabel is None:
            return free
        source = relabelled_index(node, fixed)
        # σ_i(T_ji) with i fixed outside reads the diagonal T_ii: one i
        return tuple(dict.fromkeys(node.relabel if i == source else i for i in free))
    if isinstance(node, Reduce):
        inner = fixed | set(node.indices)
        free = _free(node.body, inner)
        missing = [i for i in node.indices if i not in free]
        if missing:
            raise _error(
                f"{node.op}_{''.join(node.indices)}(...) reduces over {_fmt(missing)}, "
                f"which does not occur in {node.body}",
                node,
            )
        return tuple(i for i in free if i not in node.indices)
    raise IndexNotationError(f"cannot work out the indices of {type(node).__name__}")


def _sum_free(node: Sum, fixed: frozenset[str]) -> tuple[str, ...]:
    frees = [_free(term, fixed) for term in node.terms]
    shared = None
    for term, free in zip(node.terms, frees):
        own = frozenset(i for i in free if i not in fixed)
        if not free:
            continue  # scalar expansion
        if shared is None:
            shared, first = own, (term, free)
        elif own != shared:
            raise _error(
                f"the terms of a sum must carry the same indices (beside those fixed from outside, "
                f"{_fmt(sorted(fixed))}): {first[0]} has {_fmt(first[1])} but {term} has {_fmt(free)}",
                term,
            )
    out: list[str] = []
    for free in frees:
        out.extend(i for i in free if i not in out)
    return tuple(out)


def check_equation(eq: Equation) -> None:
    """The right-hand side must carry exactly the left-hand side's indices; a comma
    derivative may leave some out, being constant along them (`y_{i,()}[c] = 1`)."""
    lhs = eq.lhs.all_indices
    try:
        free = free_indices(eq.rhs, frozenset(lhs))
    except IndexNotationError as err:
        raise _with_source(err, eq)
    if set(free) != set(lhs) and not (eq.lhs.derivs and set(free) <= set(lhs)):
        extra = [i for i in free if i not in lhs]
        missing = [i for i in lhs if i not in free]
        detail = []
        if extra:
            detail.append(f"{_fmt(extra)} free on the right but not on the left")
        if missing:
            detail.append(f"{_fmt(missing)} on the left but not on the right")
        err = IndexNotationError(
            f"the two sides of {eq.lhs} = ... carry different indices: the left has "
            f"{_fmt(lhs)}, the right {_fmt(free)} ({'; '.join(detail)})",
            pos=eq.rhs.span[0] if getattr(eq.rhs, "span", None) else None,
        )
        raise _with_source(err, eq)


def _with_source(err: IndexNotationError, eq: Equation) -> IndexNotationError:
    return err.with_source(eq.source, None) if eq.source else err


def infer_sizes(
    node: Expr,
    shapes: dict[str, tuple[int, ...]],
    fixed: frozenset[str] = frozenset(),
    preset: dict[str, tuple[int, str]] | None = None,
) -> dict[str, int]:
    """The size of every index in `node`, from the shapes of the arrays of its tensors.

    Index letters are local to one equation and have one size in it. A δ ties the sizes
    of its paired indices, and so does a relabelling `σ_i(w_jk x_k)` (i with j). `shapes`
    maps a tensor's key to its shape; a tensor whose key is missing is skipped here (the
    evaluator names it). `preset` gives sizes known otherwise, with where they come from.
    """
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    for index, (size, where) in (preset or {}).items():
        _bind(sizes, origin, index, size, where)
    for sub in node.walk():
        if isinstance(sub, Tensor) and sub.key in shapes:
            shape = shapes[sub.key]
            axes = sub.all_indices
            if len(shape) != len(axes):
                raise ShapeError(
                    f"{sub} has {len(axes)} ind{'ex' if len(axes) == 1 else 'ices'} but its array "
                    f"'{sub.key}' has {len(shape)} dimension{'s' if len(shape) != 1 else ''} (shape {shape})"
                )
            for index, size in zip(axes, shape):
                _bind(sizes, origin, index, size, f"{sub} (axis of '{sub.key}')")
    ties = list(_ties(node, frozenset(fixed)))
    changed = True
    while changed:
        changed = False
        for a, b, where in ties:
            for x, y in ((a, b), (b, a)):
                if x in sizes and y not in sizes:
                    sizes[y], origin[y] = sizes[x], where
                    changed = True
    for a, b, where in ties:
        if a in sizes and b in sizes and sizes[a] != sizes[b]:
            raise ShapeError(f"{where} pairs index {a} (size {sizes[a]}) with index {b} (size {sizes[b]})")
    return sizes


def _ties(node: Expr, fixed: frozenset[str]):
    """Pairs of indices that must have one size: δ partners and relabellings."""
    if isinstance(node, Delta):
        for a, b in node.pairs:
            yield a, b, str(node)
    elif isinstance(node, Call) and node.relabel is not None:
        yield node.relabel, relabelled_index(node, fixed), str(node)
    if isinstance(node, Reduce):
        fixed = fixed | set(node.indices)
    if isinstance(node, Equation):
        fixed = frozenset(node.lhs.all_indices)
    for child in node.children():
        yield from _ties(child, fixed)


def _bind(sizes, origin, index, size, where) -> None:
    if index in sizes and sizes[index] != size:
        raise ShapeError(
            f"index {index} has size {sizes[index]} in {origin.get(index, 'the left-hand side')} "
            f"but size {size} in {where}"
        )
    if index not in sizes:
        sizes[index] = size
        origin[index] = where
