"""Where every index is bound: the binders written out, and read back into notation.

The notation leaves most sums to a convention: an index occurring twice in a product is
summed there, unless it is fixed from outside. That is pleasant to write and dangerous to
rewrite: substitute a definition into a product, or move a factor into a scope, and an
index can meet a second occurrence of its letter and be summed where it was not meant to
be (the softmax's `sum_c(exp(x_nc) δ_(nc)(gh))` under a product that sums n).

So the rewriting routes (diff, simplify, inlining, compile) never work on the convention.
`explicit` writes every implicit sum out as a `sum_...(...)` node (marked `implicit`) and
gives every bound index a letter of its own, used nowhere else in its equation. In such a
tree each index is fixed by the left-hand side or by the reduction around it, the
counting rule never fires, and a rewrite cannot capture: what is bound is bound by a node.

Letters are chosen for the reader only at the end: `tidy` renames machine-made bound
letters to short ones that name nothing else in the program, and `implicit_form` (which
the printers call) leaves an implicit sum unwritten exactly where reading the printed
text back by the convention gives the same sum, and writes `sum_j(...)` everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from .errors import IndexCalcError
from .expr import (
    Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift, Sum, Tensor,
    leaf_factors, with_children,
)
from .indices import free_indices, occurrence_counts, relabelled_index, summed_indices
from .relabel import fresh_letters, letter_count, letter_counts, letters_in, rebind_reduction, rename

TIDY_POOL = "klmnpqrstuvjabcdefhiowxyzg"


# ---------------------------------------------------------------- explicit binders


def explicit(node: Expr, reserved: Iterable[str] = ()) -> Expr:
    """`node` with every implicit sum written as a `sum` node and every bound index on
    a letter of its own, none of them in `reserved` (letters the caller is about to
    use); subscripted functions `σ_i(...)` are relabelled into their argument. The
    meaning is unchanged (the tests evaluate both)."""
    if isinstance(node, Program):
        return Program(tuple(explicit(eq, reserved) for eq in node.equations))
    fixed = frozenset(node.lhs.all_indices) if isinstance(node, Equation) else frozenset()
    rhs = node.rhs if isinstance(node, Equation) else node
    rhs = _unrelabelled(rhs, fixed, fresh_letters(letters_in(rhs) | fixed | set(reserved)))
    rhs = _Binding(rhs, fixed, frozenset(reserved)).bind(rhs, fixed)
    return Equation(node.lhs, rhs, source=node.source) if isinstance(node, Equation) else rhs


def _unrelabelled(node: Expr, fixed: frozenset[str], fresh) -> Expr:
    """`σ_i(w_jk x_k)` as `σ(w_ik x_k)`, read with the scopes of the text (before any
    sum is written out, which would fix the j that the relabelling takes)."""
    if isinstance(node, Call) and node.relabel is not None:
        source = relabelled_index(node, fixed)
        # (a letter i the argument sums of its own moves aside: σ_i(T_jii) is σ(T_ikk))
        arg = rename(node.arg, source, node.relabel, fixed, fresh) if source != node.relabel else node.arg
        return Call(node.func, _unrelabelled(arg, fixed, fresh), span=node.span)
    if isinstance(node, Reduce):
        return replace(node, body=_unrelabelled(node.body, fixed | set(node.indices), fresh))
    children = node.children()
    if not children:
        return node
    return with_children(node, tuple(_unrelabelled(c, fixed, fresh) for c in children))


def origin(letter: str) -> str:
    """The letter a variant was made from (j~1 → j); a letter's origin is itself."""
    return letter.split("~")[0]


