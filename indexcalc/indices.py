"""Which indices are free and which are summed: the summation rules in one place.

Free indices are fixed from the outside in. `fixed` holds the indices fixed by the
left-hand side and by every enclosing `sum_j(...)` / `mean_n(...)`: they are never summed,
and terms and factors are broadcast over them. Inside a product any other index that
occurs more than once (in two or more factors, or twice on one tensor as in `m_ii`) is
summed there, einsum's rule; parentheses around a product only group. Function
arguments, reductions and sums are scopes: what is summed inside them stays inside.

Two uses have two readings and are refused here, with both readings spelled out: a term
of a sum that sums an index which a sibling term carries free (`a_ij b_ij - t_ij`), and an
index occurring three or more times in one product outside a δ (`w_ij x_j x_j`). Trees
built in Python are held to the notation too: a reduction or function the notation does
not know is refused here, not read one way by one route and another by the next.

Every evaluator asks `free_indices` and `summed_indices`, so the einsum evaluator and the
explicit loops can never disagree about what an expression means; and every route (the
evaluators, diff, simplify, compile) passes through `free_indices` or `check_equation`,
so all of them refuse the same things.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import lru_cache

from . import functions
from .errors import ArgumentError, IndexNotationError, ShapeError, kind_of, read_as_indices
from .expr import (
    COMPARISONS,
    MATRIX_CALLS,
    MATRIX_REDUCTIONS,
    REDUCTIONS,
    Call,
    Compare,
    Delta,
    Equation,
    Expr,
    Mask,
    MatrixCall,
    Number,
    Power,
    Product,
    Reduce,
    Shift,
    Sum,
    Tensor,
    leaf_factors,
    quoted,
    with_children,
)
from .shifts import inferred_size
from .tokens import is_index_name, written_subscript


def error_at(message: str, node: Expr) -> IndexNotationError:
    span = getattr(node, "span", None)
    return IndexNotationError(message, pos=span[0] if span else None)


def shown_indices(indices) -> str:
    return "{" + ", ".join(indices) + "}" if indices else "no index"


def beside_fixed(fixed) -> str:
    """" beside the fixed {i, j}" for a message, or nothing where none is fixed."""
    return f" beside the fixed {shown_indices(sorted(fixed))}" if fixed else ""


def free_indices(node: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The indices `node` leaves free when `fixed` are fixed from outside, in order of
    first appearance."""
    return _free(*_checked("free_indices", node, fixed))


