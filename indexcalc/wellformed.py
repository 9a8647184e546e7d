"""What every route is handed: text, which is parsed, or a tree, which must hold only what
the notation writes.

A tree from `parse` holds only what the notation writes. A tree built in Python may
hold what no text can: `Reduce("sum", ("j", "j"), ...)`, which the loops summed twice
and einsum once; an empty `Sum(())`, 0 to the loops, None from evaluate, an IndexError in
compile; `Product((2.0, x))`, a bare float where a node belongs; a tensor named `delta`,
which prints as a δ. Each route read such a tree its own way or failed deep inside.
`check_tree` refuses it at the door, naming the node and what is wrong, by one rule per
node type (`RULES`): a rule checks its node's own fields and hands back the children to
check next. The leaves (tensors, δs, masks, shifted δs) are checked by the notation
itself: a leaf must print as text that parses back to the same leaf.

The routes' own letters and names (`j~1`, `#0`, `<0>`, `#u0`, `T9#bar`) are none the
notation writes, yet every route reads them alike, and the routes and their tests hand
such trees to each other: they pass, checked for the types of their fields.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import fields
from functools import lru_cache
from typing import Callable

from .errors import IndexCalcError, IndexNotationError, kind_of
from .expr import (
    CHECKS, Call, Compare, Delta, Deriv, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program,
    Reduce, Shift, Sum, Tensor,
)
from .indices import (
    check_comparison, check_function, check_mask, check_matrix_function, check_reduction, check_shift, repeated_index,
)
from .notation import parse
from .tokens import is_index_name, is_letter_index


def as_parsed(source) -> Expr:
    """Text is parsed; a tree is checked (`check_tree`) and taken as it is."""
    if isinstance(source, str):
        return parse(source)
    if isinstance(source, Expr):
        check_tree(source)
        return source
    raise IndexCalcError(f"expected notation text or a parsed expression, got {type(source).__name__}")


def check_tree(tree: Expr) -> None:
    """Refuse a tree that holds what the notation cannot write. A tree found well-formed
    is marked so (nodes never change), and a later route skips it."""
    if tree.__dict__.get("_wellformed"):
        return
    seen: list[Expr] = []
    stack: list[Expr] = [tree]
    while stack:  # a stack, not recursion: a tree built in Python may be deep
        node = stack.pop()
        if node.__dict__.get("_wellformed"):
            continue
        rule = RULES.get(type(node))
        if rule is None:
            raise _refused(f"a {type(node).__name__} is not a node of the notation")
        stack.extend(rule(node))
        seen.append(node)
    for node in seen:  # only now: a node is well-formed once all below it is
        object.__setattr__(node, "_wellformed", True)


# ---------------------------------------------------------------- one rule per node type


def _program(node: Program) -> tuple[Expr, ...]:
    equations = _nodes(node, "equations", node.equations)
    wrong = next((eq for eq in equations if not isinstance(eq, Equation)), None)
    if wrong is not None:
        raise _refused(f"a Program holds equations, got a {type(wrong).__name__}: write ic.Equation(lhs, rhs)")
    return equations


def _equation(node: Equation) -> tuple[Expr, ...]:
    if not isinstance(node.lhs, Tensor):
        raise _refused(f"an Equation's left-hand side is a tensor, got {_described(node.lhs)}")
    _leaf(node.lhs)
    repeated = repeated_index(node.lhs.all_indices)
    if repeated is not None:
        raise _refused(f"the left-hand side {node.lhs} repeats the index {repeated}: each of its indices names an axis")
    return (_expression(node, "rhs", node.rhs),)


def _number(node: Number) -> tuple[Expr, ...]:
    value = node.value
    try:
        finite = isinstance(value, numbers.Real) and math.isfinite(value)
    except OverflowError:  # an int past the largest float
        finite = False
    if not finite:
        shown = f"{value!r}" if len(repr(value)) < 40 else f"{repr(value)[:20]}... (too large for a float)"
        raise _refused(f"ic.Number holds a finite real number, got {shown} ({type(value).__name__})")
    return ()


def _leaf(node: Expr) -> tuple[Expr, ...]:
    """A tensor, δ, mask or shifted δ: fields of the right types, then read back."""
    if isinstance(node, Mask):
        check_mask(node)
    elif isinstance(node, Shift):
        check_shift(node)
    problem = _field_types(node)
    if problem is None:
        machine = any(map(_MACHINE.fullmatch, _names(node) + node.all_indices))
        problem = _machine_words(node) if machine else _reads_back(node)
    if problem is not None:
        raise _refused(f"{_described(node)} {problem}")
    return ()


def _product(node: Product) -> tuple[Expr, ...]:
    return _nodes(node, "factors", node.factors, empty="a Product of no factors: for 1 write ic.Number(1)")


def _sum(node: Sum) -> tuple[Expr, ...]:
    return _nodes(node, "terms", node.terms, empty="a Sum of no terms: for 0 write ic.Number(0)")


def _power(node: Power) -> tuple[Expr, ...]:
    return _expression(node, "base", node.base), _expression(node, "exponent", node.exponent)


def _compare(node: Compare) -> tuple[Expr, ...]:
    check_comparison(node)
    return _expression(node, "left", node.left), _expression(node, "right", node.right)


def _call(node: Call) -> tuple[Expr, ...]:
    if not isinstance(node.func, str):
        raise _refused(f"ic.Call's func is the name of a function, got {_described(node.func)}")
    check_function(node)
    if node.relabel is not None:
        _index(node, "relabel", node.relabel)
    return (_expression(node, "arg", node.arg),)


def _matrix_call(node: MatrixCall) -> tuple[Expr, ...]:
    check_matrix_function(node)
    _indices(node, "relabel", node.relabel)
    return (_expression(node, "arg", node.arg),)


def _reduce(node: Reduce) -> tuple[Expr, ...]:
    indices = _indices(node, "indices", node.indices)
    check_reduction(node)
    if not indices:
        raise _refused(f"{node.op} reduces over no index: give it one, as in ic.Reduce({node.op!r}, ('j',), ...)")
    repeated = repeated_index(indices)
    if repeated is not None:
        raise _refused(f"{node.op} reduces over {repeated} twice ({', '.join(indices)}): name each index once")
    return (_expression(node, "body", node.body),)


RULES: dict[type, Callable[..., tuple[Expr, ...]]] = {
    Program: _program, Equation: _equation, Number: _number, Tensor: _leaf, Delta: _leaf, Mask: _leaf,
    Shift: _leaf, Product: _product, Sum: _sum, Power: _power, Compare: _compare, Call: _call,
    MatrixCall: _matrix_call, Reduce: _reduce,
}


# ---------------------------------------------------------------- fields


def _nodes(node: Expr, name: str, values, empty: str | None = None) -> tuple[Expr, ...]:
    """A tuple of expression nodes, at least one."""
    if not isinstance(values, tuple):
        raise _refused(f"ic.{type(node).__name__}'s {name} must be a tuple, got {_described(values)}")
    if not values:
        raise _refused(empty or f"ic.{type(node).__name__} of no {name}")
    for value in values:
        if not isinstance(node, Program):
            _expression(node, name, value)
    return values


def _expression(node: Expr, name: str, value) -> Expr:
    if isinstance(value, Expr) and not isinstance(value, (Equation, Program)):
        return value
    hint = f": write ic.Number({value!r})" if isinstance(value, numbers.Real) else ""
    raise _refused(f"ic.{type(node).__name__}'s {name} holds {_described(value)}, not an expression node{hint}")


def _indices(node: Expr, name: str, values) -> tuple[str, ...]:
    _a_tuple(node, name, values, "indices")
    for value in values:
        _index(node, name, value)
    return values


def _a_tuple(node: Expr, name: str, values, what: str) -> None:
    if not isinstance(values, tuple):
        spelled = f": write {tuple(values)!r}" if isinstance(values, (str, list)) else ""
        raise _refused(f"ic.{type(node).__name__}'s {name} must be a tuple of {what}, got {_described(values)}{spelled}")


def _is_index(value) -> bool:
    return isinstance(value, str) and bool(is_letter_index(value) or is_index_name(value) or _MACHINE.fullmatch(value))


def _index(node: Expr, name: str, value) -> None:
    if not _is_index(value):
        raise _refused(f"ic.{type(node).__name__}'s {name} holds {value!r}, which is not an index: a letter with "
                       f"optional digits (i, μ, k1) or a name (batch)")


_FIELD_TYPES = {  # a leaf's fields, and what each must be, before it can be printed and read back
    Tensor: {"name": str, "indices": "indices", "derivs": "derivs"},
    Delta: {"left": "indices", "right": "indices"},
}  # a mask's and a shifted δ's fields are checked by check_mask and check_shift


def _field_types(node: Expr) -> str | None:
    for name, kind in _FIELD_TYPES.get(type(node), {}).items():
        value = getattr(node, name)
        if kind in ("indices", "derivs"):
            _a_tuple(node, name, value, kind)
        if kind == "indices":
            ok = all(isinstance(v, str) for v in value)
        elif kind == "derivs":
            ok = all(
                isinstance(d, Deriv) and isinstance(d.indices, tuple) and all(isinstance(i, str) for i in d.indices)
                and isinstance(d.wrt, (str, type(None))) for d in value)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            return f"has {name}={value!r}: the notation cannot write that"
    return None


_MACHINE = re.compile(r"\S*[#~]\S*|<[0-9]+>")  # the routes' own letters and names


def _names(leaf: Expr) -> tuple[str, ...]:
    """The names a leaf holds: a tensor's, and those its derivatives are taken by."""
    if isinstance(leaf, Tensor):
        return (leaf.name,) + tuple(d.wrt for d in leaf.derivs if d.wrt)
    return ()


