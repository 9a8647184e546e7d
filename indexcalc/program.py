"""A program's bookkeeping, shared by every route: its validity, its arrays and sizes.

`check_program` is the validity check of a whole program, the same for every route: what
evaluate accepts, compile and diff accept, and what one refuses, all refuse. `Environment`
holds the named arrays and works out, before a line runs, that every tensor it names has
an array and the size of every index. Running the lines is indexcalc.driver's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import IndexCalcError, IndexNotationError, MissingArrayError, ShapeError, given_as_one_name
from .expr import Deriv, Equation, Expr, Shift, Tensor
from .indices import check_equation, infer_sizes
from .scope import explicit


def numeric_array(name: str, value) -> np.ndarray:
    """`value` as an array, refused unless it is a rectangular array of real numbers."""
    try:
        array = np.asarray(value)
    except ValueError as err:  # a ragged nested list
        raise ShapeError(f"the array for '{name}' is not a rectangular array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise ShapeError(f"the array for '{name}' is not real numbers (dtype {array.dtype})")
    return array


def check_program(equations: Sequence[Equation]) -> None:
    """Refuse a program any route would refuse, before any route starts on it.

    Every equation obeys the index rules and reads no name it defines (`check_equation`),
    and its scopes can be written out (`scope.explicit`: a relabelling function whose
    argument has no free index beside those fixed around it was refused by compile on
    any line, by evaluate only on a line it ran); each name is defined once; and a comma
    derivative has as many indices as what it differentiates carries in the program
    (`y_{,g}[w]` for a matrix w is a typo, which one route would refuse for its shape and
    another read as a matrix).
    """
    defined: set[str] = set()
    for eq in equations:
        if eq.lhs.key in defined:
            raise _located(f"{eq.lhs.key} is defined twice; give the new value a name of its own", eq.lhs, eq)
        defined.add(eq.lhs.key)
    _refuse_reads_before_definition(equations)
    counts = _index_counts(equations)
    for eq in equations:
        for ref in (t for t in eq.walk() if isinstance(t, Tensor) and t.derivs):
            _check_derivative_counts(ref, counts, eq)
    for eq in equations:
        check_equation(eq)
        try:  # the scoping compile runs on every line and evaluate on the lines it needs
            explicit(eq)
        except IndexNotationError as err:
            raise err.with_source(eq.source, None) if eq.source else err from None


def _refuse_reads_before_definition(equations: Sequence[Equation]) -> None:
    """A program runs top to bottom: a line that reads a name (or its derivative) a later
    line defines could mean an array given under that name or the later value, so it is
    refused (evaluate asked for the array, compile failed inside its plan)."""
    later: dict[str, int] = {}
    for number, eq in reversed(list(enumerate(equations, 1))):
        for t in eq.rhs.walk():
            if not isinstance(t, Tensor):
                continue
            name = t.key if t.key in later else t.name if t.derivs and t.name in later else None
            if name is not None:
                raise _located(f"{t} is read on line {number}, before line {later[name]} defines "
                               f"{name}; a program runs top to bottom, "
                               f"so move that line up (or give an input a name of its own)", t, eq)
        later[eq.lhs.key] = number
        if not eq.lhs.derivs:
            later[eq.lhs.name] = number


def _index_counts(equations: Sequence[Equation]) -> dict[str, Tensor]:
    """For each name the program writes plainly (not as a comma derivative), one place it
    does so; names written with different numbers of indices are left out, the index
    rules name those."""
    seen: dict[str, Tensor] = {}
    clashing: set[str] = set()
    for eq in equations:
        for t in eq.walk():
            if isinstance(t, Tensor) and not t.derivs:
                if t.name in seen and len(seen[t.name].indices) != len(t.indices):
                    clashing.add(t.name)
                seen.setdefault(t.name, t)
    return {name: t for name, t in seen.items() if name not in clashing}


def _check_derivative_counts(ref: Tensor, known: dict[str, Tensor], eq: Equation) -> None:
    """`ref`'s own indices are those of what it differentiates, and each derivative group
    has as many indices as the tensor it is taken by."""
    base = known.get(ref.name)
    if base is not None and len(base.indices) != len(ref.indices):
        fixed = Tensor(ref.name, _letters(ref.indices, len(base.indices), eq), ref.derivs)
        raise _located(
            f"{ref} gives {ref.name} {_count(len(ref.indices))}, but {ref.name} carries "
            f"{_count(len(base.indices))} in this program (as in {base}); write {fixed}",
            ref,
            eq,
        )
    for k, d in enumerate(ref.derivs):
        wrt = known.get(d.wrt) if d.wrt else None
        if wrt is not None and len(wrt.indices) != len(d.indices):
            group = Deriv(_letters(d.indices, len(wrt.indices), eq), d.wrt)
            fixed = Tensor(ref.name, ref.indices, ref.derivs[:k] + (group,) + ref.derivs[k + 1 :])
            raise _located(
                f"{ref} is taken by {d.wrt} at {_count(len(d.indices))}, but {d.wrt} carries "
                f"{_count(len(wrt.indices))} in this program (as in {wrt}); write {fixed}",
                ref,
                eq,
            )


def _count(n: int) -> str:
    return f"{n} index" if n == 1 else f"{n} indices"


def _letters(given: tuple[str, ...], n: int, eq: Equation) -> tuple[str, ...]:
    """`n` index letters for a suggestion: the given ones, then letters `eq` does not use."""
    used = {i for t in eq.walk() for i in getattr(t, "all_indices", ())}
    spare = (c for c in "ghklpqrstuvmn" if c not in used and c not in given)
    return tuple(given[:n]) + tuple(next(spare) for _ in range(n - len(given[:n])))


def _located(message: str, node: Expr, eq: Equation) -> IndexNotationError:
    """An error pointing at `node` in the text `eq` came from."""
    span = getattr(node, "span", None)
    err = IndexNotationError(message, pos=span[0] if span else None)
    return err.with_source(eq.source, None) if eq.source else err


def unknown_size(index: str, node: Expr | None = None) -> ShapeError:
    """The error of an index no array gives a size (`y = δ_ij δ_ij`), by every route; where
    a shift of `node` holds it beside another letter without a size (the pooling window
    `max_k(h_{(2i+k)})` on a line of its own: how many windows, how wide), how to size it."""
    hint = ""
    for shift in (n for n in (node.walk() if node is not None else ()) if isinstance(n, Shift)):
        letters = [i for _, i in shift.terms]
        if index in letters and len(letters) > 1:
            others = " and ".join(i for i in letters if i != index)
            written = str(shift)[str(shift).index("("):].rstrip("}")  # delta_{p(2i+k)} -> (2i+k)
            hint = (f"; in the shifted index {written} its range and {others}'s depend on each other "
                    f"(how many windows, how wide): give {index} a size by an array with an axis for "
                    f"it, as in `m_i = s_i max_k(h_(2i+k))` with s of ones")
            break
    return ShapeError(f"cannot tell the size of index {index}: no array has an axis for it{hint}")


def lower_orders(lhs: Tensor) -> list[Tensor]:
    """The derivatives a Hessian line is the next order of, highest first: `m_{m,(gh)}[v]`
    for `m_{m,(gh)(ab)}[v]`. Its array sizes the line's own indices where m itself is not
    at hand (the Hessian of one equation)."""
    return [Tensor(lhs.name, lhs.indices, lhs.derivs[:k]) for k in range(len(lhs.derivs) - 1, 0, -1)]


def sized_by(lhs: Tensor) -> set[str]:
    """The arrays a comma derivative's index sizes may come from: what it differentiates,
    what it differentiates by, and its lower orders."""
    if not lhs.derivs:
        return set()
    return {lhs.name} | {d.wrt for d in lhs.derivs if d.wrt} | {t.key for t in lower_orders(lhs)}


def still_needed(definitions: list[Equation], last: list[Equation]) -> list[Equation]:
    """The definitions that `last` (and they themselves) still refer to, then `last`. A
    derivative line also needs the arrays that size it (sized_by), even where it reads them
    no more: the Hessian of m_r = max_s(T_rs) is 0, and r is m's; and a derivative line
    substituted into another brings a carrier `(1 + 0 m_t)` that reads m."""
    wanted = {t.key for eq in last for t in eq.rhs.walk() if isinstance(t, Tensor)}
    wanted |= set().union(*(sized_by(eq.lhs) for eq in last))
    kept = []
    for eq in reversed(definitions):
        if eq.lhs.key in wanted:
            kept.append(eq)
            wanted |= {t.key for t in eq.rhs.walk() if isinstance(t, Tensor)} | sized_by(eq.lhs)
    return kept[::-1] + last


def needed_lines(equations: Sequence[Equation]) -> list[Equation]:
    """The lines of a program its last line reads, directly or through others, in order,
    then the last: what every route runs (still_needed)."""
    return still_needed(list(equations[:-1]), list(equations[-1:]))


def inputs_read(lines: Sequence[Expr]) -> set[str]:
    """The keys of the arrays `lines` (equations, or one expression) read from outside:
    every tensor they read that no earlier line defines. What a compiled program takes
    as its inputs, and whose float type evaluate computes in."""
    defined: set[str] = set()
    read: set[str] = set()
    for line in lines:
        body = line.rhs if isinstance(line, Equation) else line
        read |= {t.key for t in body.walk() if isinstance(t, Tensor)} - defined
        if isinstance(line, Equation):
            defined.add(line.lhs.key)
    return read


class Environment:
    """The named arrays, and the index sizes of the equation being evaluated."""

    def __init__(self, arrays: Mapping[str, Any]):
        if not isinstance(arrays, Mapping):
            raise IndexCalcError(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}")
        self.arrays: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            array = numeric_array(str(name), value)
            self.arrays[str(name)] = array if array.dtype.kind == "f" else array.astype(float)
        self.sizes: dict[str, int] = {}
        self.dtype = np.dtype("float64")

    def read_by(self, lines: Sequence[Expr]) -> None:
        """Take the float type of the arrays these lines read from outside, as `compile`
        takes its inputs': an array given but not read must not change a route's numbers."""
        types = {self.arrays[k].dtype for k in inputs_read(lines) if k in self.arrays}
        self.dtype = np.result_type(*types) if types else np.dtype("float64")

    def prepare(self, node: Expr) -> None:
        """Check that every tensor of `node` has an array and work out the index sizes."""
        missing = sorted({t.key for t in node.walk() if isinstance(t, Tensor) and t.key not in self.arrays}
                         - ({node.lhs.key} if isinstance(node, Equation) else set()))
        if missing:
            known = ", ".join(sorted(self.arrays)) or "none"
            raise MissingArrayError(
                f"no array given for {', '.join(repr(m) for m in missing)} (arrays given: {known})"
                + given_as_one_name(missing[0], self.arrays)
            )
        target = node.rhs if isinstance(node, Equation) else node
        fixed = frozenset(node.lhs.all_indices) if isinstance(node, Equation) else frozenset()
        shapes = {k: v.shape for k, v in self.arrays.items()}
        preset = self._derivative_sizes(node.lhs) if isinstance(node, Equation) else {}
        self.sizes = infer_sizes(target, shapes, fixed, preset)
        for sub in target.walk():
            for index in getattr(sub, "all_indices", ()):
                if index not in self.sizes:
                    raise unknown_size(index, target)

    def _derivative_sizes(self, lhs: Tensor) -> dict[str, tuple[int, str]]:
        """A comma derivative's indices run over the shapes of what it differentiates
        (`y_{i,(gh)}[w]`: i as y's axis, g and h as w's), where those are known."""
        if not lhs.derivs:
            return {}
        known: dict[str, tuple[int, str]] = {}
        base = self.arrays.get(lhs.name)
        if base is not None and base.ndim == len(lhs.indices):
            known.update((i, (n, f"the array of {lhs.name}")) for i, n in zip(lhs.indices, base.shape))
        for lower in lower_orders(lhs):
            array = self.arrays.get(lower.key)
            if base is None and array is not None and array.ndim == len(lower.all_indices):
                known.update((i, (n, f"the array of {lower.key}")) for i, n in zip(lhs.indices, array.shape))
                break
        for d in lhs.derivs:
            wrt = self.arrays.get(d.wrt) if d.wrt else None
            if wrt is not None and wrt.ndim == len(d.indices):
                known.update((i, (n, f"the array of {d.wrt}")) for i, n in zip(d.indices, wrt.shape))
        return known

    def array(self, tensor: Tensor) -> np.ndarray:
        try:
            return self.arrays[tensor.key]
        except KeyError:
            raise MissingArrayError(f"no array given for '{tensor.key}'") from None

    def size(self, index: str) -> int:
        try:
            return self.sizes[index]
        except KeyError:
            raise unknown_size(index) from None
