"""What a derivative is of and by what: the wrt string read (`"w_gh"`, a bare `"w"`), the
line differentiated, and the checks that both are well posed. `diff` and `compile(wrt=...)`
read them alike, so the two routes accept and refuse the same requests."""

from __future__ import annotations

from .errors import DiffError, IndexNotationError
from .expr import Equation, Expr, Product, Shift, Tensor
from .indices import free_indices, index_names
from .notation import parse
from .relabel import fresh_letters, letters_in, rename
from .tokens import known_names, written_subscript


def wrt_names(source, node: Expr) -> frozenset[str]:
    """The index names a wrt string reads as the program does (`b_{in}` is the index in,
    not i and n, where the program has it): those the tree holds and, for text, those it
    declares."""
    return index_names(node) | (known_names(source) if isinstance(source, str) else frozenset())


def written_through(equations: list[Equation], name: str) -> bool:
    """Whether the last line reads `name` as the text is written: directly, through the
    lines before it, or through a derivative line by it (`y_{,i}[T]` is a function of T
    even where the rules turn it into a constant). DESIGN's "a typo is far likelier than
    a wish for zero" is about a wrt that is written nowhere on the way; one that is
    written there and whose dependence cancels has the derivative zero."""
    reaches = {name}
    reached = False
    for eq in equations:
        read = {t.key for t in eq.rhs.walk() if isinstance(t, Tensor)}
        by = {d.wrt for d in eq.lhs.derivs}
        reached = bool(read & reaches or by & reaches or (eq.lhs.derivs and eq.lhs.name in reaches))
        if reached:
            reaches.add(eq.lhs.key)
    return reached


def expression_equation(node: Expr) -> Equation:
    """A bare expression as the equation `f_a = expression`, f a name it does not use."""
    names = {t.name for t in node.walk() if isinstance(t, Tensor)}
    name = next(n for n in ("f", "F", "g", "G", "df") if n not in names)
    # fixed, a free letter would capture an inner scope's own (i in x_i σ(y_i z_i)): such a one moves
    fresh = fresh_letters(letters_in(node))
    free = []
    for index in free_indices(node):
        new = fresh()
        moved = rename(node, index, new, frozenset(), fresh)
        if index in letters_in(moved):
            node, index = moved, new
        free.append(index)
    return Equation(Tensor(name, tuple(free)), node)


def target_line(equations: list[Equation], of: str | None) -> int:
    """The position of the line differentiated: the last, or the last that defines `of`."""
    if of is None:
        return len(equations) - 1
    for k in range(len(equations) - 1, -1, -1):
        lhs = equations[k].lhs
        if of in (lhs.key, str(lhs)):
            return k
    names = ", ".join(eq.lhs.key for eq in equations)
    raise DiffError(f"no equation defines {of!r} (the program defines {names})")


def parse_wrt(wrt: str, names: frozenset[str] = frozenset()) -> tuple[str, tuple[str, ...] | None]:
    """`"w_gh"` → ("w", ("g", "h")); a bare `"w"` → ("w", None); `names` are the index
    names of the program, read as names alone in braces too (`b_{in}`)."""
    if not isinstance(wrt, str):
        raise DiffError(f"wrt names a tensor, like 'w_gh' or 'b', got {type(wrt).__name__}")
    node = parse(wrt, names=names)
    if isinstance(node, Product) and any(isinstance(f, Shift) for f in node.factors):
        raise DiffError(f"wrt names a tensor by plain indices, one per axis: {wrt!r} has a shifted index, which "
                        f"names no axis of the derivative's array (write {node.factors[0].name}_abe, say)")
    if not isinstance(node, Tensor) or node.derivs:
        raise DiffError(f"wrt names one tensor with fresh indices, like 'w_gh', got {wrt!r}")
    if len(set(node.indices)) != len(node.indices):
        raise DiffError(f"the indices of wrt {wrt!r} must be distinct")
    return node.name, (node.indices if "_" in wrt else None)


def index_count(nodes, name: str) -> int:
    """How many indices `name` carries wherever it occurs (so, how many wrt letters it
    takes), a derivative by it included (`L_{,g}[w]` says w has one: a derivative line
    given alone is a function of what it differentiates); refused where it occurs
    nowhere or with different counts."""
    tensors = [t for n in nodes for t in n.walk() if isinstance(t, Tensor)]
    counts = {len(t.all_indices) for t in tensors if t.key == name}
    counts |= {len(d.indices) for t in tensors for d in t.derivs if d.wrt == name}
    if not counts:
        where = "; ".join(str(n) for n in nodes)
        raise DiffError(f"{name} does not occur in {where}: nothing to differentiate by")
    if len(counts) > 1:
        raise IndexNotationError(f"{name} occurs with different numbers of indices ({sorted(counts)})")
    return counts.pop()


def wrt_letters(given, count: int, name: str, used: set[str], where: Expr) -> tuple[str, ...]:
    """The derivative's letters for `name`: those the wrt string gives, checked against its
    count and against the letters `used` already; for a bare name, fresh ones (g, h, ...)."""
    if given is None:
        fresh = fresh_letters(used, "ghklpqrstuv")
        return tuple(fresh() for _ in range(count))
    if len(given) != count:
        raise DiffError(
            f"{name} carries {count} ind{'ex' if count == 1 else 'ices'} where it occurs, "
            f"but wrt gives {len(given)}: {name}{written_subscript(given)}"
        )
    clash = [i for i in given if i in used]
    if clash:
        raise DiffError(
            f"the index {', '.join(clash)} of wrt {name}{written_subscript(given)} is already used in {where}; "
            f"pick fresh letters"
        )
    return given