class _Binding:
    """One pass, inside out. A binder keeps its letter where that letter is written
    nowhere else in the equation and no other binder has it; otherwise it moves to a
    fresh one."""

    def __init__(self, root: Expr, fixed: frozenset[str], reserved: frozenset[str]):
        self.total = letter_counts(root)
        self.claimed = set(fixed) | reserved
        self.taken = set(self.total) | set(fixed) | reserved
        self.fresh = fresh_letters(self.taken)

    def variant(self, letter: str) -> str:
        """A new letter that still says which it was made from (j → j~1), for `tidy`,
        which gives every bound letter a readable one before anything is printed."""
        base = origin(letter)
        new = next(f"{base}~{n}" for n in range(1, 1 << 30) if f"{base}~{n}" not in self.taken)
        self.taken.add(new)
        return new

    def own_letter(self, node: Expr, letter: str, fixed: frozenset[str]) -> tuple[Expr, str]:
        """`node` with the letter it binds made unique in the equation."""
        if letter not in self.claimed and self.total[letter] <= letter_count(node, letter):
            self.claimed.add(letter)
            return node, letter
        new = self.variant(letter)
        before = letter_count(node, letter)
        if isinstance(node, Reduce):
            node = rebind_reduction(node, letter, new, fixed, self.fresh)
        else:
            node = rename(node, letter, new, fixed, self.fresh, merge=True)
        self.total[letter] -= before - letter_count(node, letter)
        self.claimed.add(new)
        return node, new

    def bind(self, node: Expr, fixed: frozenset[str]) -> Expr:
        if isinstance(node, (Number,)):
            return node
        if isinstance(node, (Tensor, Delta, Mask, Shift, Product)):
            return self.product(node, fixed)
        if isinstance(node, (Sum, Compare)):
            return with_children(node, tuple(self.bind(t, fixed) for t in node.children()))
        if isinstance(node, Power):
            return Power(self.bind(node.base, fixed), self.bind(node.exponent, fixed), span=node.span)
        if isinstance(node, (Call, MatrixCall)):
            return self.call(node, fixed)
        if isinstance(node, Reduce):
            node = replace(node, body=self.bind(node.body, fixed | set(node.indices)))
            inner = node.body
            if node.implicit and isinstance(inner, Reduce) and inner.implicit:
                node = replace(node, indices=node.indices + inner.indices, body=inner.body)
            for index in node.indices:
                node, _ = self.own_letter(node, index, fixed)
            return node
        raise IndexCalcError(f"cannot work out the scopes of {type(node).__name__}")

    def product(self, node: Expr, fixed: frozenset[str]) -> Expr:
        """Inner scopes first, read as the text reads them (what the product sums is not
        fixed inside them), so that a letter they bind of their own moves aside before
        the product's sum is written out around them."""
        summed = summed_indices(node, fixed)
        letters: list[str] = []
        if isinstance(node, Product):
            factors: list[Expr] = []
            for factor in leaf_factors(node):
                factor = factor if isinstance(factor, (Tensor, Delta, Mask, Shift)) else self.bind(factor, fixed)
                if isinstance(factor, Reduce) and factor.implicit:
                    # a (w_ij x_j) in a product is the product's sum: one form for one meaning
                    letters.extend(factor.indices)
                    factors.extend(leaf_factors(factor.body) if isinstance(factor.body, Product) else (factor.body,))
                else:
                    factors.append(factor)
            node = Product(tuple(factors), span=node.span)
        for index in summed:
            node, letter = self.own_letter(node, index, fixed)
            letters.append(letter)
        return Reduce("sum", tuple(letters), node, implicit=True) if letters else node

    def call(self, node: Call | MatrixCall, fixed: frozenset[str]) -> Expr:
        return replace(node, arg=self.bind(node.arg, fixed))


def fresh_binders(node: Expr, fixed: frozenset[str], fresh) -> Expr:
    """`node` with every letter a reduction in it binds moved to a fresh one."""
    if isinstance(node, Reduce):
        for index in node.indices:
            node = rebind_reduction(node, index, fresh(), fixed, fresh)
        return replace(node, body=fresh_binders(node.body, fixed | set(node.indices), fresh))
    children = node.children()
    if not children:
        return node
    return with_children(node, tuple(fresh_binders(c, fixed, fresh) for c in children))


# ---------------------------------------------------------------- back to notation


@dataclass
class _Printed:
    """A subtree as it will be printed, and the letters its top-level product sums by
    the convention (an enclosing product's counting sees them too)."""

    node: Expr
    summed: frozenset[str] = field(default_factory=frozenset)


def implicit_form(node: Expr, fixed: frozenset[str] = frozenset()) -> Expr:
    """`node` with each implicit sum left unwritten where the convention, reading the
    printed text, sums exactly those indices there and nowhere else; written out as
    `sum_j(...)` where it would not."""
    if isinstance(node, Program):
        return Program(tuple(implicit_form(eq) for eq in node.equations))
    if isinstance(node, Equation):
        return Equation(node.lhs, implicit_form(node.rhs, frozenset(node.lhs.all_indices)), source=node.source)
    if not any(isinstance(sub, Reduce) and sub.implicit for sub in node.walk()):
        return node
    try:
        return _implicit(node, fixed).node
    except IndexCalcError:
        return node  # a tree that breaks the rules prints as it is; evaluation names the problem


