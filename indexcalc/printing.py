"""Printers: comma notation (ASCII, which parses back, or Unicode), LaTeX, einsum specs.

The plain printer is the parser run backwards: for every tree the parser can produce,
`parse(plain(tree)) == tree`. That is why a divisor prints as `/ b` only where it is not
the first factor, and why `-x` and `-1 (a b)` are told apart.

Index lists follow the parser's reading of subscripts: letters run together (`w_ij`);
a list with a named index is spaced in braces (`W_{out in}`), and so is a run of letters
that would spell a name of the same text (`x_{i n}` beside `W_{out in}`). A name that
stands alone everywhere it occurs (`mean_{batch}(...)`) would read as letters, so the
text then starts with a declaration, `index batch`.

The "notes" style writes a derivative of an elementwise function next to its δ as the
notes' Jacobian, `σ'(u_i) δ_im` as `σ_{i,m}(u)`, wherever that reads back to the same
product.

An index summed over more than two factors is legal but easy to misread as a dot
product, so LaTeX underlines the product and names the index, and the einsum listing
notes it.
"""

from __future__ import annotations

import itertools
import sys
import threading
import unicodedata

from . import functions, matrices
from .errors import IndexCalcError, IndexNotationError
from .expr import (
    MATRIX_REDUCTIONS, Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce,
    PRINTERS, Shift, Sum, Tensor, leaf_factors,
)
from .indices import free_indices, index_names, occurrence_counts
from .tokens import is_letter_index, superscripted
from .scope import implicit_form

SUM, PRODUCT, NEGATIVE, POWER, ATOM = range(1, 6)

