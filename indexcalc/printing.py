"""Printers: comma notation (ASCII, which parses back, or Unicode), LaTeX, einsum specs.

The plain printer is the parser run backwards: for every tree the parser can produce,
`parse(plain(tree)) == tree`. That is why a divisor prints as `/ b` only where it is not
the first factor, and why `-x` and `-1 (a b)` are told apart.

An index summed over more than two factors is legal but easy to misread as a dot
product, so LaTeX underlines the product and names the index, and the einsum listing
notes it.
"""

from __future__ import annotations

import sys
import unicodedata
from contextlib import contextmanager

from . import functions
from .errors import IndexNotationError
from .expr import Call, Delta, Equation, Expr, Number, Power, Product, Program, Reduce, Sum, Tensor, leaf_factors
from .indices import occurrence_counts, free_indices
from .scope import implicit_form

SUM, PRODUCT, NEGATIVE, POWER, ATOM = range(1, 6)

_UNICODE_NAMES = {"sum": "Σ", "delta": "δ"}


def format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _is_negative_lead(node: Expr) -> bool:
    if isinstance(node, Number):
        return node.value < 0 or str(node.value).startswith("-")
    return (
        isinstance(node, Product)
        and isinstance(node.factors[0], Number)
        and format_number(node.factors[0].value).startswith("-")
    )


def _summed_beyond_two(node: Expr, fixed: frozenset[str]) -> list[tuple[str, int]]:
    try:
        counts = occurrence_counts(node, fixed)
    except IndexNotationError:
        return []  # broken index rules: no mark; evaluation names the problem
    return [(i, n) for i, n in counts.items() if n > 2 and i not in fixed]


class PlainPrinter:
    """Comma notation. With `unicode`, σ/δ/Σ/ŷ for reading (it still parses back)."""

    def __init__(self, unicode: bool = False):
        self.unicode = unicode

    # --- leaves
    def name(self, name: str) -> str:
        if self.unicode:
            if name.endswith("hat") and len(name) == 4:
                return unicodedata.normalize("NFC", name[0] + "\u0302")
            return _UNICODE_NAMES.get(name, name)
        return name

    def function_name(self, func: str) -> str:
        entry = functions.lookup(func)
        return entry.unicode if (self.unicode and entry.unicode) else func

    def subscript(self, node: Tensor) -> str:
        if not node.derivs:
            return "_" + "".join(node.indices) if node.indices else ""
        groups = "".join(d.indices[0] if len(d.indices) == 1 else f"({''.join(d.indices)})" for d in node.derivs)
        text = "_{" + "".join(node.indices) + "," + groups + "}"
        wrts = [d.wrt for d in node.derivs]
        if all(w is not None for w in wrts):
            text += "[" + (wrts[0] if len(set(wrts)) == 1 else ",".join(wrts)) + "]"
        return text

    def number(self, node: Number) -> tuple[str, int]:
        text = format_number(node.value)
        return text, NEGATIVE if text.startswith("-") else ATOM

    def tensor(self, node: Tensor) -> str:
        return self.name(node.name) + self.subscript(node)

    def delta(self, node: Delta) -> str:
        name = "δ" if self.unicode else "delta"
        if len(node.left) == 1:
            return f"{name}_{node.left[0]}{node.right[0]}"
        return f"{name}_({''.join(node.left)})({''.join(node.right)})"

    # --- composites
    def fmt(self, node: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, int]:
        if isinstance(node, Number):
            return self.number(node)
        if isinstance(node, Tensor):
            return self.tensor(node), ATOM
        if isinstance(node, Delta):
            return self.delta(node), ATOM
        if isinstance(node, Sum):
            return self.sum(node, fixed), SUM
        if isinstance(node, Product):
            return self.product(node.factors, fixed)
        if isinstance(node, Power):
            return self.power(node, fixed), POWER
        if isinstance(node, Call):
            return self.call(node, fixed), ATOM
        if isinstance(node, Reduce):
            return self.reduce(node, fixed), ATOM
        if isinstance(node, Equation):
            fixed = frozenset(node.lhs.all_indices)
            return f"{self.tensor(node.lhs)} = {self.fmt(node.rhs, fixed)[0]}", SUM
        if isinstance(node, Program):
            return "\n".join(self.fmt(eq)[0] for eq in node.equations), SUM
        raise TypeError(f"cannot print {type(node).__name__}")

    def wrap(self, node: Expr, fixed: frozenset[str], level: int) -> str:
        text, prec = self.fmt(node, fixed)
        return self.parens(text) if prec < level else text

    def parens(self, text: str) -> str:
        return f"({text})"

    def sum(self, node: Sum, fixed) -> str:
        out = self.wrap(node.terms[0], fixed, PRODUCT - 1 if not isinstance(node.terms[0], Sum) else ATOM)
        for term in node.terms[1:]:
            if isinstance(term, Sum):
                out += " + " + self.parens(self.fmt(term, fixed)[0])
            elif _is_negative_lead(term):
                out += " - " + self.negated_rest(term, fixed)
            else:
                out += " + " + self.fmt(term, fixed)[0]
        return out

    def negated_rest(self, term: Expr, fixed) -> str:
        """Text X such that `-X` parses back to `term` (a term led by a negative number)."""
        if isinstance(term, Number):
            return format_number(-term.value)
        lead, rest = term.factors[0].value, term.factors[1:]
        lone_product = len(rest) == 1 and isinstance(rest[0], Product)
        if lead == -1 and rest and not isinstance(rest[0], Number) and not lone_product:
            return self.joined(rest, fixed)
        return self.joined((Number(-lead),) + rest, fixed)

    def product(self, factors, fixed) -> tuple[str, int]:
        if _is_negative_lead(Product(tuple(factors))):
            return "-" + self.negated_rest(Product(tuple(factors)), fixed), NEGATIVE
        return self.joined(factors, fixed), PRODUCT

    def joined(self, factors, fixed) -> str:
        parts = [self.wrap(factors[0], fixed, POWER if isinstance(factors[0], Power) else ATOM)]
        for factor in factors[1:]:
            if _is_inverse(factor):
                parts.append("/ " + self.wrap(factor.base, fixed, POWER))
            else:
                parts.append(self.wrap(factor, fixed, POWER if isinstance(factor, Power) else ATOM))
        return " ".join(parts)

    def power(self, node: Power, fixed) -> str:
        base = self.wrap(node.base, fixed, ATOM)
        exponent, prec = self.fmt(node.exponent, fixed)
        if prec < NEGATIVE or (prec == NEGATIVE and not isinstance(node.exponent, Number)):
            if not (isinstance(node.exponent, Product) and prec == NEGATIVE and len(node.exponent.factors) == 2
                    and node.exponent.factors[0] == Number(-1.0) and self._is_atom(node.exponent.factors[1])):
                exponent = self.parens(exponent)
        if exponent == "T":  # a power of a scalar named T; bare, `x^T` is refused as a transpose
            exponent = self.parens(exponent)
        return f"{base}^{exponent}"

    def _is_atom(self, node: Expr) -> bool:
        return self.fmt(node)[1] >= POWER

    def call(self, node: Call, fixed) -> str:
        relabel = f"_{node.relabel}" if node.relabel else ""
        return f"{self.function_name(node.func)}{relabel}({self.fmt(node.arg, fixed)[0]})"

    def reduce(self, node: Reduce, fixed) -> str:
        name = "Σ" if (self.unicode and node.op == "sum") else node.op
        inner = fixed | set(node.indices)
        return f"{name}_{''.join(node.indices)}({self.fmt(node.body, inner)[0]})"


