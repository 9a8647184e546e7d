"""The immutable expression tree.

A node mirrors the notation one to one, so that printing a tree and parsing the text
gives the same tree back: a product in parentheses stays a nested `Product` (parentheses
around a product only group, and the index rules see through it), `a / b` is the factor
`b^-1`, and `a - b` is the term `-1 b`. Nodes compare and hash by structure; the position
a node came from (`span`) is kept for error messages and takes no part in equality.

Which indices are free and which are summed is not stored here: it depends on what is
fixed from outside, and `indexcalc.indices` works it out in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import ArgumentError, IndexCalcError, kind_of

# The printers (plain, latex, einsum_specs, quoted) are a stage above the tree, in
# indexcalc.printing, which puts them here when it is imported (importing indexcalc does):
# a node prints itself without this module importing the stage above it.
PRINTERS: dict[str, Callable[..., Any]] = {}
# So is indexcalc.wellformed's check_tree (as "tree"): a printer that fails on a tree built
# in Python (`Product((2.0, x))`) lets it say what is wrong with the tree, as a route would.
CHECKS: dict[str, Callable[["Expr"], None]] = {}


@dataclass(frozen=True)
class Expr:
    """Base of all expression nodes."""

    def __str__(self) -> str:
        """The formula as it parses back; kept on the node after the first call, as the
        node never changes (simplify sorts and compares by the printed form)."""
        try:
            return self.__dict__["_text"]
        except KeyError:
            text = _printed("plain", self)
            object.__setattr__(self, "_text", text)
            return text

    def pretty(self, style: str = "default") -> str:
        """Comma notation with Unicode symbols (σ, δ, Σ, ŷ, ≤, and ∂C/∂b for a derivative
        by scalars), for reading (it parses back too). `style="notes"` writes σ'(u_i) δ_im
        as the notes' Jacobian σ_{i,m}(u)."""
        return _printed("plain", self, unicode=True, style=style)

    def latex(self, style: str = "default") -> str:
        """The formula as LaTeX; `style="notes"` as for `pretty`."""
        return _printed("latex", self, style=style)

    def __repr__(self) -> str:
        """`<Equation yhat_i = sigma(w_ij x_j + b_i)>`: the class and the formula as it
        parses back, cut at `REPR_WIDTH` (a dataclass's own repr of one layer runs to
        thousands of characters, with every span). Never fails, even on a tree that no
        printer accepts."""
        try:
            text = "; ".join(str(self).splitlines())
        except Exception:  # noqa: BLE001 - a repr for debugging must not raise
            text = f"(unprintable, {len(self.children())} children)"
        if len(text) > REPR_WIDTH:
            text = text[: REPR_WIDTH - 1] + "…"
        return f"<{type(self).__name__} {text}>"

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    def einsum(self) -> str:
        """The einsum specification of every product in the formula, one per line."""
        return "\n".join(_printed("einsum_specs", self))

    def children(self) -> tuple["Expr", ...]:
        return ()

    @property
    def lines(self) -> tuple["Expr", ...]:
        """The equations of a program, or this node alone: what a caller that takes either
        goes through line by line."""
        return (self,)

    def walk(self) -> Iterator["Expr"]:
        """This node and all below it, parents first (children left to right). A stack,
        not nested generators: those cost the depth of the tree for every node yielded."""
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


def quoted(node: Expr) -> str:
    """`node` as an error message quotes a piece of the user's text (printing.quoted)."""
    return _printed("quoted", node)


def _printed(printer: str, node: Expr, **options):
    """Run a printer; a tree nested too deeply to print, or built in Python with what no
    text writes, is an IndexCalcError."""
    style = options.get("style", "default")
    if not isinstance(style, str):
        raise ArgumentError(f'style must be "default" or "notes", not {kind_of(style)}')
    try:
        return PRINTERS[printer](node, **options)
    except RecursionError:
        raise IndexCalcError("the expression is nested too deeply to print") from None
    except IndexCalcError:
        raise
    except Exception:
        if "tree" in CHECKS:
            CHECKS["tree"](node)  # raises, naming the node and what is wrong, if the tree is malformed
        raise


def _span() -> "tuple[int, int] | None":
    return field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Number(Expr):
    value: float
    span: "tuple[int, int] | None" = _span()


@dataclass(frozen=True)
class Deriv:
    """One comma derivative: by the tensor `wrt` (None where the text does not say), at
    `indices` (one index `f_{,i}`, a group `f_{,(gh)}`, or none for a scalar `wrt`)."""

    indices: tuple[str, ...]
    wrt: str | None = None