_UNICODE_NAMES = {"sum": "Σ", "delta": "δ"}
STYLES = ("default", "notes")  # notes: σ'(u_i) δ_im written σ_{i,m}(u), as the notes write it
_PLAIN_COMPARISONS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
_UNICODE_COMPARISONS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}
_LATEX_COMPARISONS = {"<": "<", "<=": r"\le", ">": ">", ">=": r"\ge", "==": "=", "!=": r"\ne"}


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

    def __init__(self, unicode: bool = False, style: str = "default", names: frozenset[str] = frozenset()):
        if style not in STYLES:
            raise IndexCalcError(f"unknown printing style {style!r}: one of {', '.join(STYLES)}")
        self.unicode = unicode
        self.notes = style == "notes"
        self.names = names  # the named indices of what is printed: a run of letters must not spell one
        self.lone: set[str] = set()  # names printed alone in a subscript (or a bracket)
        self.introduced: set[str] = set()  # names printed beside another index

    def written(self, indices) -> tuple[str, bool]:
        """An index list as the parser reads it back, and whether it needs braces:
        `ij`; `out in` or `i n` (where `in` is a name); `batch` alone, recorded so that
        the text declares it if it stands alone everywhere."""
        indices = tuple(indices)
        if all(is_letter_index(i) for i in indices):
            joined = "".join(indices)
            return (" ".join(indices), True) if len(indices) > 1 and joined in self.names else (joined, False)
        if len(indices) == 1:
            self.lone.add(indices[0])
        else:
            self.introduced.update(i for i in indices if not is_letter_index(i))
        return " ".join(indices), True

    def subscript_of(self, indices) -> str:
        """`_ij`, `_{out in}` or "" for no index."""
        if not indices:
            return ""
        text, braced = self.written(indices)
        return f"_{{{text}}}" if braced else f"_{text}"

    def declarations(self) -> str:
        """The line that makes lone names read back as names, or ""."""
        needed = sorted(self.lone - self.introduced)
        if not needed:
            return ""
        return ("index " if len(needed) == 1 else "indices ") + " ".join(needed) + "\n"

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
            if not node.indices and "_" in node.name:
                return "_{}"  # w_new alone reads as w with the indices n, e, w
            return self.subscript_of(node.indices)
        text = "_{" + self.written(node.indices)[0] + "," + self.deriv_groups(node.derivs) + "}"
        wrts = [d.wrt for d in node.derivs]
        if all(w is not None for w in wrts):
            text += "[" + (wrts[0] if len(set(wrts)) == 1 else ",".join(wrts)) + "]"
        return text

    def deriv_groups(self, derivs) -> str:
        """`(gh)k`: a group in parentheses per derivative by several indices; the
        derivatives by one index each run together, as one index list (`ij`, `out in`)."""
        parts: list[str] = []
        run: list[str] = []
        for d in derivs:
            if len(d.indices) == 1:
                run.append(d.indices[0])
                continue
            if run:
                parts.append(self.written(run)[0])
                run = []
            parts.append(f"({self.written(d.indices)[0]})")
        if run:
            parts.append(self.written(run)[0])
        named = any(not is_letter_index(i) for d in derivs for i in d.indices)
        return (" " if named else "").join(parts)

    def number(self, node: Number) -> tuple[str, int]:
        text = format_number(node.value)
        return text, NEGATIVE if text.startswith("-") else ATOM

    def tensor(self, node: Tensor) -> str:
        if self.unicode and _partial_reads_back(node):
            return self.partial(node)
        return self.name(node.name) + self.subscript(node)

    def partial(self, node: Tensor) -> str:
        """`∂C/∂b`, `∂²C/∂a∂b`, `∂²C/∂b²`: a derivative by scalars as the notes write it
        (the tokenizer reads it back as `C_{,()()}[a,b]`, the names in the order written)."""
        order = len(node.derivs)
        below = ""
        for wrt, run in itertools.groupby(d.wrt for d in node.derivs):
            count = len(list(run))
            below += f"∂{self.name(wrt)}" + (superscripted(count) if count > 1 else "")
        above = f"∂{superscripted(order) if order > 1 else ''}"
        return f"{above}{self.name(node.name)}{self.subscript_of(node.indices)}/{below}"

    def delta(self, node: Delta) -> str:
        name = "δ" if self.unicode else "delta"
        if len(node.left) == 1:
            return name + self.subscript_of(node.left + node.right)
        return f"{name}_({self.written(node.left)[0]})({self.written(node.right)[0]})"

    def shift(self, node: Shift) -> str:
        """`δ_{p(i+k)}`: the index, then the shifted form it equals."""
        name = "δ" if self.unicode else "delta"
        return f"{name}_{{{self.items([node.index, node])}}}"

    def shifted(self, tensor: Tensor, forms: dict[str, Shift]) -> str:
        """`x_{nd(i+k)}`: the tensor with each index a Shift stands for written as its form."""
        return self.name(tensor.name) + "_{" + self.items([forms.get(i, i) for i in tensor.indices]) + "}"

    def items(self, items: list) -> str:
        """Indices and shifted forms (Shifts) in one subscript, as the parser reads them:
        run together where all are letters (`nd(i+k)`), else spaced (`batch c (i + k)`)."""
        letters = [i for item in items for i in ((t for _, t in item.terms) if isinstance(item, Shift) else (item,))]
        runs, run = [], ""
        for item in items + [None]:
            if isinstance(item, str):
                run += item
            elif run:
                runs.append(run)
                run = ""
        spaced = not all(is_letter_index(i) for i in letters) or any(r in self.names for r in runs if len(r) > 1)
        parts = [self.form(item, spaced) if isinstance(item, Shift) else item for item in items]
        if spaced:
            self.introduced.update(i for i in letters if not is_letter_index(i))
            return " ".join(parts)
        return "".join(parts)

    def form(self, node: Shift, spaced: bool) -> str:
        """`(2i+k-1)`, or `(2 batch + k - 1)` where a name is among the letters."""
        parts = [(coef, self.index_symbol(letter)) for coef, letter in node.terms]
        if node.offset:
            parts.append((node.offset, ""))
        gap = " " if spaced else ""
        text = ""
        for n, (coef, letter) in enumerate(parts):
            magnitude = abs(coef)
            body = (str(magnitude) + (gap if letter and not is_letter_index(letter) else "") if magnitude != 1 or not letter
                    else "") + letter
            sign = ("-" if coef < 0 else "") if n == 0 else f"{gap}{'-' if coef < 0 else '+'}{gap}"
            text += sign + body
        return f"({text})"

    def index_symbol(self, index: str) -> str:
        return index

    def mask(self, node: Mask) -> str:
        """`[j <= i]`, `[j <= i + 2]`, `[i >= 1]`: the indices as they are named."""
        for index in node.all_indices:
            self.written((index,))  # a name in a bracket reads as an index only if known
        right = node.right if node.right is not None else format_number(node.offset)
        if node.right is not None and node.offset:
            right += f" {'+' if node.offset > 0 else '-'} {abs(node.offset)}"
        return f"[{node.left} {self.comparison(node.op)} {right}]"

    def comparison(self, op: str) -> str:
        return (_UNICODE_COMPARISONS if self.unicode else _PLAIN_COMPARISONS)[op]

    def compare(self, node: Compare, fixed) -> str:
        sides = [self.side(s, fixed) for s in (node.left, node.right)]
        return f"[{sides[0]} {self.comparison(node.op)} {sides[1]}]"

    def side(self, node: Expr, fixed) -> str:
        """One side of a comparison of values, in parentheses where the bracket would
        read it as an index side (`(a)` for a scalar named a, `(i + 1)`)."""
        text = self.fmt(node, fixed)[0]
        return self.parens(text) if _reads_as_index(node, self.names) else text

    # --- composites
    def fmt(self, node: Expr, fixed: frozenset[str] = frozenset()) -> tuple[str, int]:
        if isinstance(node, Number):
            return self.number(node)
        if isinstance(node, Tensor):  # ∂C/∂b is written in parentheses as a power's base
            return self.tensor(node), POWER if self.unicode and _partial_reads_back(node) else ATOM
        if isinstance(node, Delta):
            return self.delta(node), ATOM
        if isinstance(node, Shift):
            return self.shift(node), ATOM
        if isinstance(node, Sum):
            return self.sum(node, fixed), SUM
        if isinstance(node, Product):
            return self.product(node.factors, fixed)
        if isinstance(node, Power):
            return self.power(node, fixed), POWER
        if isinstance(node, Call):
            return self.call(node, fixed), ATOM
        if isinstance(node, MatrixCall):
            return self.matrix_call(node, fixed), ATOM
        if isinstance(node, Reduce):
            return self.reduce(node, fixed), ATOM
        if isinstance(node, Mask):
            return self.mask(node), ATOM
        if isinstance(node, Compare):
            return self.compare(node, fixed), ATOM
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
        forms = _shifted_pairs(factors, fixed)
        if forms and len(factors) == 1 + sum(len(f) for f in forms.values()):
            return self.joined(factors, fixed), ATOM  # x_{(i+1)} alone: one tensor as written
        return self.joined(factors, fixed), PRODUCT

    def joined(self, factors, fixed) -> str:
        jacobians = _jacobian_pairs(factors, fixed) if self.notes else {}
        paired = {delta for delta, _, _ in jacobians.values()}
        forms = _shifted_pairs(factors, fixed)
        paired |= {n for shifts in forms.values() for n in shifts}
        parts = []
        for k, factor in enumerate(factors):
            if k in paired:
                continue
            if k in forms:
                text = self.shifted(factor, {factors[n].index: factors[n] for n in forms[k]})
            elif k in jacobians:
                text = self.jacobian(factor, *jacobians[k][1:], fixed)
            elif _is_inverse(factor) and parts:
                text = "/ " + self.wrap(factor.base, fixed, POWER)
            else:
                text = self.wrap(factor, fixed, POWER if isinstance(factor, Power) else ATOM)
            parts.append(text)
        return " ".join(parts)

    def jacobian(self, call: Call, i: str, m: str, fixed) -> str:
        """`σ_{i,m}(u)` for σ'(u_i) δ_im."""
        own, by = self.written((i,))[0], self.written((m,))[0]
        return f"{self.function_name(call.func[:-1])}_{{{own},{by}}}({self.fmt(call.arg, fixed)[0]})"

    def power(self, node: Power, fixed) -> str:
        base = self.wrap(node.base, fixed, ATOM)
        exponent, prec = self.fmt(node.exponent, fixed)
        if prec < NEGATIVE or (prec == NEGATIVE and not isinstance(node.exponent, Number)):
            if not (isinstance(node.exponent, Product) and prec == NEGATIVE and len(node.exponent.factors) == 2
                    and node.exponent.factors[0] == Number(-1.0) and self._is_atom(node.exponent.factors[1])):
                exponent = self.parens(exponent)
        if exponent == "T" or exponent.startswith("∂"):  # bare, `x^T` is a transpose, `x^∂C/∂b` a fraction
            exponent = self.parens(exponent)
        return f"{base}^{exponent}"

    def _is_atom(self, node: Expr) -> bool:
        return self.fmt(node)[1] >= POWER

    def call(self, node: Call, fixed) -> str:
        relabel = self.subscript_of((node.relabel,)) if node.relabel else ""
        return f"{self.function_name(node.func)}{relabel}({self.fmt(node.arg, fixed)[0]})"

    def reduce(self, node: Reduce, fixed) -> str:
        name = "Σ" if (self.unicode and node.op == "sum") else node.op
        inner = fixed | set(node.indices)
        subscript = "" if _pair_implied(node, fixed) else self.subscript_of(node.indices)
        return f"{name}{subscript}({self.fmt(node.body, inner)[0]})"

    def matrix_call(self, node: MatrixCall, fixed) -> str:
        return f"{node.func}{self.subscript_of(node.relabel)}({self.fmt(node.arg, fixed)[0]})"