def _machine_words(leaf: Expr) -> str | None:
    """Why a leaf that holds the routes' own letters or names is not one they make."""
    bad = [n for n in _names(leaf) if not n or any(c.isspace() for c in n)]
    bad += [i for i in leaf.all_indices if not _is_index(i)]
    return f"holds {bad[0]!r}, which is neither an index nor a name" if bad else None


@lru_cache(maxsize=4096)
def _reads_back(leaf: Expr) -> str | None:
    """Why `leaf` is not what its printed text reads as, or None where it is."""
    names = frozenset(i for i in leaf.all_indices if is_index_name(i))  # the printer declares them
    try:
        text = str(leaf)
        read = parse(text, check=False, names=names)
    except IndexCalcError as err:
        return f"cannot be written in the notation ({str(err).splitlines()[0]})"
    except Exception as err:  # noqa: BLE001 - a printer meeting what no parse makes: refused all the same
        return f"cannot be written in the notation ({type(err).__name__}: {err})"
    if read != leaf:
        return f"prints as {text!r}, which the notation reads as {_described(read)}"
    return None


def _described(value) -> str:
    """A node by its class and fields (its printed form may be what is wrong), anything
    else as every error shows a value (errors.kind_of: its type and a short repr)."""
    if isinstance(value, Expr):
        shown = ", ".join(f"{f.name}={getattr(value, f.name)!r}" for f in fields(value)
                          if f.compare and isinstance(getattr(value, f.name), (str, int, float, tuple, type(None))))
        return f"ic.{type(value).__name__}({shown})"
    return kind_of(value)


def _refused(message: str) -> IndexNotationError:
    return IndexNotationError(f"a tree built in Python holds what the notation cannot write: {message}")


CHECKS["tree"] = check_tree