def _implicit(node: Expr, fixed: frozenset[str]) -> _Printed:
    if isinstance(node, Reduce):
        return _implicit_reduce(node, fixed)
    if isinstance(node, Product):
        parts = [_implicit(f, fixed) for f in node.factors]
        summed = frozenset().union(*(p.summed for p in parts))
        return _Printed(Product(tuple(p.node for p in parts), span=node.span), summed)
    if isinstance(node, (Number, Tensor, Delta, Mask, Shift)):
        return _Printed(node)
    if isinstance(node, (Sum, Compare)):
        return _Printed(with_children(node, tuple(_implicit(t, fixed).node for t in node.children())))
    if isinstance(node, Power):
        return _Printed(Power(_implicit(node.base, fixed).node, _implicit(node.exponent, fixed).node, span=node.span))
    if isinstance(node, (Call, MatrixCall)):
        return _Printed(replace(node, arg=_implicit(node.arg, fixed).node))
    return _Printed(node)


def _implicit_reduce(node: Reduce, fixed: frozenset[str]) -> _Printed:
    if not (node.implicit and node.op == "sum"):
        return _Printed(replace(node, body=_implicit(node.body, fixed | set(node.indices)).node))
    # read as the convention will read it, with the sum's letters not fixed; should it
    # have to be written after all, what is inside reads the same with them fixed
    inner = _implicit(node.body, fixed)
    written = replace(node, body=inner.node, implicit=False)
    if not isinstance(inner.node, (Product, Tensor, Delta, Mask, Shift)):
        return _Printed(written)
    wanted = frozenset(node.indices) | inner.summed
    if _reads_as(inner.node, fixed, wanted):
        return _Printed(inner.node, wanted)
    return _Printed(written)


def _reads_as(node: Expr, fixed: frozenset[str], wanted: frozenset[str]) -> bool:
    """Whether the convention sums exactly `wanted` at `node`'s level, each index twice,
    and no scope inside it takes one of them for its own."""
    counts = occurrence_counts(node, fixed)
    if set(summed_indices(node, fixed)) != wanted or any(counts[i] != 2 for i in wanted):
        return False
    scopes = [f for f in (leaf_factors(node) if isinstance(node, Product) else ())
              if not isinstance(f, (Tensor, Delta, Mask, Shift))]
    return all(
        set(free_indices(f, fixed)) & wanted == set(free_indices(f, fixed | wanted)) & wanted for f in scopes
    )


# ---------------------------------------------------------------- letters for the reader


def tidy(node: Expr, keep: Iterable[str] = ()) -> Expr:
    """Bound letters for the reader. The user's own (`keep`) stay. A machine-made one
    made from a user's letter (j1 from j) becomes that letter again where nothing in
    its scope uses it and no enclosing scope binds it: sibling scopes may then share
    it, which is safe because a letter has one size in an equation, and the printer
    writes a sum out wherever the convention would read the text otherwise. Any other
    machine-made letter becomes the first short letter the equation does not use and
    no tensor is named."""
    keep = set(keep)
    if isinstance(node, Program):
        return Program(tuple(tidy(eq, keep) for eq in node.equations))
    if not isinstance(node, Equation):
        return node
    node = explicit(node)
    names = {t.name for t in node.walk() if isinstance(t, Tensor)}
    used = {origin(letter) for letter in letters_in(node)} | names  # j~1 may become j again
    rhs = _tidy(node.rhs, frozenset(node.lhs.all_indices), keep, used, fresh_letters(used))
    return Equation(node.lhs, rhs, source=node.source)


def _readable():
    """Short letters first, then with digits: k, l, ..., k1, l1, ..."""
    yield from TIDY_POOL
    for n in range(1, 1 << 30):
        yield from (f"{c}{n}" for c in TIDY_POOL)


def _tidy(node: Expr, fixed: frozenset[str], keep: set[str], used: set[str], fresh) -> Expr:
    if isinstance(node, Reduce):
        for index in node.indices:
            if index in keep:
                continue
            inside = fixed | (letters_in(node.body) - {index}) | (set(node.indices) - {index})
            if origin(index) in keep and origin(index) not in inside:
                letter = origin(index)
            else:
                letter = next(c for c in _readable() if c not in used and c not in inside)
            used.add(letter)
            if letter != index:
                node = rebind_reduction(node, index, letter, fixed, fresh)
        return replace(node, body=_tidy(node.body, fixed | set(node.indices), keep, used, fresh))
    children = node.children()
    if not children:
        return node
    return with_children(node, tuple(_tidy(c, fixed, keep, used, fresh) for c in children))