def by_scalars(node: Tensor) -> bool:
    """Whether `node` is a derivative by scalars only, each named (`C_{,()}[b]`), which
    the notes write ∂C/∂b."""
    return bool(node.derivs) and all(not d.indices and d.wrt for d in node.derivs)


def _partial_reads_back(node: Tensor) -> bool:
    """Whether ∂C/∂b writes `node` so that it reads back: a derivative by scalars whose
    names hold no '_' (∂C/∂w_g would be by an entry of w), of a tensor whose name holds
    none either unless its indices follow (∂w_new/∂b is w with the indices n, e, w)."""
    return (by_scalars(node) and all("_" not in d.wrt for d in node.derivs)
            and ("_" not in node.name or bool(node.indices)))


def _pair_implied(node: Reduce, fixed: frozenset[str]) -> bool:
    """Whether `det(A_kl)` reads back as this det_kl(...): its pair is its body's two
    free indices beside those fixed, in that order (else the pair is written, det_kl)."""
    if node.op not in MATRIX_REDUCTIONS:
        return False
    try:
        free = free_indices(node.body, fixed - set(node.indices))
    except IndexCalcError:
        return False
    return tuple(i for i in free if i not in fixed) == tuple(node.indices)


def _reads_as_index(node: Expr, names: frozenset[str]) -> bool:
    """Whether a side of a comparison of values, printed bare, would read as an index side
    or hold a bare index word outside parentheses (`a`, `i + 1`, `x_i - a`)."""
    if isinstance(node, Tensor):
        return not node.indices and not node.derivs and (is_letter_index(node.name) or node.name in names)
    if isinstance(node, (Sum, Product)):
        parts = node.terms if isinstance(node, Sum) else node.factors
        return any(_reads_as_index(p, names) for p in parts if not isinstance(p, Number))
    if isinstance(node, Power):
        return _reads_as_index(node.base, names) or _reads_as_index(node.exponent, names)
    return False


