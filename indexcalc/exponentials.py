"""Sums of exponentials: the denominators of softmax, attention and hand-written σ.

A softmax written as the notes write it, `exp(S_n) / sum_k(exp(S_k))`, is a quotient
whose parts leave the floats long before the quotient does: at logits of 448 the
denominator's square overflows, and the textbook derivative of `u^-1`, `-u^-2 du`,
multiplies exp(448)^2 = inf by u^-2 = 0. The stable way is the one a softmax layer
takes: `d(u^c) = c u^c d(log u)` and `d(log u) = Σ_k w_k dv_k` with the weights
`w_k = exp(v_k - log u)`, each at most 1, and log u written so that it is in range where u
is not (`logsumexp_k(v)` for `sum_k(exp(v))`: `log_of`). This module recognises such a u (the rules of
`diff` write its derivative that way) and, for `compile`'s backward pass, reads a named
one (`Z = sum_k(exp(S_k))`, then `exp(S_n) / Z`) through its definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .expr import Call, Compare, Equation, Expr, Mask, Number, Power, Product, Reduce, Sum, Tensor, leaf_factors
from .indices import free_indices, map_scoped
from .scope import explicit


@dataclass(frozen=True)
class Exponential:
    """One `g exp(v)` of a sum of exponentials, summed (or averaged, `op`) over `over`
    (the reduction's letters, or none for a term of a written sum); g is positive."""

    over: tuple[str, ...]
    gains: tuple[Expr, ...]
    exponent: Expr
    op: str = "sum"

    def weight(self, log_total: Expr) -> Expr:
        """g exp(v - log u): its share of u."""
        share = Call("exp", Sum((self.exponent, Product((Number(-1.0), log_total)))))
        return Product(self.gains + (share,)) if self.gains else share


def exponential_terms(u: Expr, fixed: frozenset[str]) -> tuple[Exponential, ...] | None:
    """u as a sum of exponentials with positive gains: `sum_k(g exp(v))` or `mean_k(...)`
    (every k in v: `sum_k(exp(x))` is K exp(x), no softmax over k), or a written sum of
    such terms and positive numbers (`1 + exp(-x)`); None for anything else."""
    if isinstance(u, Reduce) and u.op in ("sum", "mean"):
        term = _exponential(u.body)
        inside = fixed | set(u.indices)
        if term is None or not set(u.indices) <= set(free_indices(term.exponent, inside)):
            return None
        return (replace(term, over=u.indices, op=u.op),)
    if isinstance(u, Sum):  # 1 + exp(-x), exp(T_n) + sum_k(exp(S_k))
        terms: list[Exponential] = []
        for t in u.terms:
            if not positive_constant(t):
                one = _exponential(t)
                own = (one,) if one is not None else exponential_terms(t, fixed)
                if own is None:
                    return None
                terms.extend(own)
        return tuple(terms) or None
    if isinstance(u, Product):  # 2 sum_k(exp(S_k)), or compile's sum_k(exp(S_k)) #mean1
        factors = tuple(leaf_factors(u))
        scale = tuple(f for f in factors if positive_constant(f))
        rest = [f for f in factors if not positive_constant(f)]
        inner = exponential_terms(rest[0], fixed) if len(rest) == 1 else None
        return None if inner is None else tuple(replace(t, gains=scale + t.gains) for t in inner)
    return None


SCALE = "#mean"  # compile writes mean_n(x) as sum_n(x) times a constant 1/N of this name


def positive_constant(node: Expr) -> bool:
    return isinstance(node, Number) and node.value > 0 or isinstance(node, Tensor) and node.name.startswith(SCALE)


def log_of(u: Expr, terms: tuple[Exponential, ...] | None) -> Expr:
    """log u as a derivative's shares read it: `softplus(v)` for `1 + exp(v)`,
    `logsumexp_k(v)` for `sum_k(exp(v))`, else the log of u as written (which every route
    computes in range: logs_in_range). The log of the sum as written is inf once a v
    passes 709 (88 in float32), and every share exp(v - log u) was then 0: a softmax's
    derivative, silently, on every route.
    The plan takes logsumexp_k(v) from the forward pass's sum wherever that is in range
    (plan.Lowering.reduce), so the exps are not computed again."""
    if (isinstance(u, Sum) and terms and len(terms) == 1 and len(u.terms) == 2 and Number(1.0) in u.terms
            and not terms[0].gains and not terms[0].over):
        return Call("softplus", terms[0].exponent)
    if (isinstance(u, (Reduce, Product)) and terms and len(terms) == 1 and terms[0].op == "sum" and terms[0].over
            and all(positive_constant(g) for g in terms[0].gains)):
        # log(c Σ_k exp(v)) = log c + logsumexp_k(v). Not 1 + Σ_k exp(v) (a Sum: its 1 is no
        # term), nor a masked Σ_k [k <= i] exp(v): log [k <= i] is -inf where it masks, and
        # the rewrites take 0 x to be 0 (a carrier 1 + 0 x would be NaN). Their logs stay as
        # written here, and every route computes them in range (indexcalc.logs_in_range).
        term = terms[0]
        lse = Reduce("logsumexp", term.over, term.exponent)
        logs = tuple(Number(math.log(g.value)) if isinstance(g, Number) else Call("log", g) for g in term.gains)
        return Sum(logs + (lse,)) if logs else lse
    return Call("log", u)


def is_exponential_sum(u: Expr, fixed: frozenset[str], named: dict[str, Equation]) -> bool:
    return is_named_exponential(u, named) or exponential_terms(u, fixed) is not None


def is_named_exponential(u: Expr, named: dict[str, Equation]) -> bool:
    """Whether `u` is a use of a named sum of exponentials that its definition may stand
    for. Not a trace (`r_ii` of `r_mk = exp(v_mk)`): the i it sums runs over the power or
    log it stands in, and in the definition `exp(v_ii)` it would run inside the exp, a
    scope of its own (`(r_ii)^2` read as exp(Σ v_ii)^2, not (Σ exp(v_ii))^2)."""
    return isinstance(u, Tensor) and u.key in named and len(set(u.all_indices)) == len(u.all_indices)


def merged(factors: tuple[Expr, ...], fixed: frozenset[str], named: dict[str, Equation],
           log_named=None) -> tuple[Expr, ...]:
    """A product's exps and its powers of sums of exponentials as one exp, as a softmax
    layer computes it: `exp(S_n) sum_k(exp(S_k))^-1` is `exp(S_n - logsumexp_k(S_k))`
    (`log_named(Z_n)` the log of a named one, log(Z_n) by default).
    Its derivatives are then products of such bounded factors, where the factors as
    written meet as exp(S_n)^2 (inf) beside u^-2 (0) in a Hessian or a squared error.
    A letter the merged factors sum between them (none fixed it) keeps them apart."""
    exps = [f for f in factors if is_exp(f)]
    powers = [f for f in factors if isinstance(f, Power) and isinstance(f.exponent, Number)
              and is_exponential_sum(f.base, fixed, named)]
    if not exps or not powers:
        return factors
    seen: set[str] = set()
    for factor in exps + powers:
        letters = set(free_indices(factor, fixed)) - fixed
        if letters & seen:
            return factors
        seen |= letters
    def log(u: Expr) -> Expr:
        if isinstance(u, Tensor):
            return log_named(u) if log_named is not None else Call("log", u)
        return log_of(u, exponential_terms(u, fixed))

    parts = [f.arg for f in exps] + [Product((p.exponent, log(p.base))) for p in powers]
    members = exps + powers
    first = next(i for i, f in enumerate(factors) if f in members)
    out = [f for f in factors if f not in members]
    out.insert(first, Call("exp", Sum(tuple(parts))))  # where the first of them stood
    return tuple(out)


def _exponential(node: Expr) -> Exponential | None:
    factors = tuple(leaf_factors(node)) if isinstance(node, Product) else (node,)
    exps = [f for f in factors if is_exp(f)]
    gains = tuple(f for f in factors if isinstance(f, (Mask, Compare)) or positive_constant(f))
    if len(exps) != 1 or len(gains) != len(factors) - 1:
        return None
    return Exponential((), gains, exps[0].arg)


def named_exponentials(equations: list[Equation]) -> dict[str, Equation]:
    """The lines whose right-hand side is a sum of exponentials (or one exp), by name,
    with their sums written out (scope.explicit). A use read through its definition gets
    every letter the definition binds renamed (inline.definition_of), and a sum left to
    the convention inside an exp (`Z_n = exp(x_nj b_j)`) is bound by no node: set under a
    use that sums j (`sum_j(log(Z_n) c_jn)`), its j was the use's."""
    return {eq.lhs.key: explicit(eq) for eq in equations if not eq.lhs.derivs and (
        is_exp(eq.rhs) or exponential_terms(eq.rhs, frozenset(eq.lhs.all_indices)) is not None)}


def is_exp(node: Expr) -> bool:
    """`exp(v)` as written (not a relabelling exp_i(...)): the factor a softmax's numerator is."""
    return isinstance(node, Call) and node.func == "exp" and node.relabel is None


def read_through(node: Expr, fixed: frozenset[str], named: dict[str, Equation], definition) -> Expr:
    """`node` with every named sum of exponentials that stands as a power's base or a
    log's argument replaced by its definition (`definition(ref)` gives it on ref's
    letters), so that a derivative of the line sees the sum it is."""
    def again(child: Expr, inner=fixed) -> Expr:
        return read_through(child, inner, named, definition)

    def through(u: Expr) -> Expr:
        return definition(u) if is_named_exponential(u, named) else again(u)

    if isinstance(node, Power):
        return Power(through(node.base), again(node.exponent))
    if isinstance(node, Call) and node.func == "log" and node.relabel is None:
        return Call("log", through(node.arg))
    return map_scoped(node, fixed, again)