def _is_inverse(node: Expr) -> bool:
    return isinstance(node, Power) and node.exponent == Number(-1.0)


class LatexPrinter(PlainPrinter):
    """LaTeX for display: fractions for divisors, Greek letters, `\\hat{y}`."""

    def __init__(self):
        super().__init__(unicode=False)

    @staticmethod
    def symbol(text: str) -> str:
        out = []
        for ch in text:
            name = unicodedata.name(ch, "")
            if name.startswith("GREEK"):
                word = name.split()[-1].lower()
                out.append("\\" + (word.capitalize() if "CAPITAL" in name else word) + " ")
            else:
                out.append(ch)
        return "".join(out).strip()

    def index_list(self, indices) -> str:
        parts = []
        for ix in indices:
            letter, digits = ix[0], ix[1:]
            parts.append(self.symbol(letter) + (f"_{{{digits}}}" if digits else ""))
        return " ".join(parts) if any(len(p) > 1 for p in parts) else "".join(parts)

    def name(self, name: str) -> str:
        if name.endswith("hat") and len(name) == 4:
            return rf"\hat{{{self.symbol(name[0])}}}"
        if len(name) == 1:
            return self.symbol(name)
        if name == "sum":
            return r"\Sigma"
        return rf"\mathrm{{{self.symbol(name)}}}".replace("_", r"\_")

    def subscript(self, node: Tensor) -> str:
        if not node.indices and not node.derivs:
            return ""
        text = self.index_list(node.indices)
        if node.derivs:
            groups = "".join(
                self.index_list(d.indices) if len(d.indices) == 1 else f"({self.index_list(d.indices)})"
                for d in node.derivs
            )
            text += "," + groups
        return f"_{{{text}}}"

    def tensor(self, node: Tensor) -> str:
        """A comma derivative says by what: `loss_{,(gh)}[w]`; one by scalars only is
        written as the notes write it, ∂C/∂b."""
        if node.derivs and all(not d.indices for d in node.derivs) and all(d.wrt for d in node.derivs):
            plain = Tensor(node.name, node.indices)
            order = f"^{{{len(node.derivs)}}}" if len(node.derivs) > 1 else ""
            below = " ".join(rf"\partial {self.name(d.wrt)}" for d in node.derivs)
            return rf"\frac{{\partial{order} {self.tensor(plain)}}}{{{below}}}"
        text = self.name(node.name) + self.subscript(node)
        wrts = list(dict.fromkeys(d.wrt for d in node.derivs if d.wrt))
        return text + rf"\,[{', '.join(self.name(w) for w in wrts)}]" if wrts else text

    def number(self, node: Number) -> tuple[str, int]:
        text, prec = super().number(node)
        if "e" in text:
            mantissa, exp = text.split("e")
            text = rf"{mantissa} \times 10^{{{int(exp)}}}"
        return text, prec

    def delta(self, node: Delta) -> str:
        if len(node.left) == 1:
            return rf"\delta_{{{self.index_list(node.left + node.right)}}}"
        return rf"\delta_{{({self.index_list(node.left)})({self.index_list(node.right)})}}"

    def parens(self, text: str) -> str:
        return rf"\left({text}\right)"

    def joined(self, factors, fixed) -> str:
        numerator = [f for f in factors if not _is_inverse(f)] or [Number(1.0)]
        denominator = [f.base for f in factors if _is_inverse(f)]
        top = r" \, ".join(self.wrap(f, fixed, POWER if isinstance(f, Power) else ATOM) for f in numerator)
        if not denominator or _is_inverse(factors[0]) and len(factors) == 1:
            return top
        bottom = r" \, ".join(self.wrap(f, fixed, POWER) for f in denominator)
        return rf"\frac{{{top}}}{{{bottom}}}"

    def product(self, factors, fixed) -> tuple[str, int]:
        text, prec = super().product(factors, fixed)
        marked = _summed_beyond_two(Product(tuple(factors)), fixed)
        if marked:
            note = ", ".join(rf"{self.index_list((i,))} \text{{ over {n} factors}}" for i, n in marked)
            text = rf"\underbrace{{{text}}}_{{\text{{summed: }} {note}}}"
        return text, prec

    def power(self, node: Power, fixed) -> str:
        base = self.wrap(node.base, fixed, ATOM)
        return f"{{{base}}}^{{{self.fmt(node.exponent, fixed)[0]}}}"

    def call(self, node: Call, fixed) -> str:
        entry = functions.lookup(node.func)
        relabel = f"_{{{self.index_list((node.relabel,))}}}" if node.relabel else ""
        return rf"{entry.latex}{relabel}\left({self.fmt(node.arg, fixed)[0]}\right)"

    def reduce(self, node: Reduce, fixed) -> str:
        inner = fixed | set(node.indices)
        body = self.fmt(node.body, inner)[0]
        op = {"sum": r"\sum", "mean": r"\operatorname{mean}"}.get(node.op, r"\operatorname{" + node.op + "}")
        return rf"{op}_{{{self.index_list(node.indices)}}} \left({body}\right)"

    def fmt(self, node: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, int]:
        if isinstance(node, Equation):
            fixed = frozenset(node.lhs.all_indices)
            return f"{self.tensor(node.lhs)} = {self.fmt(node.rhs, fixed)[0]}", SUM
        if isinstance(node, Program):
            rows = []
            for eq in node.equations:
                fixed = frozenset(eq.lhs.all_indices)
                rows.append(f"{self.tensor(eq.lhs)} &= {self.fmt(eq.rhs, fixed)[0]}")
            return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}", SUM
        return super().fmt(node, fixed)