def _primed_function(call: Call) -> str | None:
    """"sigma" for a call of sigma' (the derivative entry of sigma), else None."""
    base = functions.lookup(call.func[:-1]) if call.func.endswith("'") else None
    if base is None:
        return None
    slot = Tensor("u")
    return base.name if base.derivative(slot) == Call(call.func, slot) else None


def _carried_indices(call: Call, fixed: frozenset[str]) -> tuple[str, ...]:
    """The indices i for which `f_i(arg)` reads as this call: its relabelling, or the
    one free index of its argument beside those fixed, or (none such) the fixed ones it
    carries (`σ_i(w_ik x_k)` with i fixed relabels nothing)."""
    if call.relabel:
        return (call.relabel,)
    try:
        free = free_indices(call.arg, fixed)
    except IndexCalcError:
        return ()
    candidates = tuple(i for i in free if i not in fixed)
    return candidates if len(candidates) == 1 else () if candidates else free


def _jacobian_pairs(factors, fixed: frozenset[str]) -> dict[int, tuple[int, str, str]]:
    """Which factors print as the notes' Jacobian: {position of f'(u): (position of its
    δ, i, m)}, for a call of a derivative entry carrying i beside a δ pairing i with m,
    where i is fixed or carried by a third factor, so that σ_{i,m}(u) read back (as
    σ'_i(u) δ_im) is this product and not a sum of it over i."""
    try:
        counts = occurrence_counts(Product(tuple(factors)), fixed)
    except IndexCalcError:
        return {}
    pairs: dict[int, tuple[int, str, str]] = {}
    taken: set[int] = set()
    for k, call in enumerate(factors):
        if not isinstance(call, Call) or _primed_function(call) is None:
            continue
        carried = _carried_indices(call, fixed)
        for n, delta in enumerate(factors):
            if n in taken or not isinstance(delta, Delta) or len(delta.left) != 1 or delta.left == delta.right:
                continue
            i = next((x for x in delta.all_indices if x in carried), None)
            if i is not None and (i in fixed or counts[i] > 2):
                pairs[k] = (n, i, delta.right[0] if delta.left[0] == i else delta.left[0])
                taken.add(n)
                break
    return pairs