@dataclass(frozen=True)
class Tensor(Expr):
    """`w_ij`, a scalar `eta` (no indices), or a comma derivative `loss_{,(gh)}[w]`."""

    name: str
    indices: tuple[str, ...] = ()
    derivs: tuple[Deriv, ...] = ()
    span: "tuple[int, int] | None" = _span()

    @property
    def all_indices(self) -> tuple[str, ...]:
        """The tensor's own indices, then those of each derivative: its array's axes."""
        out = list(self.indices)
        for d in self.derivs:
            out.extend(d.indices)
        return tuple(out)

    @property
    def key(self) -> str:
        """The name its array goes by: `w`, or `loss_{,}[w]` for a derivative of loss by w
        (index letters are local, so they are not part of the key)."""
        if not self.derivs:
            return self.name
        wrts = ",".join(d.wrt or "?" for d in self.derivs)
        return f"{self.name}_{{{',' * len(self.derivs)}}}[{wrts}]"


@dataclass(frozen=True)
class Delta(Expr):
    """Kronecker delta: `δ_ij` is Delta(("i",), ("j",)); `δ_(ij)(kl)` pairs i-k and j-l."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    span: "tuple[int, int] | None" = _span()

    @property
    def all_indices(self) -> tuple[str, ...]:
        return self.left + self.right

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.left, self.right))


COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Mask(Expr):
    """An Iverson bracket on indices, `[j <= i]`: 1 where the comparison of the index
    values (0, 1, 2, ...) holds, else 0. `right` is an index or None (a comparison with
    the number `offset` alone: `[i >= 1]`); `offset` is added to the right side
    (`[j <= i + 2]`). Like δ it is a constant of the indices, but it selects rather than
    pairs: its indices take no part in the summation count (`[j <= i] exp(s_ij)` keeps
    i and j free), so each must occur elsewhere where it stands or be fixed."""

    op: str
    left: str
    right: str | None = None
    offset: int = 0
    span: "tuple[int, int] | None" = _span()

    @property
    def all_indices(self) -> tuple[str, ...]:
        return (self.left,) if self.right is None else (self.left, self.right)


@dataclass(frozen=True)
class Shift(Expr):
    """A shifted Kronecker delta, `δ_{p(2i+k-1)}`: 1 where the index value of `index`
    equals Σ coefficient·letter + `offset` over `terms` ((coefficient, letter) pairs,
    nonzero integers, distinct letters, none of them `index`), else 0. It is how a shifted
    index is held: `x_{nd(i+k)}` is `x_{ndp} δ_{p(i+k)}` with p summed, printed back as
    written. Unlike a Mask, and like δ, every one of its letters counts as an occurrence
    (k in `K_{cdk} x_{nd(i+k)}` is summed). A letter outside its range never matches, so
    an offset that reaches past an edge reads zeros there: padding."""

    index: str
    terms: tuple[tuple[int, str], ...]
    offset: int = 0
    span: "tuple[int, int] | None" = _span()

    @property
    def all_indices(self) -> tuple[str, ...]:
        return (self.index,) + tuple(letter for _, letter in self.terms)


@dataclass(frozen=True)
class Compare(Expr):
    """An Iverson bracket on values, `[u_j == max_k(u_k)]`: elementwise 1 where the
    comparison holds, else 0 (the subgradient of max and min is written with it). It is
    a scope like a function call: its free indices are those of its two sides, and it is
    constant under differentiation (its derivative is zero wherever it is defined)."""

    op: str
    left: Expr
    right: Expr
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Product(Expr):
    """Juxtaposition, `*` and `/` (a divisor is the factor `Power(b, -1)`)."""

    factors: tuple[Expr, ...]
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return self.factors


@dataclass(frozen=True)
class Sum(Expr):
    """`a + b - c`: a difference is a term whose leading number is negative."""

    terms: tuple[Expr, ...]
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return self.terms


@dataclass(frozen=True)
class Power(Expr):
    """`base^exponent`, elementwise; the exponent carries no free index."""

    base: Expr
    exponent: Expr
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.exponent)


@dataclass(frozen=True)
class Call(Expr):
    """An elementwise function `f(arg)`; `σ_i(arg)` relabels the argument's one free
    index (beside those fixed from outside) to `relabel`."""

    func: str
    arg: Expr
    relabel: str | None = None
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class MatrixCall(Expr):
    """A matrix-valued function of an index pair, `inv_ij(A_ij)`: the argument carries
    the pair under the letters `relabel` (rows, columns), beside any batch letters it
    broadcasts over. The parser renames a written argument's pair onto them
    (`inv_ij(A_kl)` is held as `inv_ij(A_ij)`), so the pair is never a guess from the order
    of appearance once parsed; the functions of the table commute with transposition,
    so the order of the two letters does not change the value. Scalar matrix functions
    (det, logdet) consume their pair and are reductions (`Reduce`) over it."""

    func: str
    arg: Expr
    relabel: tuple[str, ...]
    span: "tuple[int, int] | None" = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True)
class Reduce(Expr):
    """`sum_j(body)`, `mean_n(body)`, `logsumexp_j(body)` (and the others of
    `REDUCTIONS`): the indices are fixed inside body, then reduced.

    `implicit` marks a sum that the text leaves to the summation convention (`w_ij x_j`)
    and the rewriting routes write out (`indexcalc.scope.explicit`): it prints as the bare
    product wherever reading that back gives the same sum. It takes no part in equality,
    since both spellings mean the same."""

    op: str
    indices: tuple[str, ...]
    body: Expr
    span: "tuple[int, int] | None" = _span()
    implicit: bool = field(default=False, compare=False, hash=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.body,)


@dataclass(frozen=True)
class Equation(Expr):
    """`lhs = rhs`: the left-hand side's indices are fixed throughout the right."""

    lhs: Tensor
    rhs: Expr
    source: str | None = field(default=None, compare=False, hash=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)