PRINTING_STACK = 6000  # frames: a derivative of text nested MAX_NESTING deep runs deeper still


@contextmanager
def _stack_for_printing():
    """Room on Python's stack for the printers, which recurse a few frames per level of
    the tree: what diff makes of a formula nested as deep as the parser allows is deeper
    than it, and must print (Python 3.11 keeps Python-to-Python calls off the C stack)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, PRINTING_STACK))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def plain(node: Expr, unicode: bool = False) -> str:
    with _stack_for_printing():
        return PlainPrinter(unicode).fmt(implicit_form(node))[0]


def latex(node: Expr) -> str:
    with _stack_for_printing():
        return LatexPrinter().fmt(implicit_form(node))[0]


def einsum_specs(node: Expr) -> list[str]:
    """One line per contraction: `einsum("ij,j->i", w, x)`, inner contractions first.

    Operands that are not plain tensors are shown as their formula in brackets. Indices
    longer than one character are given einsum letters, and the mapping is shown. In an
    equation every output lists the left-hand side's indices in its order, so the last
    line is the array the equation defines (`y_ji = w_ij` is `einsum("ij->ji", w)`).
    """
    lines: list[str] = []
    with _stack_for_printing():
        _collect_specs(implicit_form(node), frozenset(), lines, ())
    return lines


def _in_order(indices, order: tuple[str, ...]) -> tuple[str, ...]:
    """`indices` with those of `order` first, in its order; the others as they were."""
    return tuple(sorted(indices, key=lambda i: order.index(i) if i in order else len(order)))


def _collect_specs(node: Expr, fixed: frozenset[str], lines: list[str], order: tuple[str, ...]) -> None:
    if isinstance(node, Program):
        for eq in node.equations:
            _collect_specs(eq, fixed, lines, order)
        return
    if isinstance(node, Equation):
        start = len(lines)
        order = node.lhs.all_indices
        _collect_specs(node.rhs, frozenset(order), lines, order)
        for k in range(start, len(lines)):
            lines[k] = f"{node.lhs.name}: {lines[k]}"
        return
    if isinstance(node, Reduce):
        inner = fixed | set(node.indices)
        if _is_plain(node.body):  # sum_j(w_ji): w itself is the operand
            operand = (_operand_label(node.body), node.body.all_indices)
        else:
            _collect_specs(node.body, inner, lines, order)
            operand = (f"[{plain(node.body)}]", _in_order(free_indices(node.body, inner), order))
        out = [i for i in _in_order(operand[1], order) if i not in node.indices]
        lines.append(_spec_line([operand], out, fixed, node.op))
        return
    if isinstance(node, Tensor) and node.all_indices != _in_order(node.all_indices, order) and _is_plain(node):
        # a transpose: y_ji = w_ij, or a term of y_ji = w_ij + v_ji
        lines.append(_spec_line([(_operand_label(node), node.all_indices)], _in_order(node.all_indices, order), fixed, None))
        return
    if isinstance(node, (Product, Tensor)) and (isinstance(node, Product) or not _is_plain(node)):
        operands, scale = [], 1.0
        factors = list(leaf_factors(node)) if isinstance(node, Product) else [node]
        for factor in factors:
            if isinstance(factor, Number):
                scale *= factor.value
            elif isinstance(factor, (Tensor, Delta)):
                operands.append((_operand_label(factor), factor.all_indices))
            else:
                _collect_specs(factor, fixed, lines, order)
                operands.append((f"[{plain(factor)}]", _in_order(free_indices(factor, fixed), order)))
        out = _in_order(free_indices(node, fixed), order)
        if len(operands) > 1 or any(tuple(ix) != tuple(out) for _, ix in operands):
            lines.append(_spec_line(operands, out, fixed, None, node, scale))
        return
    for child in node.children():
        _collect_specs(child, fixed, lines, order)


def _is_plain(node: Expr) -> bool:
    """A tensor with no index twice (not a trace or diagonal, `m_ii`)."""
    return isinstance(node, Tensor) and len(set(node.all_indices)) == len(node.all_indices)


def _operand_label(factor: Expr) -> str:
    return factor.name if isinstance(factor, Tensor) and not factor.derivs else plain(factor)


def _spec_line(operands, out, fixed, reduction, product=None, scale=1.0) -> str:
    from opt_einsum import get_symbol

    letters: dict[str, str] = {}
    for ix in [i for _, ix in operands for i in ix] + list(out):
        if ix not in letters:
            letters[ix] = ix if (len(ix) == 1 and ix.isascii() and ix not in letters.values()) else None
    taken = {v for v in letters.values() if v}
    k = 0
    for ix, sym in letters.items():
        if sym is None:
            while get_symbol(k) in taken:
                k += 1
            letters[ix] = get_symbol(k)
            taken.add(letters[ix])
    spec = ",".join("".join(letters[i] for i in ix) for _, ix in operands) + "->" + "".join(letters[i] for i in out)
    line = f'einsum("{spec}", {", ".join(name for name, _ in operands)})'
    if scale != 1.0:
        line = f"{format_number(scale)} * {line}"
    notes = []
    if reduction == "mean":
        notes.append("then divide by the size of the reduced index")
    renamed = [f"{ix}={sym}" for ix, sym in letters.items() if ix != sym]
    if renamed:
        notes.append("letters: " + " ".join(renamed))
    if product is not None:
        for i, n in _summed_beyond_two(product, fixed):
            notes.append(f"{i} summed over {n} factors")
    return line + ("  # " + "; ".join(notes) if notes else "")