def _shifted_pairs(factors, fixed: frozenset[str]) -> dict[int, list[int]]:
    """Which factors print as shifted indices: {position of a tensor: positions of its
    Shifts}, for a Shift δ_{p(...)} whose p a tensor (not a comma derivative) carries once
    and nothing else in the product does, summed there (not fixed): `x_{ndp} δ_{p(i+k)}`
    reads back from `x_{nd(i+k)}` as the same product."""
    shifts = [n for n, f in enumerate(factors) if isinstance(f, Shift)]
    if not shifts:
        return {}
    try:
        counts = occurrence_counts(Product(tuple(factors)), fixed)
    except IndexCalcError:
        return {}
    pairs: dict[int, list[int]] = {}
    for n in shifts:
        p = factors[n].index
        if p in fixed or counts[p] != 2 or p in (letter for _, letter in factors[n].terms):
            continue
        k = next((k for k, f in enumerate(factors) if isinstance(f, Tensor) and p in f.all_indices), None)
        # (a comma derivative's own indices are plain: h_{ncp,(efg)}[x] δ_{p(2i+k)} stays so)
        if k is not None and not factors[k].derivs and factors[k].indices.count(p) == 1:
            pairs.setdefault(k, []).append(n)
    return pairs


def _is_inverse(node: Expr) -> bool:
    return isinstance(node, Power) and node.exponent == Number(-1.0)