@dataclass(frozen=True)
class Program(Expr):
    """Equations in order; a later one may use the left-hand side of an earlier one."""

    equations: tuple[Equation, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.equations

    @property
    def lines(self) -> tuple[Equation, ...]:
        return self.equations


REPR_WIDTH = 120




def _remembered_hash(structural):
    """A node's structural hash, worked out once: the rewriting routes keep nodes in sets
    and dicts, and hashing a tree anew at every level made them quadratic in its depth."""

    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = structural(self)
            object.__setattr__(self, "_hash", value)
            return value

    return __hash__


def _remembered_equality(structural):
    """Structural equality that remembers a match: two equal nodes (a tree rebuilt the
    same by a rewrite, say) share a token afterwards, and compare in one step from then
    on. The caches keyed by nodes compared whole trees again at every lookup, which made
    simplify cubic in the depth of a nested formula."""

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self.__dict__.get("_same"), other.__dict__.get("_same")
        if mine is not None and mine is theirs:
            return True
        equal = structural(self, other)
        if equal is True:
            token = mine or theirs or object()
            object.__setattr__(self, "_same", token)
            object.__setattr__(other, "_same", token)
        return equal

    return __eq__


_CACHES = ("_hash", "_same", "_letters", "_text")  # _letters: relabel.letters_in


def _state_without_caches(self) -> dict:
    """What pickling keeps of a node: not its hash, which depends on the process, nor
    what it remembers of its equals, nor anything else it works out again on demand."""
    return {k: v for k, v in self.__dict__.items() if k not in _CACHES}


# the dataclass decorator wrote a field-by-field __repr__ for each node; the short one of
# Expr serves them all
for _node in (
    Number, Tensor, Delta, Mask, Shift, Compare, Product, Sum, Power, Call, MatrixCall, Reduce, Equation, Program,
):
    _node.__repr__ = Expr.__repr__
    _node.__hash__ = _remembered_hash(_node.__hash__)
    _node.__eq__ = _remembered_equality(_node.__eq__)
    _node.__getstate__ = _state_without_caches

MATRIX_REDUCTIONS = ("det", "logdet")  # over an index pair: indexcalc.matrices
MATRIX_CALLS = ("inv",)  # a matrix over an index pair: indexcalc.matrices
REDUCTIONS = ("sum", "mean", "logsumexp", "max", "min") + MATRIX_REDUCTIONS


def leaf_factors(product: Product) -> Iterator[Expr]:
    """The factors of a product with nested (parenthesised) products opened up."""
    for factor in product.factors:
        if isinstance(factor, Product):
            yield from leaf_factors(factor)
        else:
            yield factor


def with_children(node: Expr, children: tuple[Expr, ...]) -> Expr:
    """The same node over new children (in the order `children()` gives them)."""
    if isinstance(node, Product):
        return Product(children, span=node.span)
    if isinstance(node, Sum):
        return Sum(children, span=node.span)
    if isinstance(node, Power):
        return Power(children[0], children[1], span=node.span)
    if isinstance(node, Call):
        return Call(node.func, children[0], node.relabel, span=node.span)
    if isinstance(node, Compare):
        return Compare(node.op, children[0], children[1], span=node.span)
    if isinstance(node, MatrixCall):
        return MatrixCall(node.func, children[0], node.relabel, span=node.span)
    if isinstance(node, Reduce):
        return Reduce(node.op, node.indices, children[0], span=node.span, implicit=node.implicit)
    if isinstance(node, Equation):
        return Equation(children[0], children[1], source=node.source)
    if isinstance(node, Program):
        return Program(children)
    return node


def map_tensors(node: Expr, change) -> Expr:
    """`node` with every tensor t replaced by `change(t)`."""
    if isinstance(node, Tensor):
        return change(node)
    kids = node.children()
    return with_children(node, tuple(map_tensors(k, change) for k in kids)) if kids else node