def summed_indices(product: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The indices a product (or a lone tensor, `m_ii`) sums over, given `fixed`."""
    product, fixed = _checked("summed_indices", product, fixed)
    if not isinstance(product, (Product,) + LEAVES):
        raise ArgumentError(f"summed_indices takes a product (w_ij x_j) or a tensor (m_ii), not the "
                            f"{type(product).__name__} ({product}): a sum's terms, a reduction's body and a "
                            f"function's argument each sum their own")
    return _occurrence_split(product, fixed)[1]


def _checked(call: str, node, fixed) -> tuple[Expr, frozenset[str]]:
    """The public calls' arguments: an expression (what `ic.parse` returns) and the
    letters fixed from outside (a frozenset, as the stages pass them, or any set of
    names), as an ArgumentError where they are not."""
    if not isinstance(node, Expr):
        raise ArgumentError(f"{call} takes an expression (ic.parse(...)), not {kind_of(node)}")
    if type(fixed) is frozenset:
        return node, fixed
    try:
        letters = frozenset(fixed)
    except TypeError:
        letters = None
    if letters is None or not all(isinstance(letter, str) for letter in letters):
        raise ArgumentError(f"{call}'s fixed letters must be a set of names, not {kind_of(fixed)}")
    return node, letters


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
    raise error_at(
        f"{call.func}{written_subscript((call.relabel,))}(...) relabels one free index of its argument, "
        f"but the argument {quoted(call.arg)} has {shown_indices(candidates)} free{beside_fixed(fixed)}",
        call,
    )


LEAVES = (Tensor, Delta, Mask, Shift)  # the factors that show a product their own letters, not a scope's free ones


def _factor_indices(node: Expr, fixed: frozenset[str]) -> list[tuple[Expr, tuple[str, ...]]]:
    """Each factor of a product (a lone tensor is its own one factor) with the indices it
    shows the product: a tensor's, δ's or mask's own, the free ones of anything else."""
    factors = [node] if isinstance(node, LEAVES) else list(leaf_factors(node))
    return [(f, f.all_indices if isinstance(f, LEAVES) else _free(f, fixed)) for f in factors]


def _occurrences(node: Expr, fixed: frozenset[str]) -> list[str]:
    """The occurrences that the summation count sees: a mask's are not among them, since
    a mask selects entries of what it multiplies and sums nothing (`[j <= i] exp(s_ij)`
    keeps i and j free)."""
    return [i for f, indices in _factor_indices(node, fixed) if not isinstance(f, Mask) for i in indices]


@lru_cache(maxsize=65536)
def _occurrence_split(node: Expr, fixed: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    _refuse_three_occurrences(node, fixed)
    factors = _factor_indices(node, fixed)
    counts = Counter(i for f, indices in factors if not isinstance(f, Mask) for i in indices)
    _refuse_unsized_mask_letters(node, factors, counts, fixed)
    for shift in (f for f, _ in factors if isinstance(f, Shift)):
        check_shift(shift)
    order = dict.fromkeys(i for _, indices in factors for i in indices)  # a mask's fixed letters run free too
    free = tuple(i for i in order if i in fixed or counts[i] == 1)
    summed = tuple(i for i in order if i not in fixed and counts[i] > 1)
    return free, summed


def _refuse_unsized_mask_letters(node: Expr, factors, counts: Counter, fixed: frozenset[str]) -> None:
    """A mask's index must occur on another factor of its product or be fixed from outside:
    the mask only selects entries, so an index it alone carries would have no size (and
    a letter nothing else carries is far likelier a typo than a wish for a count)."""
    for mask in (f for f, _ in factors if isinstance(f, Mask)):
        check_mask(mask)
        for index in mask.all_indices:
            if index not in fixed and not counts[index]:
                where = "stands alone" if mask is node else f"occurs nowhere else in {node}"
                raise error_at(
                    f"the index {index} of the mask {mask} {where} and is not fixed from outside: "
                    f"a mask selects entries of what it multiplies, so {index} would have no size; write the "
                    f"mask beside a factor that carries {index} (as in [j <= i] exp(s_ij))",
                    mask,
                )


@lru_cache(maxsize=65536)
def _free(node: Expr, fixed: frozenset[str]) -> tuple[str, ...]:
    if isinstance(node, Number):
        return ()
    if isinstance(node, (Tensor, Delta, Mask, Shift, Product)):
        return _occurrence_split(node, fixed)[0]
    if isinstance(node, Sum):
        return _combined_free(node, node.terms, fixed)
    if isinstance(node, Compare):
        check_comparison(node)
        return _combined_free(node, (node.left, node.right), fixed)
    if isinstance(node, Power):
        exponent_free = _free(node.exponent, fixed)
        if exponent_free:
            raise error_at(f"the exponent {node.exponent} must carry no free index, it has {shown_indices(exponent_free)}", node.exponent)
        return _free(node.base, fixed)
    if isinstance(node, Call):
        check_function(node)
        free = _free(node.arg, fixed)
        if node.relabel is None:
            return free
        source = relabelled_index(node, fixed)
        # σ_i(T_ji) with i fixed outside reads the diagonal T_ii: one i
        return tuple(dict.fromkeys(node.relabel if i == source else i for i in free))
    if isinstance(node, MatrixCall):
        free = _free(node.arg, fixed)
        _check_matrix_call(node, free)
        return free
    if isinstance(node, Reduce):
        check_reduction(node)
        inner = fixed | set(node.indices)
        free = _free(node.body, inner)
        missing = [i for i in node.indices if i not in free]
        if missing:
            raise error_at(
                f"{node.op}{written_subscript(node.indices)}(...) reduces over {shown_indices(missing)}, "
                f"which does not occur in {quoted(node.body)}",
                node,
            )
        return tuple(i for i in free if i not in node.indices)
    raise IndexNotationError(f"cannot work out the indices of {type(node).__name__}")


def _combined_free(node: Expr, terms: tuple[Expr, ...], fixed: frozenset[str]) -> tuple[str, ...]:
    """The free indices of the terms of a sum, or of the two sides of a comparison, which
    combine the same way: equal beside those fixed from outside, or none (expanded)."""
    frees = [_free(term, fixed) for term in terms]
    shared = None
    what = "the terms of a sum" if isinstance(node, Sum) else f"the two sides of a comparison [... {node.op} ...]"
    for term, free in zip(terms, frees):
        own = frozenset(i for i in free if i not in fixed)
        if not free:
            continue  # scalar expansion
        if shared is None:
            shared, first = own, (term, free)
        elif own != shared:
            raise error_at(
                f"{what} must carry the same indices (beside those fixed from outside, "
                f"{shown_indices(sorted(fixed))}): {first[0]} has {shown_indices(first[1])} but {term} has {shown_indices(free)}",
                term,
            )
    _refuse_hidden_sums(node, terms, frees, fixed)
    out: list[str] = []
    for free in frees:
        out.extend(i for i in free if i not in out)
    return tuple(out)


# ---------------------------------------------------------------- uses with two readings


def _refuse_three_occurrences(node: Expr, fixed: frozenset[str]) -> None:
    """A repeated index pairs two occurrences; on three or more factors of one product
    (`w_ij x_j x_j`, `m_ii x_i`) it is far likelier a slip than a wish for one sum over
    all of them, so it must be written out (`sum_j(...)` fixes j inside). Occurrences on
    a δ do not count: a δ renames an index rather than multiplying by another value, and
    derivatives produce `a_i δ_ij b_j`."""
    if isinstance(node, (Delta, Mask, Shift)):
        return
    factors = _factor_indices(node, fixed)
    counted = [(f, ix) for f, ix in factors if not isinstance(f, (Delta, Mask, Shift))]
    counts = Counter(i for _, ix in counted for i in ix if i not in fixed)
    index = next((i for i, n in counts.items() if n >= 3), None)
    if index is None:
        return
    seen = 0
    for factor, indices in counted:
        seen += indices.count(index)
        if seen >= 3:
            break
    where = factor if getattr(factor, "span", None) else node
    raise error_at(_three_occurrences_message(node, index, counts[index], factors), where)


def _three_occurrences_message(node: Expr, index: str, count: int, factors) -> str:
    """Both readings of an index occurring `count` times in `node`, and how to write each."""
    readings = [f"one sum over all {count}: write sum{written_subscript((index,))}({quoted(node)})"]
    seen, pair, rest = 0, [], []
    for factor, indices in factors:
        if seen >= 2 or isinstance(factor, (Delta, Mask, Shift)):
            rest.append(factor)
        else:
            pair.append(factor)
            seen += indices.count(index)
    if rest:
        readings.append(
            f"{_text(pair)} summed, {index} free on the rest: write sum{written_subscript((index,))}({_text(pair)}) {_text(rest)} "
            f"(or, for a different index there, a letter of its own)"
        )
    else:
        readings.append(f"two different indices: give an occurrence of {index} a letter of its own")
    return _two_readings(f"{index} occurs {count} times in {quoted(node)} (outside a δ), but a repeated index sums a pair",
                         readings)


def _two_readings(problem: str, readings: list[str]) -> str:
    """The problem, then each reading on a line of its own."""
    return problem + ", so it reads two ways:" + "".join(f"\n    {r}" for r in readings)


def _text(factors: list[Expr]) -> str:
    """Factors as they would be written in a product."""
    if len(factors) == 1:
        return f"({quoted(factors[0])})" if isinstance(factors[0], Sum) else quoted(factors[0])
    return quoted(Product(tuple(factors)))


def _refuse_hidden_sums(node: Expr, terms: tuple[Expr, ...], frees: list[tuple[str, ...]], fixed: frozenset[str]) -> None:
    """No term may sum, by einsum's rule, an index that a sibling term carries free:
    anywhere inside the term counts (a parenthesised product or sum, a power's base)
    but a function's argument, which the notation makes a scope of its own ("summed
    within the arguments first"); only a written-out `sum_j(...)`/`mean_j(...)` says
    what is meant otherwise. In `(a_ij b_ij - t_ij)`
    the user almost surely means the elementwise product, while the rule contracts it to
    one number and expands that over t_ij: both are plausible, so neither is chosen."""
    carriers = Counter(i for free in frees for i in set(free) if i not in fixed)
    for k, term in enumerate(terms):
        own = set(frees[k])
        carried = {i for i, n in carriers.items() if n > (i in own)}
        for carrier, summed, inner in _implicit_sums(term, fixed):
            clash = tuple(i for i in summed if i in carried)
            if clash:
                sibling = next(t for n, t in enumerate(terms) if n != k and set(clash) & set(frees[n]))
                where = carrier if getattr(carrier, "span", None) else term
                raise error_at(_hidden_sum_message(node, term, carrier, clash, sibling, inner), where)


@lru_cache(maxsize=65536)
def _implicit_sums(node: Expr, fixed: frozenset[str]) -> tuple[tuple[Expr, tuple[str, ...], frozenset[str]], ...]:
    """Every product in `node` (a lone tensor `m_ii` too) that sums an index by einsum's
    rule, with the indices it sums and those fixed where it stands. Inside a reduction its
    own indices are fixed, so a sum written out is never among them."""
    out = []
    if isinstance(node, (Tensor, Delta, Shift, Product)):
        summed = _occurrence_split(node, fixed)[1]
        if summed:
            out.append((node, summed, fixed))
    if isinstance(node, (Call, MatrixCall, Compare)):  # scopes of their own, as the notation says of arguments
        return tuple(out)
    if isinstance(node, Reduce):
        fixed = fixed | set(node.indices)
    children = leaf_factors(node) if isinstance(node, Product) else node.children()
    for child in children:
        if not (isinstance(node, Product) and isinstance(child, LEAVES)):
            out.extend(_implicit_sums(child, fixed))
    return tuple(out)


def _hidden_sum_message(node: Expr, term: Expr, carrier: Expr, clash, sibling: Expr, fixed) -> str:
    """Both readings of `carrier` beside `sibling`, and how to write each."""
    shown, sibling = quoted(_without_number(carrier)), quoted(_without_number(sibling))
    summed = set(_occurrence_split(carrier, fixed)[1])
    kept = [i for i in _occurrences(carrier, fixed) if i not in summed or i in clash]
    line = f"{_new_name(node)}{written_subscript(tuple(dict.fromkeys(kept)))}"
    inside = "" if carrier is term else f" (inside the term {quoted(_without_number(term))})"
    indices = ", ".join(clash)
    return _two_readings(
        f"{shown} sums {indices}, which its sibling term {sibling} carries free{inside}",
        [
            f"elementwise, {indices} running beside {sibling}: write {line} = {shown} on a line of its own "
            f"and use {line} here",
            f"summed over {indices}, one value spread over {sibling}: write sum{written_subscript(clash)}({shown})",
        ],
    )


def _without_number(node: Expr) -> Expr:
    """A product without its leading number: `-a_ij b_ij` is talked about as `a_ij b_ij`."""
    if isinstance(node, Product) and isinstance(node.factors[0], Number) and len(node.factors) > 1:
        rest = node.factors[1:]
        return rest[0] if len(rest) == 1 else Product(rest, span=node.span)
    return node


def _new_name(node: Expr) -> str:
    """A name for a suggested new line that `node` does not already use."""
    used = {t.name for t in node.walk() if isinstance(t, Tensor)}
    return next(n for n in ("P", "Q", "R", "S", "P1", "P2", "P3") if n not in used)


# ---------------------------------------------------------------- trees built in Python


def check_function(node: Call) -> None:
    """The parser refuses an unknown function; a tree built in Python must be refused too,
    not fail halfway through one route and print in another."""
    if functions.lookup(node.func) is None:
        known = ", ".join(f.name for f in functions.FUNCTIONS)
        raise error_at(f"unknown function '{node.func}' in {node.func}(...); the functions are {known}", node)


def check_reduction(node: Reduce) -> None:
    """Each route reads a reduction by its name; one it does not know would be read as
    whatever that route falls back to (a sum by one, a logsumexp by another)."""
    if node.op not in REDUCTIONS:
        raise error_at(
            f"unknown reduction '{node.op}' in {node.op}{written_subscript(node.indices)}(...); "
            f"the reductions are {', '.join(REDUCTIONS)}",
            node,
        )
    if node.op in MATRIX_REDUCTIONS and (len(node.indices) != 2 or len(set(node.indices)) != 2):
        raise error_at(
            f"{node.op} takes a matrix, a pair of indices: {node.op}(A_kl), or {node.op}_kl(...) naming the pair; "
            f"got {shown_indices(node.indices)}",
            node,
        )


def _check_matrix_call(node: MatrixCall, free: tuple[str, ...]) -> None:
    """A held inverse (from Python too): a matrix-valued function the notation knows, two
    distinct letters, and an argument that carries both (`free`, its free indices)."""
    check_matrix_function(node)
    shown = shown_call(node)
    if len(node.relabel) != 2 or len(set(node.relabel)) != 2 or not all(isinstance(i, str) for i in node.relabel):
        raise error_at(f"{shown} relabels a pair: it takes two different indices, as in inv_ij(A_kl)", node)
    missing = [i for i in node.relabel if i not in free]
    if missing:
        raise error_at(
            f"{shown}'s argument {quoted(node.arg)} does not carry {', '.join(missing)}: a held inverse's argument "
            f"carries its pair under the relabelling (parse renames a written one, inv_ij(A_kl) → inv_ij(A_ij))",
            node,
        )


def repeated_index(indices: tuple[str, ...]) -> str | None:
    """The first index named twice: where each index names one axis, a mistake."""
    return next((i for i in indices if indices.count(i) > 1), None)


def check_matrix_function(node: MatrixCall) -> None:
    if not isinstance(node.func, str) or node.func not in MATRIX_CALLS:
        raise error_at(f"unknown matrix function {node.func!r}; the matrix-valued ones are {', '.join(MATRIX_CALLS)}", node)


def shown_call(node: MatrixCall) -> str:
    """`inv_ij(...)`, `inv_{row col}(...)`: the call as its subscript is written."""
    return f"{node.func}{written_subscript(tuple(map(str, node.relabel)))}(...)"


def check_mask(node: Mask) -> None:
    """A mask built in Python holds a comparison the notation knows, on index letters,
    with a whole-number offset; anything else would be read differently by each route."""
    if node.op not in COMPARISONS:
        raise error_at(f"unknown comparison '{node.op}' in a mask; the comparisons are {' '.join(COMPARISONS)}", node)
    letters_ok = isinstance(node.left, str) and (node.right is None or isinstance(node.right, str))
    if not letters_ok or not isinstance(node.offset, int) or isinstance(node.offset, bool):
        raise error_at(
            f"a mask compares index letters, with a whole-number offset: got left={node.left!r}, "
            f"right={node.right!r}, offset={node.offset!r}",
            node,
        )


def check_shift(node: Shift) -> None:
    """A shifted δ built in Python holds what the notation writes: index letters, nonzero
    whole-number coefficients, a whole-number offset; anything else (a float coefficient)
    would be read differently by each route."""
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    terms_ok = isinstance(node.terms, tuple) and node.terms and all(
        isinstance(t, tuple) and len(t) == 2 and whole(t[0]) and t[0] != 0 and isinstance(t[1], str)
        for t in node.terms)
    if not (isinstance(node.index, str) and terms_ok and whole(node.offset)):
        raise error_at(
            f"a shifted δ pairs an index letter with (coefficient, letter) terms, nonzero whole numbers, and a "
            f"whole-number offset: got index={node.index!r}, terms={node.terms!r}, offset={node.offset!r}",
            node,
        )


def check_comparison(node: Compare) -> None:
    if node.op not in COMPARISONS:
        raise error_at(f"unknown comparison '{node.op}' in [... {node.op} ...]; the comparisons are "
                     f"{' '.join(COMPARISONS)}", node)


def check_equation(eq: Equation) -> None:
    """The right-hand side must carry exactly the left-hand side's indices; a comma
    derivative may leave some out, being constant along them (`y_{i,()}[c] = 1`). An
    equation may not read its own name: one name, one value, as the routes that order
    and differentiate a program by names need."""
    _refuse_own_name(eq)
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
            detail.append(f"{shown_indices(extra)} free on the right but not on the left")
        if missing:
            detail.append(f"{shown_indices(missing)} on the left but not on the right")
        err = IndexNotationError(
            f"the two sides of {eq.lhs} = ... carry different indices: the left has "
            f"{shown_indices(lhs)}, the right {shown_indices(free)} ({'; '.join(detail)})",
            pos=eq.rhs.span[0] if getattr(eq.rhs, "span", None) else None,
        )
        raise _with_source(err, eq)


def _refuse_own_name(eq: Equation) -> None:
    """`w_i = w_i - 0.1 g_i` is an update in a programming language, but in a program of
    equations w would have two values; the new one takes a name of its own."""
    own = next((t for t in eq.rhs.walk() if isinstance(t, Tensor) and t.key == eq.lhs.key), None)
    if own is None:
        return
    one_name = _written_as_one_name(eq)
    if one_name:  # `c_new = c - 0.1`: the name is already new, its spelling is what misleads
        advice = f"{one_name}, as in {eq.source[slice(*eq.lhs.span)]}_{{}} = {eq.rhs}"
    else:
        renamed = replace(eq, lhs=replace(eq.lhs, name=eq.lhs.name + "_new"))
        advice = f"; give the new value a name of its own, as in {renamed}"
    err = error_at(
        f"{eq.lhs} = ... reads {own} on its right-hand side: an equation names a new value and "
        f"cannot read its own{advice}",
        own,
    )
    raise _with_source(err, eq)


def _written_as_one_name(eq: Equation) -> str:
    """The sentence of `errors.read_as_indices` where the left-hand side was written as one
    name (`c_new`, read as c with n, e, w) and its indices occur nowhere on the right."""
    if not (eq.source and eq.lhs.span) or set(eq.lhs.all_indices) & written_indices(eq.rhs):
        return ""
    return read_as_indices(eq.source[slice(*eq.lhs.span)], eq.lhs.name, eq.lhs.indices)


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
    origin: dict[str, str | _Where] = {}  # printed only by an error
    ranged: set[str] = set()  # letters sized by a shift's valid range
    for index, (size, where) in (preset or {}).items():
        _bind(sizes, origin, index, size, where)
    for sub in node.walk():
        if isinstance(sub, Tensor) and sub.key in shapes:
            shape = shapes[sub.key]
            axes = sub.all_indices
            if len(shape) != len(axes):
                raise ShapeError(
                    f"{quoted(sub)} has {len(axes)} ind{'ex' if len(axes) == 1 else 'ices'} but its array "
                    f"'{sub.key}' has {len(shape)} dimension{'s' if len(shape) != 1 else ''} (shape {shape})"
                )
            for index, size in zip(axes, shape):
                _bind(sizes, origin, index, size, _Where(sub, f" (axis of '{sub.key}')"))
    ties = list(_ties(node, frozenset(fixed)))
    shifts = [sub for sub in node.walk() if isinstance(sub, Shift)]
    while True:
        _propagate_ties(ties, sizes, origin)
        # a size told by an array or a δ wins over a shift's valid range: one range at a
        # time, then the ties again (shifts.inferred_size, which the plan asks too). Where
        # several shifts bound the letter, the valid range is the one inside all of them,
        # so that `x_(2i) + x_(2i+1)` and `x_(2i+1) + x_(2i)` agree (the order of the
        # factors and terms must not change the numbers)
        found = {}
        for shift in shifts:
            for _, letter in shift.terms:
                if letter not in sizes:
                    size = inferred_size(shift, letter, sizes)
                    if size is not None and (letter not in found or size < found[letter][1]):
                        found[letter] = (shift, size)
        if not found:
            break
        letter, (shift, size) = next(iter(found.items()))
        sizes[letter], origin[letter] = size, f"the valid range of {letter} in {shift}"
        ranged.add(letter)
    for a, b, where in ties:
        if a in sizes and b in sizes and sizes[a] != sizes[b]:
            raise ShapeError(f"{where} pairs index {a} (size {sizes[a]}) with index {b} (size {sizes[b]})")
    _check_not_empty(node, sizes, origin, ranged)
    return sizes


def _check_not_empty(node: Expr, sizes: dict[str, int], origin: dict, ranged: set[str]) -> None:
    """A mean or logsumexp over no value has none (0/0, log 0), and neither has a max or
    min over a window a shift leaves empty (`max_k(x_(2i+k))` with i sized past what x
    allows: the sizes do not fit the window): refused here, for every route, rather than
    read as NaN or -inf. A sum of none is 0, and the max of an empty array's axis -inf,
    its identity (tests/test_max_min.py)."""
    for sub in node.walk():
        if isinstance(sub, Reduce) and sub.op in ("mean", "logsumexp", "max", "min"):
            for index in sub.indices:
                if sizes.get(index) == 0 and (index in ranged or sub.op in ("mean", "logsumexp")):
                    raise ShapeError(f"{sub.op}_{index} runs over no value of {index}: {origin.get(index, 'its size')} "
                                     f"is empty with the other indices' sizes ({_sizes_of(node, sizes, index)})")


def _sizes_of(node: Expr, sizes: dict[str, int], skip: str) -> str:
    """The sizes a shift of `skip` reads: the other letters', and how many positions."""
    found = [sub for sub in node.walk() if isinstance(sub, Shift) and skip in sub.all_indices]
    letters = dict.fromkeys(i for sub in found for _, i in sub.terms if i != skip and i in sizes)
    parts = [f"{i}: {sizes[i]}" for i in letters]
    parts += [f"{sizes[sub.index]} positions" for sub in found[:1] if sub.index in sizes]
    return ", ".join(parts) or "none"


def _propagate_ties(ties, sizes: dict[str, int], origin: dict) -> None:
    """Give each tied letter its partner's size until nothing changes."""
    changed = True
    while changed:
        changed = False
        for a, b, where in ties:
            for x, y in ((a, b), (b, a)):
                if x in sizes and y not in sizes:
                    sizes[y], origin[y] = sizes[x], where
                    changed = True


def _ties(node: Expr, fixed: frozenset[str]):
    """Pairs of indices that must have one size: δ partners and relabellings."""
    if isinstance(node, Delta):
        for a, b in node.pairs:
            yield a, b, _Where(node)
    elif isinstance(node, Call) and node.relabel is not None:
        yield node.relabel, relabelled_index(node, fixed), _Where(node)
    elif isinstance(node, MatrixCall) or isinstance(node, Reduce) and node.op in MATRIX_REDUCTIONS:
        pair = node.relabel if isinstance(node, MatrixCall) else node.indices
        yield pair[0], pair[1], _Where(node, " (a matrix function takes a square matrix)")
    if isinstance(node, Reduce):
        fixed = fixed | set(node.indices)
    if isinstance(node, Equation):
        fixed = frozenset(node.lhs.all_indices)
    for child in node.children():
        yield from _ties(child, fixed)


class _Where:
    """Where a size or a tie came from, `'w_ij' (axis of 'w')`, printed only if an error
    says it: most sizes are never disputed, and printing every node cost a third of
    planning."""

    __slots__ = ("node", "note")

    def __init__(self, node: Expr, note: str = ""):
        self.node, self.note = node, note

    def __str__(self) -> str:
        return quoted(self.node) + self.note


def _bind(sizes, origin, index, size, where) -> None:
    if index in sizes and sizes[index] != size:
        raise ShapeError(
            f"index {index} has size {sizes[index]} in {origin.get(index, 'the left-hand side')} "
            f"but size {size} in {where}"
        )
    if index not in sizes:
        sizes[index] = size
        origin[index] = where


def index_names(node: Expr) -> frozenset[str]:
    """The named indices (not letters) written anywhere in `node`: what text printed from
    elsewhere (a wrt string for `diff`, say) may refer to."""
    return frozenset(i for i in written_indices(node) if is_index_name(i))


def written_indices(node: Expr) -> set[str]:
    """Every index, letter or name, written anywhere in `node`."""
    found: set[str] = set()
    for sub in node.walk():
        if isinstance(sub, (Tensor, Delta, Mask, Shift)):
            found.update(sub.all_indices)
        elif isinstance(sub, Reduce):
            found.update(sub.indices)
        elif isinstance(sub, Call) and sub.relabel:
            found.add(sub.relabel)
        elif isinstance(sub, MatrixCall):
            found.update(sub.relabel)
    return found


def map_scoped(node: Expr, fixed: frozenset[str], visit) -> Expr:
    """`node` over its children, each passed through `visit(child, the letters fixed
    there)`: a reduction binds its letters, so its body sees them fixed too; every other
    child sees what is fixed at `node`. The walkers that rewrite a tree scope by scope
    (inlining definitions, naming function arguments) share this one rule."""
    if isinstance(node, Reduce):
        return replace(node, body=visit(node.body, fixed | set(node.indices)))
    children = node.children()
    return with_children(node, tuple(visit(child, fixed) for child in children)) if children else node
