"""Rewrite rules that make a derivative read the way one writes it by hand.

`simplify` rewrites bottom-up: the children of a node first, then the node's own rules,
in the order of the table `RULES`, until none applies. Each rule is one small function
that returns the rewritten node or None, and knows which indices are fixed from outside,
since whether an index is summed decides what is allowed (a δ is contracted away only
through an index it sums; equal factors become a power only over fixed indices).

The rules keep meaning, never only the look: every one is checked by evaluating before
and after in the tests. They live by the node they rewrite: products.py, sums.py,
reductions.py, and folds.py for the rest (powers, calls, masks, comparisons, a lone δ);
what they share (the context a rule sees, a term as number and factors) in terms.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from ..expr import (
    Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Sum, Tensor,
    leaf_factors, with_children,
)
from ..indices import check_equation, free_indices
from ..program import check_program
from ..relabel import exposed_letters, fresh_letters, letters_in, rename_summed_apart
from ..scope import explicit, tidy
from ..wellformed import as_parsed
from .folds import fold_call, fold_compare, fold_mask, fold_power, lone_delta
from .products import (
    absorb_into_reduction, combine_powers, drop_held_carriers, drop_repeated_masks, drop_zero_carriers,
    drop_zero_powers, eliminate_delta, flatten_product, fold_numbers, order_factors,
)
from .reductions import (
    distribute_delta_sum, merge_nested_sums, numbers_out_of_sum, reduce_delta, solve_shift, split_reduction,
    sum_inside, zero_reduction,
)
from .sums import collect_terms, factor_common, flatten_sum, merge_reductions
from .terms import Context, Rule, sized_apart_from_carriers, sorted_factors, unsized


def simplify(source) -> Expr:
    """δ elimination, constant folding, like terms collected, zero terms dropped.

    Takes and returns what `parse` and `diff` return: an expression, an equation or a
    program (each equation simplified with its left-hand side's indices fixed).
    """
    return simplify_tree(as_parsed(source))


def simplify_tree(node: Expr) -> Expr:
    """`simplify` of a tree a route built for itself, which the check at the door
    (`wellformed.check_tree`) would only walk again."""
    if isinstance(node, Program):
        check_program(node.equations)
        by = _differentiated_by(node.equations)
        reached: dict[str, frozenset[str]] = {}  # by line: the names of `by` it reads, through earlier lines too
        lines = []
        for eq in node.equations:
            simplified, reads = simplify_tree(eq), _reached(eq, by, reached)
            # a line that no longer reads a name a derivative line differentiates by is kept as written
            lines.append(simplified if reads <= _reached(simplified, by, reached) else eq)
            reached[eq.lhs.key] = reads
        return Program(tuple(lines))
    if isinstance(node, Equation):
        check_equation(node)  # what no route would evaluate is not rewritten either
    keep = letters_in(node)
    node = explicit(node)  # every sum a node: no rule below can capture an index
    if isinstance(node, Equation):
        return _in_order(tidy(_simplified_equation(node), keep))
    return _simplify(node, Context(frozenset(), fresh_letters(letters_in(node))))


def _simplified_equation(equation: Equation) -> Equation:
    """The right side simplified with the left side's letters fixed, still carrying those
    it must (`_kept_letters`); the equation as it came if no pass keeps them."""
    fixed = frozenset(equation.lhs.all_indices)
    ctx = Context(fixed, fresh_letters(letters_in(equation)), held=fixed & sized_apart_from_carriers(equation.rhs))
    rhs = _simplified_keeping(equation.rhs, ctx, _kept_letters(equation, fixed))
    return equation if rhs is None else Equation(equation.lhs, rhs)


def _kept_letters(equation: Equation, fixed: frozenset[str]) -> frozenset[str]:
    """The left side's letters the simplified right side must still carry. A comma
    derivative may be constant along a letter (check_equation): the letters after its
    comma are sized by the array it differentiates by, so they may go; but the size of a
    letter before it, where the right side carried one, comes from nothing else in a
    derivative that stands alone (`y_{μ,(abc)}[v2]` of `y_μ = (v1_jμ - v1_jμ - 1.5)
    tanh(v2_jkk)`: diff's line, simplified, lost μ and no route could size it)."""
    if not equation.lhs.derivs:
        return fixed
    return frozenset(equation.lhs.indices) & set(free_indices(equation.rhs, fixed))


def _differentiated_by(equations) -> frozenset[str]:
    """The names the program's derivative lines differentiate by (`w` in `loss_{,(gh)}[w]`)."""
    return frozenset(d.wrt for eq in equations for t in eq.rhs.walk() if isinstance(t, Tensor) for d in t.derivs)


def _reached(eq: Equation, by: frozenset[str], reached: dict[str, frozenset[str]]) -> frozenset[str]:
    """The names of `by` that `eq` reads: written on its right side, or read by the earlier
    lines it reads (`reached`). A simplified line that reads fewer is kept as written: a
    name written on the way and cancelled there (`(2 - T3_ni + T3_ni)`, or `0.5 r_n - 0.5
    r_n` with `r_n = ... W1_n`, and `loss_{,(su)}[T3]` below) gives a derivative of zero,
    one written nowhere is a typo (DESIGN), and diff tells them apart by the text (the
    earlier lines, kept by the same rule, still read what they did)."""
    names: set[str] = set()
    for t in eq.rhs.walk():
        if isinstance(t, Tensor):
            names |= ({t.name} & by) | reached.get(t.key, frozenset())
    return frozenset(names)


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
    ordered = sorted_factors(node.factors)
    return node if ordered == node.factors else Product(ordered, span=node.span)


def _simplify(node: Expr, ctx: Context) -> Expr:
    # the rules ask the context only about the node's own letters (terms.Context): a subtree
    # met again under another reduction (a Hessian's terms share theirs) is rewritten once
    mine = letters_in(node)
    key = (node, ctx.fixed & mine, ctx.convention & mine, ctx.held & mine, ctx.unheld & mine)
    if key not in ctx.done:
        ctx.done[key] = _rewritten(node, ctx)
    return ctx.done[key]


def context_at(equation: Equation, target: Expr) -> Context:
    """The context `simplify` gives the sub-node `target` (by identity) of an explicit
    equation: what the rule tests hand a rule."""
    fixed = frozenset(equation.lhs.all_indices)
    ctx = Context(fixed, fresh_letters(letters_in(equation)), held=fixed & sized_apart_from_carriers(equation.rhs))

    def down(node: Expr, ctx: Context) -> Context | None:
        if node is target:
            return ctx
        if isinstance(node, (Product, Sum)):
            parts = tuple(leaf_factors(node)) if isinstance(node, Product) else node.terms
            steps = list(zip(parts, _beside(ctx, parts)))
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
        return _product_of(tuple(f if isinstance(f, Delta) else _simplify(f, inner)
                                 for f, inner in zip(leaves, _beside(ctx, leaves))), ctx, leaves)
    if isinstance(node, Sum):
        return Sum(tuple(_simplify(t, inner) for t, inner in zip(node.terms, _beside(ctx, node.terms))))
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
        return replace(node, body=_body_keeping_letters(node, inner))
    return node


def _body_keeping_letters(node: Reduce, inner: Context) -> Expr:
    """A reduction's body simplified, still carrying the letters it reduces over, or as it
    came (`sum_n(8 x_a x_b)` would no longer say how many n there are: the Hessian of
    `sum_n((t_n - Q)^2)`, `Q = x_u x_u`, compiled)."""
    body = _simplified_keeping(node.body, inner, frozenset(node.indices))
    return node.body if body is None else body


def _simplified_keeping(node: Expr, ctx: Context, letters: frozenset[str]) -> Expr | None:
    """`node` simplified in `ctx`, still carrying `letters`; None if no pass keeps them.

    A zero carrier (`0 y_u`, `(1 + 0 t_n)`) is dropped where its letter is held, i.e.
    sized by a sibling; but a hold is granted before the siblings are rewritten, and what
    sized the letter may cancel or fold there (`w_u = (y_u + c - y_u) d` loses u, and
    `(t_n - Q)^0` folds to 1). A letter so lost is simplified again unheld, where only a
    carrier with a holder beside it in the same rewritten product goes.

    A letter is lost where it is no longer free, or no longer sized where it was: on a mask
    alone it is still free (`sum_m([p != m - 1] 0 v2_p ...)`, its carrier `v3_mp` of a
    zero term dropped as held by terms that then cancelled)."""
    given, memo = ctx.fixed - letters, ctx.sized_with_carriers
    sized = letters - unsized(letters, node, given, memo)
    unheld = ctx.unheld
    while True:
        out = _simplify(node, replace(ctx, held=ctx.held - unheld, unheld=unheld))
        lost = (letters - set(free_indices(out, ctx.fixed))) | unsized(sized, out, given, memo)
        if not lost:
            return out
        if lost <= unheld:
            return None
        unheld |= lost


# ---------------------------------------------------------------- helpers


def _beside(ctx: Context, siblings: tuple[Expr, ...]) -> list[Context]:
    """The context of each of `siblings`, a product's factors or a sum's terms: a fixed
    letter that an array in another sibling sizes is held for it (the product or the sum
    runs over that letter anyway, and what does not carry it is broadcast over it).
    Counted once for all: a Hessian's sums have hundreds of terms."""
    sized = [ctx.fixed & sized_apart_from_carriers(s, ctx.sized) for s in siblings]
    counts = Counter(i for letters in sized for i in letters)
    contexts = []
    for mine in sized:
        held = {i for i, n in counts.items() if n > (i in mine)} - ctx.unheld
        contexts.append(ctx if held <= ctx.held else replace(ctx, held=ctx.held | held))
    return contexts


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
