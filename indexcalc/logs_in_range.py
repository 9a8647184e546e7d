"""The log of a sum of exponentials, computed in range: a rewrite every route applies to
the tree it evaluates.

`log(sum_k([k <= i] exp(s_ik)))` is inf once an s passes 709 (88 in float32), and -inf
once every s is below -745, though the log itself is a moderate number. A derivative's
shares `exp(s_ik - log(u))` (indexcalc.exponentials) are then 0 or inf: wrong numbers,
the same on every route. Shifted by the largest exponent M, u = e^M Σ g exp(v - M), and

    log u = M + log(Σ g exp(v - M))

whose sum holds a term of size g at its largest, so it neither overflows nor (unless a
mask hides every larger term) underflows. M is taken no further than needed: the largest
exponent is moved to ±80 where it lies beyond, and where it does not, u is as written.
`logsumexp_k(v)` is that for a plain `sum_k(exp(v))`, and `diff` writes it there itself
(exponentials.log_of); the rest (a masked sum, a mean, `1 + sum_k(exp(v))`, an exp beside
a sum) is shifted here.

The rewrite is made where a tree is evaluated (driver.run for evaluate and the loops,
compile.lower for the plans), never where diff differentiates or a tree is printed: a
derivative reads as the notes write it, and M, whose derivative cancels, takes no part in
it. The one exception is compile's own forward lines, rewritten before their adjoints are
written, so that the adjoint of a program's log (a cross-entropy's) is in range too.
"""

from __future__ import annotations

import math

from .expr import Call, Equation, Expr, Number, Product, Reduce, Sum, Tensor, leaf_factors
from .exponentials import exponential_terms, is_exp, log_of, named_exponentials, positive_constant, read_through
from .indices import map_scoped
from .inline import definition_of
from .relabel import fresh_letters, letters_in, rebind_reduction, rename_summed_apart
from .scope import explicit


def lines_in_range(equations: list[Equation]) -> list[Equation]:
    """A program's lines as a route computes them: every log of a sum of exponentials in
    range, a named one (`Z_v = sum_k([k <= v] exp(S_vk))`, then `log(Z_v)` in a
    derivative, or compile's argument line `#u3_v`) read through its sum for it. The
    values are the same; a plan computes the sum once all the same."""
    return [logs_in_range(eq) for eq in through_named_sums(equations)]


def through_named_sums(equations: list[Equation]) -> list[Equation]:
    """The lines with every named sum of exponentials that stands as a power's base or a
    log's argument replaced by its sum (exponentials.read_through), on fresh letters.

    A line is read with its sums written out (scope.explicit): a definition set into a
    product that sums its letter by the convention (`(r_q)^3 r_q`, with `r_s =
    exp(-sum_j((a_j - W_sj)^2))`) must find that letter fixed there, as on its own line,
    or `sum_j(a_j - W_qj ...)` would broadcast a over a q that nothing fixes. A line with
    nothing to read through is kept as it came."""
    named = named_exponentials(equations)
    if not named:
        return equations
    bound = [explicit(eq) for eq in equations]
    fresh = fresh_letters(set().union(*(letters_in(eq) for eq in bound)))

    def definition(ref: Tensor) -> Expr:
        return definition_of(ref, named, fresh, {})

    def read(eq: Equation, written: Equation) -> Equation:
        rhs = read_through(eq.rhs, frozenset(eq.lhs.all_indices), named, definition)
        return written if rhs == eq.rhs else Equation(eq.lhs, rhs, eq.source)

    return [read(eq, written) for eq, written in zip(bound, equations)]


def logs_in_range(node: Expr, fixed: frozenset[str] = frozenset()) -> Expr:
    """`node` (an equation, or an expression with `fixed` fixed) with every log of a sum of
    exponentials written in range. The letters the shifts bind are new to all of `node`:
    a route sizes a letter once a line, bound or not."""
    if not any(_is_log(n) for n in node.walk()):
        return node
    fresh = fresh_letters(letters_in(node) | fixed)

    def visit(child: Expr, inner: frozenset[str]) -> Expr:
        child = map_scoped(child, inner, visit)
        return (_in_range(child.arg, inner, fresh) or child) if _is_log(child) else child

    if isinstance(node, Equation):
        return Equation(node.lhs, visit(node.rhs, frozenset(node.lhs.all_indices)), node.source)
    return visit(node, fixed)


def _is_log(node: Expr) -> bool:
    return isinstance(node, Call) and node.func == "log" and node.relabel is None


def _in_range(u: Expr, fixed: frozenset[str], fresh) -> Expr | None:
    """log u written in range, for a sum of exponentials u; None for anything else."""
    terms = exponential_terms(u, fixed)
    if terms is None:
        return None
    written = log_of(u, terms)
    if not _is_log(written):  # logsumexp_k(v), softplus(v): in range as they stand
        return written
    tops = [_largest(term.exponent, term.over, fixed, fresh) for term in terms]
    # (the shift is exact whatever top is: the constants count only for the range)
    tops += [Number(math.log(c.value)) for c in _constants(u) if isinstance(c, Number)]
    top = tops[0]
    for other in tops[1:]:  # max(a, b) = a + relu(b - a)
        top = Sum((top, Call("relu", Sum((other, _negative(top))))))
    # shifted only by what takes the largest exponent into ±IN_RANGE: below that, u as
    # written, to the last digit (a shift all the way to 0 would push a term that a mask
    # keeps, far below one it hides, out of range)
    shift = Sum((Call("relu", Sum((top, Number(-IN_RANGE)))),
                 _negative(Call("relu", Sum((_negative(top), Number(-IN_RANGE)))))))
    return Sum((shift, Call("log", _shifted(u, shift))))


IN_RANGE = 80.0  # exp of at most this is a normal float in float32 (88.7) and float64 (709.8)


def _negative(node: Expr) -> Expr:
    return Product((Number(-1.0), node))


def _largest(exponent: Expr, over: tuple[str, ...], fixed: frozenset[str], fresh) -> Expr:
    """max over `over` of the exponent, on letters of its own (it is set inside u's sums)."""
    if not over:
        return exponent
    largest = Reduce("max", over, rename_summed_apart(exponent, letters_in(exponent), fixed | set(over), fresh))
    for index in over:
        largest = rebind_reduction(largest, index, fresh(), fixed, fresh)
    return largest


def _constants(u: Expr) -> list[Expr]:
    """The positive constants written as terms of u (the 1 of `1 + sum_k(exp(v))`)."""
    return [t for t in u.terms if positive_constant(t)] if isinstance(u, Sum) else []


def _shifted(u: Expr, top: Expr) -> Expr:
    """u e^-top: each exp(v) of u as exp(v - top), each constant c as c exp(-top).
    Follows exponential_terms: a sum or mean of g exp(v), a written sum of such terms and
    constants, a constant times one."""
    down = _negative(top)
    if is_exp(u):
        return Call("exp", Sum((u.arg, down)))
    if isinstance(u, Reduce):
        return Reduce(u.op, u.indices, _shifted(u.body, top), implicit=u.implicit)
    if isinstance(u, Sum):
        return Sum(tuple(Product((t, Call("exp", down))) if positive_constant(t) else _shifted(t, top)
                         for t in u.terms))
    if isinstance(u, Product):
        factors = tuple(leaf_factors(u))
        shifted = [f if positive_constant(f) or not (is_exp(f) or isinstance(f, (Reduce, Sum, Product)))
                   else _shifted(f, top) for f in factors]
        return Product(tuple(shifted))
    return u
