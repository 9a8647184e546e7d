"""Symbolic derivatives in comma notation, one rule per node type in one table.

`diff(F, "w_gh")` gives `F_{a,(gh)}[w] = ...`: the derivative's free indices are F's,
then the fresh ones of `w`. The rules are the ones on paper: `w_{mn,(gh)} = δ_(mn)(gh)`,
sum, product, power (quotients are powers -1), the elementwise chain rule
`σ_{,(gh)}(u) = σ'(u) u_{,(gh)}` with σ' from the function table, reductions pass
through (a max or min with its tie weights), numbers, deltas (shifted ones too), masks
and comparisons give zero.

Through a program the chain rule follows the equations: every line that depends on `w`
gets its derivative line, and a use of an earlier result `h_ni` becomes the named
derivative `h_{ni,(gh)}[w]`, so the derivative program is as long as the forward one.
`inline=True` substitutes those names back, as the notes write a single formula.

Two index facts keep the results meaning what they say. A product's derivative factor
may sum an index of its own; it is renamed apart from the other factors, since a product
in parentheses only groups. And a sum whose terms lose their indices when differentiated
(`d(x_i + c)/dc`) keeps one term `0 x_i`, so the result still runs over i, as a scalar
expanded over i must.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from .errors import ArgumentError, DiffError, IndexCalcError, InlineTooLargeError, kind_of, optional_name
from .expr import (
    Call, Compare, Delta, Deriv, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift, Sum,
    Tensor, leaf_factors,
)
from . import functions, matrices, shifts
from .exponentials import exponential_terms, is_exp, is_named_exponential, log_of, merged, named_exponentials
from .indices import (
    check_equation, free_indices, index_names, occurrence_counts, relabelled_index,
)
from .inline import definition_of, inline_last
from .program import check_program
from .relabel import Fresh, avoiding, exposed_letters, fresh_letters, letter_count, letters_in, rename
from .scope import explicit, tidy
from .simplify import simplify_tree
from .wellformed import as_parsed
from .wrt import expression_equation, index_count, parse_wrt, target_line, written_through, wrt_letters, wrt_names

__all__ = ["DiffError", "InlineTooLargeError", "Rules", "RULES", "diff", "resolve_derivatives"]


@dataclass(frozen=True)
class Term:
    """One term of a derivative: `coef × factors`, inside the reductions `reds`
    (outermost first; their indices are fixed inside, as in `sum_j(...)`)."""

    coef: float
    factors: tuple[Expr, ...]
    reds: tuple[Reduce, ...] = ()  # bodiless: op, indices and how each is written

    def expr(self) -> Expr:
        body = _product(self.coef, self.factors)
        for red in reversed(self.reds):
            body = replace(red, body=body)
        return body

    def letters(self) -> set[str]:
        out = set().union(*(letters_in(f) for f in self.factors)) if self.factors else set()
        return out.union(*(set(red.indices) for red in self.reds))

    def bound(self) -> set[str]:
        return set().union(*(set(red.indices) for red in self.reds)) if self.reds else set()


_EMPTY = Number(0.0)  # the body of a reduction a term records, until the term is assembled


def _product(coef: float, factors: tuple[Expr, ...]) -> Expr:
    if not factors:
        return Number(coef)
    if coef == 1.0:
        return factors[0] if len(factors) == 1 else Product(factors)
    return Product((Number(coef),) + factors)


def _flat(expr: Expr) -> tuple[float, tuple[Expr, ...]]:
    """An expression as coefficient and leaf factors (a product is opened up)."""
    if isinstance(expr, Number):
        return expr.value, ()
    coef, out = 1.0, []
    for factor in leaf_factors(expr) if isinstance(expr, Product) else (expr,):
        if isinstance(factor, Number):
            coef *= factor.value
        else:
            out.append(factor)
    return coef, tuple(out)


class Rules:
    """Differentiates the nodes of one equation by one tensor.

    A rule returns the derivative as a list of terms (empty for zero). A term is *open*
    when one of its node's free indices, not fixed from outside, occurs in it other than
    once (the chain rule's `σ'(u_k) u_{k,g}` runs elementwise over k, which a product by
    itself would sum), or not at all (a scalar expanded over k). An open term cannot
    stand alone inside a scope; the enclosing product takes its factors in (distributes),
    where k is summed or, at the top, fixed by the left-hand side.
    """

    def __init__(self, wrt: str, fresh_indices: tuple[str, ...], derived: set[str], fresh: Fresh,
                 sized_outside: bool = False, named: dict[str, Equation] | None = None):
        self.wrt = wrt
        self.named = named or {}  # earlier lines that define a sum of exponentials
        self.sized_outside = sized_outside  # the left-hand side's letters get their sizes elsewhere
        self.G = fresh_indices
        self.derived = derived  # keys of earlier results that depend on wrt
        self.fresh = fresh
        self.reduced: set[str] = set()  # letters a reduction binds: no array gives them a size

    def d(self, node: Expr, fixed: frozenset[str]) -> list[Term]:
        return RULES[type(node)](self, node, fixed)

    # --- leaves
    def zero(self, node: Expr, fixed) -> list[Term]:
        return []

    def tensor(self, node: Tensor, fixed) -> list[Term]:
        if node.key == self.wrt:
            return [Term(1.0, (Delta(node.all_indices, self.G),) if self.G else ())]
        if node.key in self.derived:
            return [Term(1.0, (Tensor(node.name, node.indices, node.derivs + (Deriv(self.G, self.wrt),)),))]
        return []

    # --- composites
    def sum(self, node: Sum, fixed) -> list[Term]:
        out = []
        runs_over = set(free_indices(node, fixed)) - fixed
        for term in node.terms:
            # a letter the sum runs over that this term sums of its own (m in x_mn + a_km b_mk)
            # is renamed apart in its derivative, which would otherwise run over the sum's m
            clash = runs_over - set(free_indices(term, fixed))
            for t in self.d(term, fixed):
                for index in clash & t.letters():
                    t = self.renamed(t, index, self.fresh(), fixed)
                out.append(t)
        # a term that lost an index of the sum (d(x_i + c)/dc = 1) still runs over it: (1 + 0 x_i);
        # one the left-hand side fixes needs none where its size comes from elsewhere (an adjoint)
        needed = [i for i in free_indices(node, fixed) if not self.sized_outside or i not in fixed or i in self.reduced]
        for index in needed if out else ():
            carriers = [term for term in node.terms if index in free_indices(term, fixed)]
            # one whose array tells its size (b_ci, not K x_{(i+k-1)}, whose shift tells another)
            # or at least one that tells a size (not max_u(W_{(2q+u)}), where q is only shifted)
            declared = [t for t in carriers if any(isinstance(n, Tensor) and index in n.all_indices for n in t.walk())]
            carrier = next((t for t in declared + carriers if index in shifts.sized_letters((t,))), carriers[0])
            one = Sum((Number(1.0), Product((Number(0.0), carrier))))
            # (outside a term's reductions, which would take the carrier's letters for their own)
            out = [t if self.carries(t, index, fixed, node) else Term(t.coef, t.factors + (one,), t.reds) if not t.reds
                   else Term(1.0, (t.expr(), one)) for t in out]
        return out

    def product(self, node: Product, fixed) -> list[Term]:
        factors = list(merged(tuple(leaf_factors(node)), fixed, self.named, lambda u: self.log_of_named(u, fixed)))
        out: list[Term] = []
        for k, factor in enumerate(factors):
            others = tuple(factors[:k] + factors[k + 1 :])
            # a tensor's repeated index (m_ii in m_ii x_i) is the product's, not its own
            out.extend(self.times(others, factor, self.d(factor, fixed), fixed, exposed=isinstance(factor, Tensor)))
        return out

    def power(self, node: Power, fixed) -> list[Term]:
        u, c = node.base, node.exponent
        if c == Number(0.0):  # u^0 is 1 (also where u = 0): 0 u^-1 would be 0 inf there
            return []
        logged = self.log_derivative(u, fixed)
        if logged is not None:  # c u^c d(log u), where u^(c-1) du would overflow
            by_base = self.times((c, node), u, logged, fixed)
        else:
            lowered = Number(c.value - 1.0) if isinstance(c, Number) else Sum((c, Number(-1.0)))
            by_base = self.times((c, Power(u, lowered)), u, self.d(u, fixed), fixed)
        return by_base + self.times((node, Call("log", u)), c, self.d(c, fixed), fixed)

    def call(self, node: Call, fixed) -> list[Term]:
        logged = self.log_derivative(node.arg, fixed) if node.func == "log" and node.relabel is None else None
        if logged is not None:
            return self.times((), node, logged, fixed)
        inner = self.d(node.arg, fixed)
        if not inner:
            return []
        outer = functions.lookup(node.func).derivative(node.arg)
        if node.relabel is not None:
            source = relabelled_index(node, fixed)
            outer = _relabelled(outer, node.relabel)
            inner = [self.renamed(t, source, node.relabel, fixed, merge=False) for t in inner]
        coef, factors = _flat(outer)
        # the call's free indices, not the argument's: σ_m(x_i) runs over m
        return self.times(factors, node, inner, fixed, coef)

    def matrix(self, node: MatrixCall, fixed) -> list[Term]:
        """dF_ij = Σ_pq K_ijpq dA_pq, K the table's kernel (−(A⁻¹)_ip (A⁻¹)_qj for the
        inverse): the argument's derivative with its pair moved to fresh letters p, q."""
        inner = self.d(node.arg, fixed)
        if not inner:
            return []
        p, q = self.fresh(), self.fresh()
        coef, kernel = _flat(matrices.lookup(node.func).derivative(node, p, q))
        out = []
        for t in inner:
            for old, new in zip(node.relabel, (p, q)):
                t = self.renamed(t, old, new, fixed)
            out.append(Term(coef * t.coef, kernel + t.factors, (Reduce("sum", (p, q), _EMPTY),) + t.reds))
        return out

    def log_derivative(self, u: Expr, fixed, log_u: Expr | None = None) -> list[Term] | None:
        """d(log u) where u is a sum of exponentials (`sum_k(exp(v_k))`, `1 + exp(-x)`,
        `exp(v)`, or a name defined as one), else None: Σ w dv, the weights
        `w = exp(v - log u)` at most 1 each (indexcalc.exponentials says why)."""
        if is_named_exponential(u, self.named):  # Z_n, Z = sum_k(exp(S_nk)): through Z's line
            return self.log_derivative(self.defined(u), fixed, self.log_of_named(u, fixed))
        if is_exp(u):
            return self.d(u.arg, fixed)
        terms = exponential_terms(u, fixed)
        if terms is None:
            return None
        log_u = log_u if log_u is not None else log_of(u, terms)
        if isinstance(log_u, Call) and log_u.func == "softplus":  # 1 + exp(v): σ(v) dv
            return self.d(log_u, fixed)
        out = []
        for term in terms:
            inside = fixed | set(term.over)
            self.reduced |= set(term.over)
            over = (Reduce(term.op, term.over, _EMPTY),) if term.over else ()  # mean_k: shares of u, 1/K each
            weight = term.weight(log_u)
            keep = set(free_indices(weight, inside)) | inside
            for t in self.d(term.exponent, inside):
                t = self.apart(t, letters_in(weight), keep, inside)  # its own letters off the weight's
                out.append(Term(t.coef, t.factors + (weight,), over + t.reds))
        return out

    def defined(self, u: Tensor) -> Expr:
        """The definition of the named sum of exponentials u, on u's letters."""
        # its letters are another equation's: a letter it binds moves off them and off this one's
        fresh = avoiding(self.fresh, letters_in(self.named[u.key]))
        return definition_of(u, self.named, fresh, {})

    def log_of_named(self, u: Tensor, fixed) -> Expr:
        """log Z_n for a named sum of exponentials: its definition's logsumexp (or
        softplus), in range where log(Z_n) of Z_n as computed is not; else log(Z_n)."""
        definition = self.defined(u)
        stable = log_of(definition, exponential_terms(definition, fixed))
        return Call("log", u) if isinstance(stable, Call) and stable.func == "log" else stable

    def reduce(self, node: Reduce, fixed) -> list[Term]:
        inside = fixed | set(node.indices)
        self.reduced |= set(node.indices)
        out = []
        for t in self.d(node.body, inside):
            present = t.letters()
            if node.op in WEIGHTS:  # d op_j(b_j) = Σ_j w_j db_j
                weight = WEIGHTS[node.op](node)
                out.append(Term(t.coef, t.factors + (weight,), (Reduce("sum", node.indices, _EMPTY),) + t.reds))
                continue
            if node.op == "mean":
                kept = tuple(i for i in node.indices if i in present)
                factors = t.factors
                coef = t.coef
            else:
                kept = node.indices
                factors = t.factors + tuple(Delta((i,), (i,)) for i in node.indices if i not in present)
                coef = t.coef
            reds = (replace(node, indices=kept, body=_EMPTY),) + t.reds if kept else t.reds
            out.append(Term(coef, factors, reds))
        return out

    # --- putting a factor's derivative beside the other factors
    def times(
        self, others: tuple[Expr, ...], factor: Expr, terms: list[Term], fixed, coef: float = 1.0, exposed: bool = False
    ) -> list[Term]:
        """`others × d(factor)`: one term if every term of d(factor) is closed, else
        distributed, each term's own letters renamed apart from the others'."""
        if not terms:
            return []
        free = set(factor.all_indices if exposed else free_indices(factor, fixed)) - fixed
        avoid = exposed_letters(others, fixed)
        if all(not self.is_open(t, free, fixed) for t in terms):
            if len(terms) == 1 and not terms[0].reds:
                t = self.apart(terms[0], avoid, free | fixed, fixed)
                return [Term(coef * t.coef, others + t.factors)]
            scope = terms[0].expr() if len(terms) == 1 else Sum(tuple(t.expr() for t in terms))
            return [Term(coef, others + (scope,))]
        # a term's reductions take the others in and fix their letters in every scope of them
        within = set().union(*(letters_in(f) for f in others)) if others else set()
        out = []
        for t in terms:
            t = self.apart(t, avoid | (within & t.bound()), free | fixed, fixed)
            out.append(Term(coef * t.coef, others + t.factors, t.reds))
        return out

    def carries(self, term: Term, index: str, fixed, sum_node: Sum) -> bool:
        counts = occurrence_counts(Product(term.factors), fixed | term.bound()) if term.factors else {}
        if index in term.bound() or counts.get(index, 0) == 0:
            return False
        nodes = [n for f in term.factors for n in f.walk()]
        if not any(isinstance(n, Shift) for n in nodes) or any(
                index in n.all_indices for n in nodes if isinstance(n, (Tensor, Delta))):
            return True
        # a letter only shifts carry: its size is the range they tell, so the carrier
        # stays where an array gave it another (i in K x_{(i+k-1)} + b_ci: padding), or
        # where they cannot tell it (q in max_u(W_{(2q+u)}) + b_q, by W: q and u unsized)
        declared = any(index in n.all_indices for n in sum_node.walk() if isinstance(n, Tensor))
        return not declared and index in shifts.sized_letters(term.factors, self.G)

    def is_open(self, term: Term, free: set[str], fixed) -> bool:
        counts = occurrence_counts(Product(term.factors), fixed | term.bound()) if term.factors else {}
        return any(counts.get(i, 0) != 1 for i in free if i not in term.bound())

    def apart(self, term: Term, avoid: set[str], keep: set[str], fixed) -> Term:
        """Rename the indices a term sums or reduces off the letters in `avoid`."""
        own = (term.letters() - keep - set(self.G)) & avoid
        for index in own:
            term = self.renamed(term, index, self.fresh(), fixed)  # keep's free letters are not fixed
        return term

    def renamed(self, term: Term, old: str, new: str, fixed, merge: bool = True) -> Term:
        if not merge and new in term.bound():  # σ_p(sum_p(T_jp)): the term's own p moves aside first
            term = self.renamed(term, new, self.fresh(), fixed, merge=False)
        reds = tuple(replace(red, indices=tuple(new if i == old else i for i in red.indices)) for red in term.reds)
        # old is not fixed: a scope that sums or relabels a letter old of its own keeps it; and a
        # letter new the term sums of its own (σ_j(T_jm ...) relabels m to j) is moved aside
        inside = frozenset(fixed) | term.bound()
        if not term.factors:
            return Term(term.coef, (), reds)
        product = rename(Product(term.factors), old, new, inside, self.fresh, merge=merge)
        return Term(term.coef, tuple(leaf_factors(product)), reds)


def _softmax_weights(node: Reduce) -> Expr:
    """d log Σ_j exp(b_j) = Σ_j softmax_j db_j: the weights exp(b_j - logsumexp_j(b))."""
    return Call("exp", Sum((node.body, Product((Number(-1.0), node)))))


def _tie_weights(node: Reduce) -> Expr:
    """d max_j(b_j) = Σ_j w_j db_j, the subgradient that splits a tie evenly (as
    jax.numpy.max and torch.amax do): w_j = [b_j == max_j(b)] / Σ_j [b_j == max_j(b)],
    1 at a unique maximum, 1/k on each of k equal ones; min alike. The bracket compares
    b with the reduction of the same b, computed the same way, so it holds exactly where
    the maximum was taken."""
    hit = Compare("==", node.body, node)
    return Product((hit, Power(Reduce("sum", node.indices, hit), Number(-1.0))))


WEIGHTS: dict[str, Callable[[Reduce], Expr]] = {
    "logsumexp": _softmax_weights, "max": _tie_weights, "min": _tie_weights,
    # det, logdet: d f(A) = Σ_kl W_kl dA_kl, the weight from the matrix table
    **{f.name: f.derivative for f in matrices.MATRIX_FUNCTIONS if f.scalar},
}


def _relabelled(expr: Expr, index: str) -> Expr:
    """σ'(u) for σ_i(u): every call on u in the derivative relabels as σ_i did."""
    if isinstance(expr, Call):
        return Call(expr.func, expr.arg, index)
    if isinstance(expr, Product):
        return Product(tuple(_relabelled(f, index) for f in expr.factors))
    if isinstance(expr, Sum):
        return Sum(tuple(_relabelled(t, index) for t in expr.terms))
    if isinstance(expr, Power):
        return Power(_relabelled(expr.base, index), expr.exponent)
    return expr


RULES: dict[type, Callable] = {
    Number: Rules.zero,
    Delta: Rules.zero,
    Mask: Rules.zero,  # a constant of the indices
    Shift: Rules.zero,  # a shifted δ: a constant of the indices, like δ
    Compare: Rules.zero,  # 0/1, constant wherever the comparison does not change
    Tensor: Rules.tensor,
    Sum: Rules.sum,
    Product: Rules.product,
    Power: Rules.power,
    Call: Rules.call,
    MatrixCall: Rules.matrix,
    Reduce: Rules.reduce,
}


def _assemble(terms: list[Term]) -> Expr | None:
    if not terms:
        return None
    exprs = tuple(t.expr() for t in terms)
    return exprs[0] if len(exprs) == 1 else Sum(exprs)


# ---------------------------------------------------------------- the public entry


def diff(source, wrt: str, *, of: str | None = None, inline: bool = False) -> Expr:
    """The derivative of an equation (a program's last, or the one named by `of`) with
    respect to the tensor `wrt`, given with fresh indices (`"w_gh"`) or as a bare name.

    For one equation the result is the equation `F_{a,(gh)}[w] = ...`; for a program it
    is a program: the forward equations, then a derivative line for every line that
    depends on `wrt`, so that `evaluate` can run it as it is. A bare expression gives the
    bare derivative expression.
    """
    text = source if isinstance(source, str) else None
    optional_name(of, "of", 'of="L"')
    if not isinstance(inline, bool):
        raise ArgumentError(f"inline must be True or False, not {kind_of(inline)}")
    try:
        node = as_parsed(source)
        return _diff(node, wrt, of, inline, wrt_names(source, node))
    except IndexCalcError as err:
        raise err.with_source(text, None) if text else err


def _diff(node: Expr, wrt: str, of: str | None, inline: bool, names: frozenset[str] = frozenset()) -> Expr:
    if isinstance(node, Program):
        check_program(node.equations)
        # a derivative line the program uses is a function of what it differentiates
        equations = list(resolve_derivatives(node).equations)
    elif isinstance(node, Equation):
        equations = [node]
    else:
        return _diff_expression(node, wrt, names)
    target = target_line(equations, of)
    equations = equations[: target + 1]
    for eq in equations:
        check_equation(eq)
    name, given = parse_wrt(wrt, names)
    count = index_count(equations, name)
    target_eq = equations[-1]
    # in a derivative line the summed letters are the tool's, not the user's: they move aside
    # (explicit(..., reserved=G)); in the user's own line a clash is likelier a typo
    used = set(target_eq.lhs.all_indices) if target_eq.lhs.derivs else letters_in(target_eq) - _hidden(target_eq)
    G = wrt_letters(given, count, name, used, target_eq)
    user_letters = set().union(*(letters_in(eq) for eq in equations)) | set(G)

    derived: set[str] = set()
    named = named_exponentials(equations)
    lines: list[Equation] = []
    for eq in equations:
        if not ({name} | derived) & {t.key for t in eq.rhs.walk() if isinstance(t, Tensor)}:
            continue
        derived_key = Tensor(eq.lhs.name, eq.lhs.indices, eq.lhs.derivs + (Deriv(G, name),)).key
        if derived_key in {e.lhs.key for e in equations}:
            derived.add(eq.lhs.key)  # differentiated before (a Hessian's other half): reused
            continue
        local = G
        if eq is not target_eq and set(G) & letters_in(eq):
            fresh = fresh_letters(letters_in(eq) | set(G))
            local = tuple(fresh() for _ in G)
            user_letters |= set(local)
        lines.append(_derive_equation(explicit(eq, reserved=local), name, local, derived, named))
        derived.add(eq.lhs.key)
    if target_eq.lhs.key not in derived:
        if not written_through(equations, name):
            raise DiffError(f"{target_eq.lhs} does not depend on {name}")
        # written as a function of the wrt, whose dependence vanished on the way (through
        # a constant Jacobian of a linear line, say): the derivative is zero, not a typo
        lines.append(Equation(Tensor(target_eq.lhs.name, target_eq.lhs.indices,
                                     target_eq.lhs.derivs + (Deriv(G, name),)), Number(0.0)))
    if inline:  # one formula, as the notes write it: simplified
        lines = [simplify_tree(line) for line in inline_last(lines)]
        # the derivative lines the program uses (resolve_derivatives put them in) are
        # printed as the CLI's --inline prints them: simplified too
        equations = [simplify_tree(eq) if eq.lhs.derivs else eq for eq in equations]
    lines = [tidy(line, user_letters) for line in lines]
    if len(equations) == 1 and len(lines) == 1 and not (lines[0].lhs.indices and isinstance(lines[0].rhs, Number)):
        return lines[0]  # a constant keeps the line it differentiates: that sizes its own indices
    return Program(tuple(equations) + tuple(lines))


def _hidden(eq: Equation) -> set[str]:
    """The letters a shifted index stands for (p in x_{nd(i+k)}, x_{ndp} δ_{p(i+k)}): the
    parser chose them, the text does not show them, so a wrt written with one is no clash
    (explicit moves the bound p aside, as it does the tool's own letters)."""
    return {s.index for s in eq.rhs.walk() if isinstance(s, Shift)
            if s.index not in eq.lhs.all_indices and letter_count(eq.rhs, s.index) == 2}


def _derive_equation(eq: Equation, name: str, G: tuple[str, ...], derived: set[str],
                     named: dict[str, Equation]) -> Equation:
    fixed = frozenset(eq.lhs.all_indices) | set(G)
    fresh = fresh_letters(letters_in(eq) | set(G))
    rhs = _assemble(Rules(name, G, derived, fresh, named=named).d(eq.rhs, fixed))
    lhs = Tensor(eq.lhs.name, eq.lhs.indices, eq.lhs.derivs + (Deriv(G, name),))
    result = Equation(lhs, rhs if rhs is not None else Number(0.0))
    check_equation(result)
    return result


def _diff_expression(node: Expr, wrt: str, names: frozenset[str] = frozenset()) -> Equation:
    """A bare expression is differentiated as the equation `f_a = expression`, a, its
    free indices, being fixed: the derivative runs elementwise over them."""
    return _diff(expression_equation(node), wrt, None, False, names)


def resolve_derivatives(program: Program) -> Program:
    """A program that uses a comma derivative of an earlier result, as the update rule
    `w_new_gh = w_gh - eta loss_{,(gh)}[w]` does, gets the lines that compute it
    inserted before the first use: the tool works the derivative out."""
    out: list[Equation] = []
    defined: set[str] = set()
    for eq in program.equations:
        for ref in (t for t in eq.rhs.walk() if isinstance(t, Tensor) and t.derivs):
            if ref.key in defined or ref.name not in defined:
                continue
            if any(d.wrt is None for d in ref.derivs):
                raise DiffError(f"say by which tensor {ref} is taken, as in loss_{{,(gh)}}[w]")
            lines: tuple[Equation, ...] = tuple(out)
            of = ref.name
            for d in ref.derivs:
                so_far = Program(lines)
                result = _diff(so_far, d.wrt, of, False, index_names(so_far))
                lines = result.equations if isinstance(result, Program) else lines + (result,)
                of = lines[-1].lhs.key
            for line in lines:
                if line.lhs.key not in defined:
                    out.append(line)
                    defined.add(line.lhs.key)
        out.append(eq)
        defined.add(eq.lhs.key)
    return Program(tuple(out))