class LatexPrinter(PlainPrinter):
    """LaTeX for display: fractions for divisors, Greek letters, `\\hat{y}`."""

    def __init__(self, style: str = "default", names: frozenset[str] = frozenset()):
        super().__init__(unicode=False, style=style, names=names)

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
        """`ij`, `i_{4} j`, `\\mathrm{out}\\,\\mathrm{in}`: a name upright, and thin spaces
        between the indices of a list with a name (or spelling one)."""
        parts = [self.index_symbol(ix) for ix in indices]
        if any(not is_letter_index(ix) for ix in indices) or len(indices) > 1 and "".join(indices) in self.names:
            return r"\,".join(parts)
        return " ".join(parts) if any(len(p) > 1 for p in parts) else "".join(parts)

    def index_symbol(self, index: str) -> str:
        if not is_letter_index(index):
            return rf"\mathrm{{{self.symbol(index)}}}"
        letter, digits = index[0], index[1:]
        return self.symbol(letter) + (f"_{{{digits}}}" if digits else "")

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
            groups = [
                self.index_list(d.indices) if len(d.indices) == 1 else f"({self.index_list(d.indices)})"
                for d in node.derivs
            ]
            named = any(not is_letter_index(i) for d in node.derivs for i in d.indices)
            text += "," + (r"\," if named else "").join(groups)
        return f"_{{{text}}}"

    def tensor(self, node: Tensor) -> str:
        """A comma derivative says by what: `loss_{,(gh)}[w]`; one by scalars only is
        written as the notes write it, ∂C/∂b."""
        if by_scalars(node):
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

    def shift(self, node: Shift) -> str:
        return rf"\delta_{{{self.items([node.index, node])}}}"

    def shifted(self, tensor: Tensor, forms: dict[str, Shift]) -> str:
        return self.name(tensor.name) + "_{" + self.items([forms.get(i, i) for i in tensor.indices]) + "}"

    def items(self, items: list) -> str:
        """Indices and shifted forms: `nd(i+k)`, or spaced with names upright."""
        parts = [self.form(item, False) if isinstance(item, Shift) else self.index_symbol(item) for item in items]
        named = any(not is_letter_index(i) for i in items if isinstance(i, str))
        plain_long = any(len(p) > 1 for p, i in zip(parts, items) if isinstance(i, str))
        return (r"\," if named else " " if plain_long else "").join(parts)

    def delta(self, node: Delta) -> str:
        if len(node.left) == 1:
            return rf"\delta_{{{self.index_list(node.left + node.right)}}}"
        return rf"\delta_{{({self.index_list(node.left)})({self.index_list(node.right)})}}"

    def parens(self, text: str) -> str:
        return rf"\left({text}\right)"

    def joined(self, factors, fixed) -> str:
        jacobians = _jacobian_pairs(factors, fixed) if self.notes else {}
        paired = {delta for delta, _, _ in jacobians.values()}
        forms = _shifted_pairs(factors, fixed)
        paired |= {n for shifts in forms.values() for n in shifts}
        numerator = [(k, f) for k, f in enumerate(factors) if not _is_inverse(f) and k not in paired]
        numerator = numerator or [(-1, Number(1.0))]
        denominator = [f.base for f in factors if _is_inverse(f)]
        top = r" \, ".join(
            self.jacobian(f, *jacobians[k][1:], fixed) if k in jacobians
            else self.shifted(f, {factors[n].index: factors[n] for n in forms[k]}) if k in forms
            else self.wrap(f, fixed, POWER if isinstance(f, Power) else ATOM)
            for k, f in numerator
        )
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

    def jacobian(self, call: Call, i: str, m: str, fixed) -> str:
        entry = functions.lookup(call.func[:-1])
        subscript = f"{self.index_list((i,))},{self.index_list((m,))}"
        return rf"{entry.latex}_{{{subscript}}}\left({self.fmt(call.arg, fixed)[0]}\right)"

    def mask(self, node: Mask) -> str:
        right = self.index_list((node.right,)) if node.right is not None else format_number(node.offset)
        if node.right is not None and node.offset:
            right += f" {'+' if node.offset > 0 else '-'} {abs(node.offset)}"
        return f"[{self.index_list((node.left,))} {self.comparison(node.op)} {right}]"

    def comparison(self, op: str) -> str:
        return _LATEX_COMPARISONS[op]

    def side(self, node: Expr, fixed) -> str:
        return self.fmt(node, fixed)[0]

    def matrix_call(self, node: MatrixCall, fixed) -> str:
        sub = f"_{{{self.index_list(node.relabel)}}}"
        return matrices.lookup(node.func).latex.format(arg=self.fmt(node.arg, fixed)[0], sub=sub)

    def reduce(self, node: Reduce, fixed) -> str:
        inner = fixed | set(node.indices)
        body = self.fmt(node.body, inner)[0]
        if node.op in MATRIX_REDUCTIONS:
            sub = "" if _pair_implied(node, fixed) else f"_{{{self.index_list(node.indices)}}}"
            return matrices.lookup(node.op).latex.format(arg=body, sub=sub)
        op = {"sum": r"\sum", "mean": r"\operatorname{mean}", "max": r"\max", "min": r"\min"}.get(
            node.op, r"\operatorname{" + node.op + "}"
        )
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
_RAISING = threading.Lock()


def _make_room_for_printing() -> None:
    """Room on Python's stack for the printers, which recurse a few frames per level of
    the tree: what diff makes of a formula nested as deep as the parser allows is deeper
    than it, and must print (Python 3.11 keeps Python-to-Python calls off the C stack).

    The limit is raised once, when it is lower, and left raised: it is the whole
    process's, and a change while another thread compiles Python (an `ast.parse`, the
    planner's or anyone's) fails that thread's compile with a SystemError (CPython 3.11
    checks the recursion depth an AST walk ends at). Lowering it again after each
    printing changed it twice per call, and threads printing side by side restored one
    another's raised limit, leaving it raised anyway."""
    if sys.getrecursionlimit() < PRINTING_STACK:
        with _RAISING:
            if sys.getrecursionlimit() < PRINTING_STACK:
                sys.setrecursionlimit(PRINTING_STACK)


def plain(node: Expr, unicode: bool = False, style: str = "default", declare: bool = True) -> str:
    """Comma notation that parses back (`unicode`: with σ, δ, Σ, ŷ, ≤); `style="notes"`
    writes σ'(u_i) δ_im as σ_{i,m}(u). A declaration line comes first where a named index
    stands alone in every subscript it has, unless `declare` is false (a piece quoted in a
    message about the user's text, which knows its names)."""
    _make_room_for_printing()
    node = implicit_form(node)
    printer = PlainPrinter(unicode, style, index_names(node))
    body = printer.fmt(node)[0]
    return (printer.declarations() if declare else "") + body


def quoted(node: Expr) -> str:
    """A piece of the user's text as a message quotes it: without the declaration line
    (`index row`) that printing it alone would need, since the text knows its names."""
    return plain(node, declare=False)


def latex(node: Expr, style: str = "default") -> str:
    _make_room_for_printing()
    node = implicit_form(node)
    return LatexPrinter(style, index_names(node)).fmt(node)[0]


def einsum_specs(node: Expr) -> list[str]:
    """One line per contraction: `einsum("ij,j->i", w, x)`, inner contractions first.

    Operands that are not plain tensors are shown as their formula in brackets. Indices
    longer than one character are given einsum letters, and the mapping is shown. In an
    equation every output lists the left-hand side's indices in its order, so the last
    line is the array the equation defines (`y_ji = w_ij` is `einsum("ij->ji", w)`).
    """
    lines: list[str] = []
    _make_room_for_printing()
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
            elif isinstance(factor, (Tensor, Delta, Shift)):
                operands.append((_operand_label(factor), factor.all_indices))
            else:
                _collect_specs(factor, fixed, lines, order)
                label = plain(factor) if isinstance(factor, (Mask, Compare)) else f"[{plain(factor)}]"
                operands.append((label, _in_order(free_indices(factor, fixed), order)))
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
    elif reduction in ("max", "min", "logsumexp"):
        notes.append(f"a {reduction} over the reduced index, not a sum")
    elif reduction in MATRIX_REDUCTIONS:
        notes.append(f"a {reduction} of the matrix over the reduced pair, not a sum")
    renamed = [f"{ix}={sym}" for ix, sym in letters.items() if ix != sym]
    if renamed:
        notes.append("letters: " + " ".join(renamed))
    if product is not None:
        for i, n in _summed_beyond_two(product, fixed):
            notes.append(f"{i} summed over {n} factors")
    return line + ("  # " + "; ".join(notes) if notes else "")


PRINTERS.update(plain=plain, latex=latex, einsum_specs=einsum_specs, quoted=quoted)
