"""Text to expression tree: a recursive-descent parser over indexcalc.tokens' tokens.

The grammar, loosest binding first (juxtaposition, `*` and `/` bind equally, left to
right; `^` and `**` bind tighter and take one factor):

    program  := line (NEWLINE line)*           # '#' starts a comment
    line     := sum ['=' sum] | ('index'|'indices') name (','? name)*
    sum      := ['-'|'+'] product (('+'|'-') product)*
    product  := power (['*'|'/'] signed)*        # juxtaposition is '*'
    signed   := '-' signed | power
    power    := atom [('^'|'**') exponent]
    exponent := '-' exponent | power
    atom     := number | tensor | delta | call | reduction | bracket | '(' sum ')'
    bracket  := '[' side comparison side ']'    # [j <= i + 2] on indices, [x_i > 0] on values

The tokens come from indexcalc.tokens, which reads each head (`w_ij`, `loss_{,(gh)}[w]`,
`δ_(ij)(kl)`) whole and refuses look-alike characters with the spelling meant.

Parentheses, function arguments, reductions and exponents nest at most `MAX_NESTING`
deep: every later stage walks the tree recursively, and a limit refused here with a caret
is better than a RecursionError there. Signs do not nest (`--x` is read in a loop).
"""

from __future__ import annotations

import difflib
import functools
import unicodedata
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable

from . import functions, matrices
from .errors import ArgumentError, IndexCalcError, ParseError, names_argument, read_as_indices
from .expr import (
    Call, Compare, Delta, Deriv, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift, Sum,
    Tensor, leaf_factors, with_children,
)
from .indices import free_indices, occurrence_counts
from .program import check_program
from .tokens import (
    CLOSING, DELTA_NAMES, OPENING, TRANSPOSE_ADVICE, Affine, Head, Token, is_index_name, is_letter_index, tokenize,
    written_subscript,
)


REDUCTION_NAMES = {
    "sum": "sum", "Σ": "sum", "mean": "mean", "logsumexp": "logsumexp", "max": "max", "min": "min",
}
# how a comparison in an Iverson bracket is written → the operator stored (expr.COMPARISONS)
COMPARISON_SPELLINGS = {
    "<=": "<=", "≤": "<=", ">=": ">=", "≥": ">=", "==": "==", "=": "==", "!=": "!=", "≠": "!=", "<": "<", ">": ">",
}
MAX_NESTING = 100  # parentheses, arguments, reductions and exponents, one inside another


def parse(text: str, *, check: bool = True, names: Iterable[str] = ()) -> Expr:
    """Parse text in the notation: an `Equation`, a bare expression, or a `Program` of
    several equations (one per line, `#` comments, `index batch` declaring a name).

    With `check` (the default) the result also obeys the index rules, the same check
    every route applies (`indexcalc.program.check_program`), so that text which would
    be refused later, or read other than written, is refused here with a caret. Pass
    `check=False` for a tree that is completed before it is used (a model file's
    per-sample equations, say). `names` are index names known beforehand, as if
    declared: those of a program that a wrt string refers to (`index_names`)."""
    if not isinstance(text, str):
        raise ParseError(f"expected text to parse, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    read = _remembered if len(text) <= REMEMBERED_TEXT else _parsed
    return read(text, check, _index_names(names))


def _index_names(names) -> frozenset[str]:
    """`names` as parse takes them: one name or an iterable of named indices (`batch`,
    `out`); a lone string is one name, not its letters."""
    names = names_argument(names, "names", 'names=["batch"]')
    for name in names:
        if not is_index_name(name):
            why = ("a letter index needs no naming" if is_letter_index(name)
                   else "a named index is a letter, then letters and digits: batch, out")
            raise ArgumentError(f"names: {name!r} is not an index name ({why})")
    return frozenset(names)


REMEMBERED_TEXT = 2000  # characters; a tree takes about 100 bytes a character


def _parsed(text: str, check: bool, names: frozenset[str]) -> Expr:
    """`parse`'s work on normalized text."""
    result, parser = _read(text, names)
    try:  # the text's matrix functions in the form they are held (the pair named, not guessed again)
        result = matrices.resolve(result)
    except IndexCalcError as err:
        raise err.with_source(text, None) from None
    if check:
        _check(result, text)
        _check_jacobians(result, parser.jacobians, text)
    return result


# A tree never changes, and one text is parsed many times over: by every route of a check,
# by a user's loop of `evaluate(text, arrays)`. The last texts of a program's size are
# remembered (at most 256 x 2000 characters, ~50 MB); a refusal is raised anew each time.
_remembered = functools.lru_cache(maxsize=256)(_parsed)


def _read(text: str, names: Iterable[str] = ()) -> "tuple[Expr, _Parser]":
    """The text's tree as written: matrix functions' pairs not yet resolved, unchecked."""
    parser = _Parser(text, tokenize(text, frozenset(names)))
    try:
        lines = parser.lines()
    except RecursionError:  # the nesting limit comes first unless the caller's stack is deep
        raise parser.error("the expression is nested too deeply to parse") from None
    if not lines:
        raise ParseError("nothing to parse: the text holds no expression", text=text, pos=0)
    if len(lines) == 1:
        return lines[0], parser
    return Program(tuple(_program_lines(lines, text))), parser


def written_letters(text: str) -> dict[str, set[str]]:
    """Each index the text writes, with the indices it is held as (parse renames a matrix
    function's pair onto its subscript: `inv_ij(A_kl)` is held as `inv_ij(A_ij)`, k as i):
    what a tool taking sizes by letter (`indexcalc eval --size k=3`) translates. The text
    must parse."""
    written = _read(unicodedata.normalize("NFC", text))[0]
    held = parse(text, check=False)
    letters: dict[str, set[str]] = {}
    for w, h in zip(written.walk(), held.walk()):
        for a, b in zip(getattr(w, "all_indices", ()), getattr(h, "all_indices", ())):
            letters.setdefault(a, set()).add(b)
    return letters


def _program_lines(lines: list[Expr], text: str) -> list[Equation]:
    defined: set[str] = set()
    for line in lines:
        if not isinstance(line, Equation):
            raise ParseError(
                "in a program of several lines every line must be an equation 'name_ij = ...'",
                text=text,
                pos=_start(line),
            )
        if line.lhs.key in defined:
            # one name, one value: the derivative lines of `diff` refer to names
            err = ParseError(f"{line.lhs.key} is defined twice; give the new value a name of its own",
                             text=text, pos=_start(line.lhs))
            raise err.with_hint(_names_read_as_indices(Program(tuple(lines)), text, err))  # c = 1, c_new = c - 0.1
        defined.add(line.lhs.key)
    return lines


def _check(node: Expr, text: str) -> None:
    """The index rules, by the checker every route uses."""
    try:
        if isinstance(node, Program):
            check_program(node.equations)
        elif isinstance(node, Equation):
            check_program([node])
        else:
            free_indices(node)
    except IndexCalcError as err:
        raise err.with_hint(_names_read_as_indices(node, text, err)).with_source(text, None) from None


def _names_read_as_indices(node: Expr, text: str, err: IndexCalcError) -> str:
    """`c_new`, meant as a scalar, is c with the indices n, e, w: a refusal then speaks of
    indices (or of a tensor c) the user never meant to write. Where the refused line holds
    such a spelling, or another line defines the name the refusal speaks of with one, each
    of its letters found nowhere else on its line (so no index rule asked for them), the
    message gives the other reading too. The names the refusal speaks of are those its
    line reads or defines (`c` read on line 1, before line 2 `c_new = ...` defines c)."""
    line = text.count("\n", 0, err.pos) if err.pos is not None else None
    parts = [(part, [t for t in part.walk() if isinstance(t, Tensor)]) for part in node.lines]
    on_line = {id(part) for part, every in parts
               if line is None or any(t.span and text.count("\n", 0, t.span[0]) == line for t in every)}
    named = {t.name for part, every in parts if id(part) in on_line for t in every}
    for part, every in parts:
        counts = Counter(i for t in every for i in t.all_indices)
        tensors = [t for t in every if t.span]
        if id(part) not in on_line:
            tensors = [part.lhs] if isinstance(part, Equation) and part.lhs.name in named and part.lhs.span else []
        for t in tensors:
            sentence = read_as_indices(text[t.span[0]:t.span[1]], t.name, t.indices)
            if sentence and all(counts[i] == 1 for i in t.indices):
                return sentence
    return ""


def _start(node: Expr) -> int:
    span = getattr(node, "span", None)
    return span[0] if span else 0


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, tokens: tuple[list[Token], frozenset[str]]):
        self.text = text
        self.toks, self.names = tokens
        self.k = 0
        self.depth = 0  # how many parentheses, arguments and exponents enclose the token
        self.jacobians: list[tuple[Call, Token]] = []  # σ_{i,m}(u), checked once scopes are known
        # the products σ_{i,m}(u) reads as, joined into the product around (kept, so no other
        # node takes the id of one)
        self.spliced: dict[int, Product] = {}
        self.used_letters: set[str] | None = None  # the text's letters, once a shifted index asks

    @contextmanager
    def nested(self, opening: Token):
        """One level deeper inside `opening` ('(', a function or reduction, '^')."""
        if self.depth >= MAX_NESTING:
            raise self.error(
                f"the expression nests more than {MAX_NESTING} levels deep (parentheses, function "
                "arguments, reductions and exponents); give an inner part a line of its own", opening
            )
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        return ParseError(message, text=self.text, pos=(tok or self.tok).pos)

    def take(self) -> Token:
        tok = self.tok
        self.k += 1
        return tok

    def at(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def expect(self, op: str, what: str) -> Token:
        if not self.at(op):
            raise self.error(f"expected '{op}' {what}, found {self._describe(self.tok)}")
        return self.take()

    @staticmethod
    def _describe(tok: Token) -> str:
        return {"end": "the end of the text", "newline": "the end of the line"}.get(
            tok.kind, repr(tok.value if tok.kind != "head" else tok.value.name)
        )

    def lines(self) -> list[Expr]:
        out = []
        while self.tok.kind != "end":
            if self.tok.kind == "newline":
                self.take()
                continue
            out.append(self.line())
            if self.tok.kind not in ("newline", "end"):
                raise self.error(self._unexpected(self.tok))
        return out

    def _unexpected(self, tok: Token) -> str:
        if tok.kind == "op" and tok.value in COMPARISON_SPELLINGS:
            return f"unexpected {tok.value!r}: a comparison is written in an Iverson bracket, as in [j <= i] or [x_i > 0]"
        if tok.kind == "op" and tok.value == "]":
            return "unexpected character ']': no '[' is open"
        return f"unexpected {self._describe(tok)}"

    def line(self) -> Expr:
        start = self.tok
        lhs = self.sum()
        if not self.at("="):
            return lhs
        self.take()
        shift = next((f for f in lhs.factors if isinstance(f, Shift)), None) if isinstance(lhs, Product) else None
        if shift is not None and shift.span:
            at = shift.span[0]
            raise ParseError(
                "a shifted index cannot stand on the left-hand side: the left names the axes of the "
                "array it defines, one plain index each (write y_{nci} = x_{nc(i+1)}, not y_{nc(i-1)} = x_{nci})",
                text=self.text, pos=at,
            )
        if not isinstance(lhs, Tensor):
            raise self.error("the left-hand side of '=' must be one tensor, like y_ij", start)
        if len(set(lhs.all_indices)) != len(lhs.all_indices):
            raise self.error(f"the left-hand side {lhs} repeats an index", start)
        if self.tok.kind in ("newline", "end"):
            raise self.error("expected an expression after '='")
        rhs = self.sum()
        if self.at("=", "=="):
            raise self.error("only one '=' per line (a comparison is written in brackets, [i == j])")
        return Equation(lhs, rhs, source=self.text)

    def sum(self) -> Expr:
        start = self.tok.pos
        terms = [self.term()]
        while self.at("+", "-"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Sum(tuple(terms), span=(start, self.tok.pos))

    def term(self) -> Expr:
        return self.after_signs(self.product, "+", "-")

    def after_signs(self, read, *signs: str) -> Expr:
        """`read()` after any run of signs, negated once per '-' (a loop: signs do not nest)."""
        minuses = 0
        while self.at(*signs):
            minuses += self.take().value == "-"
        node = read()
        for _ in range(minuses):
            node = negate(node)
        return node

    def product(self) -> Expr:
        start = self.tok.pos
        factors: list[Expr] = []
        self.factor(factors, self.power())
        while True:
            if self.at("*"):
                self.take()
                self.factor(factors, self.signed())
            elif self.at("/"):
                self.take()
                factors.append(Power(self.signed(), Number(-1.0)))
            elif self.tok.kind in ("num", "head") or self.at("(", "["):
                self.factor(factors, self.power())
            else:
                break
        if len(factors) == 1:
            return factors[0]
        return Product(tuple(factors), span=(start, self.tok.pos))

    def factor(self, factors: list[Expr], node: Expr) -> None:
        """Append a factor; the two factors σ_{i,m}(u) stands for join the product as
        written, `a σ_{i,m}(u) b` being `a σ'_i(u) δ_im b`."""
        if self.spliced.get(id(node)) is node:
            factors.extend(node.factors)
        else:
            factors.append(node)

    def signed(self) -> Expr:
        return self.after_signs(self.power, "-")

    def power(self) -> Expr:
        start = self.tok.pos
        base = self.atom()
        if not self.at("^", "**"):
            return base
        caret = self.take()
        transpose = self.tok
        if transpose.kind == "head" and transpose.value.name == "T" and not transpose.value.has_subscript:
            raise self.error(f"'{caret.value}{transpose.value.name}' reads as a power: {TRANSPOSE_ADVICE}", caret)
        with self.nested(caret):
            exponent = self.after_signs(self.power, "-")
        return Power(base, exponent, span=(start, self.tok.pos))

    def atom(self) -> Expr:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            return Number(tok.value, span=(tok.pos, tok.end))
        if tok.kind == "head":
            self.take()
            return self.head(tok)
        if self.at("["):
            return self.bracket()
        if self.at("("):
            self.take()
            if self.at(")"):
                raise self.error("empty parentheses")
            with self.nested(tok):
                inner = self.sum()
            self.expect(")", "to close the '(' opened earlier")
            return inner
        raise self.error(f"expected a tensor, number or '(' but found {self._describe(tok)}")

    def head(self, tok: Token) -> Expr:
        h: Head = tok.value
        span = (tok.pos, tok.end)
        form = next((i for i in h.indices if isinstance(i, Affine)), None)
        if form is not None and (h.is_call or h.name in REDUCTION_NAMES or functions.lookup(h.name)):
            raise ParseError(
                f"a shifted index stands on a tensor (x_{{nd(i+k)}}) or a δ (δ_{{p(i+k)}}); {h.name}'s "
                f"subscript names the index it relabels or reduces, one plain letter or name", text=self.text,
                pos=form.pos,
            )
        if h.name == "max" and h.is_call and not h.has_subscript:
            return self.maximum(tok)
        if h.name in REDUCTION_NAMES:
            return self.reduction(h, tok)
        matrix = matrices.lookup(h.name)
        if matrix is not None:
            return self.matrix_function(h, tok, matrix)
        function = functions.lookup(h.name)
        if function is not None:
            return self.call(h, tok, function)
        if h.is_call:
            raise self.error(
                f"unknown function '{h.name}'{_did_you_mean(h.name)}; for a product write a space: "
                f"'{h.name} (...)'", tok
            )
        if "'" in h.name:
            raise self.error(
                f"unknown function '{h.name}'{_did_you_mean(h.name)}: a prime marks a function's "
                f"derivative, as in σ'(u), and {TRANSPOSE_ADVICE}", tok
            )
        if h.name in DELTA_NAMES:
            return self.delta(h, tok)
        if h.groups is not None:
            raise self.error(f"grouped indices (ij)(kl) are only for δ, not for {h.name}", tok)
        derivs = tuple(Deriv(ix, h.wrt[n] if h.wrt else None) for n, ix in enumerate(h.derivs))
        if not any(isinstance(i, Affine) for i in h.indices):
            return Tensor(h.name, h.indices, derivs, span=span)
        return self.shifted(h, derivs, span)

    def shifted(self, h: Head, derivs, span) -> Expr:
        """`x_{nd(i+k)}` as `x_{ndp} δ_{p(i+k)}`, p a letter the text does not use, one
        Shift per shifted position; the product joins the one it stands in (as written)."""
        indices, shifts = [], []
        for index in h.indices:
            if isinstance(index, Affine):
                p = self.fresh_letter()
                shifts.append(Shift(p, index.terms, index.offset, span=(index.pos, index.pos + 1)))
                index = p
            indices.append(index)
        node = Product((Tensor(h.name, tuple(indices), derivs, span=span), *shifts), span=span)
        self.spliced[id(node)] = node
        return node

    def fresh_letter(self) -> str:
        """A letter no index, name or tensor of the whole text uses, nor handed out before."""
        if self.used_letters is None:
            used: set[str] = set(self.names)
            for tok in self.toks:
                if tok.kind == "head":
                    h = tok.value
                    used.add(h.name)
                    for index in list(h.indices) + [i for g in h.groups or () for i in g] + [
                            i for d in h.derivs for i in d]:
                        used.update([n for _, n in index.terms] if isinstance(index, Affine) else [index])
            self.used_letters = used
        letter = next(c for c in _fresh_pool() if c not in self.used_letters)
        self.used_letters.add(letter)
        return letter

    def call(self, h: Head, tok: Token, function) -> Expr:
        if not h.is_call:
            raise self.error(f"the function '{h.name}' needs an argument in parentheses", tok)
        jacobian = len(h.indices) == 1 and len(h.derivs) == 1 and len(h.derivs[0]) == 1 and not h.wrt
        if not jacobian and (h.derivs or h.groups is not None or len(h.indices) > 1):
            raise self.error(
                f"a subscripted function takes one index, like σ_i(...), or an index and a comma "
                f"derivative, σ_{{i,m}}(...) (the Jacobian σ'(u_i) δ_im); write its derivative as "
                f"{function.name}'(...)", tok
            )
        self.expect("(", "after the function name")
        if self.at(")"):
            raise self.error(f"'{h.name}' needs an argument")
        with self.nested(tok):
            arg = self.sum()
        self.expect(")", f"to close the argument of '{h.name}'")
        span = (tok.pos, self.toks[self.k - 1].end)
        if jacobian:
            return self.jacobian(function, arg, h.indices[0], h.derivs[0][0], tok, span)
        relabel = h.indices[0] if h.indices else None
        return Call(function.name, arg, relabel, span=span)

    def jacobian(self, function, arg: Expr, i: str, m: str, tok: Token, span) -> Expr:
        """`f_{i,m}(u)`, the notes' Jacobian of an elementwise f: f'(u) relabelled to i
        (as `f_i(u)` relabels), times δ_im: `σ'_i(u) δ_im`."""
        if i == m:
            raise self.error(f"the Jacobian {function.name}_{{{i},{m}}}(...) pairs two different indices", tok)
        slot = Tensor("\0")  # where the argument goes in f'(u)
        derivative = function.derivative(slot)
        calls_of_slot = [n for n in derivative.walk() if isinstance(n, Call) and n.arg == slot]
        if sum(n == slot for n in derivative.walk()) > len(calls_of_slot):
            raise self.error(
                f"{function.name}_{{{i},{m}}}(u) would relabel u itself ({function.name}' is not a function "
                f"of the table); write the product out with u's index i, as in δ_{i}{m} / u_{i}", tok
            )
        if not calls_of_slot:
            raise self.error(
                f"{function.name}_{{{i},{m}}}(u) is 0 wherever it is defined ({function.name} is constant "
                f"there); write 0", tok
            )
        relabelled = _with_calls_relabelled(derivative, slot, arg, i, span)
        own = relabelled.factors if isinstance(relabelled, Product) else (relabelled,)
        node = Product(own + (Delta((i,), (m,)),), span=span)
        call = next((n for n in node.factors if isinstance(n, Call)), None)
        if call is not None:
            self.jacobians.append((call, tok))
        self.spliced[id(node)] = node
        return node

    def matrix_function(self, h: Head, tok: Token, entry) -> Expr:
        """`inv_ij(A_kl)` (a `MatrixCall`, its pair resolved once scopes are known: see
        `matrices.resolve`), `det(A_kl)`, `logdet(...)` or `det_kl(...)` (a reduction over
        the pair, inferred or named)."""
        name = entry.name
        if not h.is_call:
            raise self.error(f"the matrix function '{name}' needs an argument in parentheses, as in "
                             f"{'inv_ij(A_kl)' if not entry.scalar else name + '(A_kl)'}", tok)
        if h.derivs or h.groups is not None or h.wrt:
            raise self.error(f"a matrix function takes no comma derivative or grouped indices: write {name}"
                             f"{'_ij' if not entry.scalar else ''}(...)", tok)
        if entry.scalar and len(h.indices) not in (0, 2):
            raise self.error(
                f"{name} consumes its argument's pair of indices: write {name}(A_kl), or {name}_kl(...) to name "
                f"the pair; {name}{written_subscript(h.indices)}(...) names {len(h.indices)}", tok)
        if not entry.scalar and len(h.indices) != 2:
            given = f"{name}{written_subscript(h.indices)}(...) gives {len(h.indices)}" if h.indices else \
                f"{name}(...) gives none"
            raise self.error(
                f"{name} gives a matrix: its subscript names the two indices its argument's pair is renamed to, "
                f"as in {name}_ij(A_kl) (rows i, columns j); {given}", tok)
        if len(set(h.indices)) != len(h.indices):
            raise self.error(f"{name}{written_subscript(h.indices)}(...) repeats an index", tok)
        self.expect("(", f"after {name}")
        if self.at(")"):
            raise self.error(f"'{name}' needs an argument")
        with self.nested(tok):
            arg = self.sum()
        self.expect(")", f"to close the argument of '{name}'")
        span = (tok.pos, self.toks[self.k - 1].end)
        if entry.scalar:
            return Reduce(name, h.indices, arg, span=span)
        return MatrixCall(name, arg, h.indices, span=span)

    def reduction(self, h: Head, tok: Token) -> Expr:
        op = REDUCTION_NAMES[h.name]
        if not h.is_call or not h.indices or h.derivs or h.groups is not None:
            also = "; max(0, u) is relu(u)" if op == "max" else ""
            raise self.error(f"write a reduction as {op}_j(...), its index as subscript{also}", tok)
        written = f"{op}{written_subscript(h.indices)}(...)"
        if len(set(h.indices)) != len(h.indices):
            raise self.error(f"{written} repeats an index", tok)
        self.expect("(", "after the reduction")
        with self.nested(tok):
            body = self.sum()
        if self.at(",") and op in ("max", "min"):
            raise self.error(f"{written} takes one argument, the values to reduce (max(0, u), unsubscripted, is relu)")
        self.expect(")", f"to close {written}")
        return Reduce(op, h.indices, body, span=(tok.pos, self.toks[self.k - 1].end))

    def maximum(self, tok: Token) -> Expr:
        self.expect("(", "after max")
        with self.nested(tok):
            first = self.sum()
            self.expect(",", "between the two arguments of max(0, u)")
            second = self.sum()
        self.expect(")", "to close max(0, u)")
        zero = Number(0.0)
        if first == zero:
            arg = second
        elif second == zero:
            arg = first
        else:
            raise self.error("max takes 0 and one expression: max(0, u), which is relu(u)", tok)
        return Call("relu", arg, span=(tok.pos, self.toks[self.k - 1].end))

    def delta(self, h: Head, tok: Token) -> Expr:
        span = (tok.pos, tok.end)
        if h.derivs or h.wrt:
            raise self.error("a Kronecker delta has no comma derivative", tok)
        forms = [i for i in h.indices if isinstance(i, Affine)]
        if forms:
            if len(h.indices) != 2 or len(forms) != 1:
                raise self.error("a shifted δ pairs one index with one shifted index: δ_{p(i+k)}", tok)
            index = next(i for i in h.indices if not isinstance(i, Affine))
            form = forms[0]
            if any(letter == index for _, letter in form.terms):
                raise self.error(f"the shifted δ δ_{{{index}(...)}} has {index} on both sides; write the "
                                 f"terms of {index} on one side", tok)
            return Shift(index, form.terms, form.offset, span=span)
        if h.groups is not None:
            if len(h.groups) != 2 or len(h.groups[0]) != len(h.groups[1]) or not h.groups[0]:
                raise self.error("a grouped delta pairs two groups of equal length: δ_(ij)(kl)", tok)
            return Delta(h.groups[0], h.groups[1], span=span)
        if len(h.indices) != 2:
            raise self.error("a Kronecker delta takes two indices, δ_ij, or two groups, δ_(ij)(kl)", tok)
        return Delta(h.indices[:1], h.indices[1:], span=span)

    # ---- Iverson brackets

    def bracket(self) -> Expr:
        """`[j <= i]`, `[i >= 1]`, `[j <= i + 2]` (a `Mask`: bare words are indices, compared
        with indices and whole numbers) or `[x_i > 0]`, `[u_j == max_k(u_k)]` (a `Compare` of
        values). One side an index and the other a value is refused with both readings."""
        opening = self.take()
        with self.nested(opening):
            if self.at("]"):
                raise self.error("an Iverson bracket compares two sides, as in [j <= i] or [x_i > 0]")
            left = self.index_side(self.k)
            right = self.index_side(left.end + 1) if left is not None and self._comparison_at(left.end) else None
            if left is not None and right is not None and (left.index or right.index):
                self.k = right.end
                node = self.mask(left, self.toks[left.end], right, opening)
            else:
                if left is not None and left.index:
                    self.k = left.end
                    self.comparison()
                    self.refuse_mixed(left, self.tok, index_first=True)
                node = self.compare(opening)
            self.expect("]", "to close the bracket")
        return node

    def compare(self, opening: Token) -> Compare:
        left = self.value_side()
        op = self.comparison()
        right_index = self.index_side(self.k)
        if right_index is not None and right_index.index:
            self.refuse_mixed(right_index, self.toks[self.k], index_first=False, value=left)
        right = self.value_side()
        return Compare(op, left, right, span=(opening.pos, self.tok.end))

    def comparison(self) -> str:
        tok = self.tok
        if not self._comparison_at(self.k):
            what = self._describe(tok)
            raise self.error(
                f"expected a comparison (<=, <, ==, !=, >=, >) in the bracket, found {what}"
                + (": an Iverson bracket compares two sides, as in [j <= i]" if tok.value == "]" else "")
            )
        self.take()
        return COMPARISON_SPELLINGS[tok.value]

    def _comparison_at(self, k: int) -> bool:
        tok = self.toks[k]
        return tok.kind == "op" and tok.value in COMPARISON_SPELLINGS

    def index_side(self, k: int) -> "_IndexSide | None":
        """The side starting at token k if it is written as an index side: an index plus
        or minus whole numbers (`i`, `i + 2`, `2 + i`, `3`), ending at a comparison or
        ']'; else None. A bare word is an index if it is a letter (`i`, `i4`) or a known
        name; another word (`eta`) makes the side a value."""
        start, index, index_tok, offset, sign = k, None, None, 0, 1
        if self.toks[k].kind == "op" and self.toks[k].value in "+-":
            sign = -1 if self.toks[k].value == "-" else 1
            k += 1
        while True:
            tok = self.toks[k]
            if tok.kind == "num" and self.text[tok.pos : tok.end].isdigit():
                offset += sign * int(self.text[tok.pos : tok.end])
            elif tok.kind == "head" and self._bare_index(tok.value):
                if index is not None or sign < 0:
                    raise self.error(
                        "an index bracket compares one index with another index plus a whole number, "
                        "as in [j <= i + 2] (for a comparison of scalars named by letters write them in "
                        "parentheses, [(a + b) > 0])", tok,
                    )
                index, index_tok = tok.value.name, tok
            else:
                return None
            k += 1
            after = self.toks[k]
            if after.kind == "op" and after.value in "+-":
                sign = -1 if after.value == "-" else 1
                k += 1
            elif self._comparison_at(k) or after.value == "]" or after.kind in ("end", "newline"):
                return _IndexSide(index, index_tok, offset, start, k)  # (an unclosed '[' is told next)
            else:
                return None

    def _bare_index(self, head: Head) -> bool:
        return (
            not head.has_subscript and not head.is_call and "'" not in head.name
            and (is_letter_index(head.name) or head.name in self.names)
        )

    def mask(self, left: "_IndexSide", op_tok: Token, right: "_IndexSide", opening: Token) -> Mask:
        """Normalised so the first index stands on the left: `[2 <= i]` is `[i >= 2]`,
        `[j + 1 <= i]` is `[j <= i - 1]`."""
        op = COMPARISON_SPELLINGS[op_tok.value]
        span = (opening.pos, self.tok.end)
        if left.index is None:
            return Mask(_FLIPPED[op], right.index, None, left.offset - right.offset, span=span)
        return Mask(op, left.index, right.index, right.offset - left.offset, span=span)

    def value_side(self) -> Expr:
        """A side compared by value; a bare index word standing in it (outside parentheses)
        would read as an index, so it is refused with the spelling of each reading."""
        start = self.k
        node = self.sum()
        depth = 0
        for tok in self.toks[start : self.k]:
            if tok.kind == "op" and tok.value in OPENING + CLOSING:
                depth += 1 if tok.value in OPENING else -1
            elif depth == 0 and tok.kind == "head" and self._bare_index(tok.value):
                raise self.error(
                    f"in a bracket a bare {tok.value.name} is an index, but here it stands in a value "
                    f"({self.text[self.toks[start].pos : self.toks[self.k - 1].end]}); "
                    f"for a scalar named {tok.value.name} write ({tok.value.name})", tok,
                )
        return node

    def refuse_mixed(self, side: "_IndexSide", at: Token, index_first: bool, value: Expr | None = None) -> None:
        word = side.index
        raise self.error(
            f"this bracket compares the index {word} with a value, which reads two ways: as indices, "
            f"the other side must be an index or a whole number (as in [j <= {word} + 1]); as values, "
            f"write ({word}) for a scalar named {word}",
            side.token if index_first else at,
        )



@dataclass(frozen=True)
class _IndexSide:
    """One side of an index bracket: `index + offset` (index None for a number alone),
    read from token `start` up to `end` (the comparison or ']')."""

    index: str | None
    token: Token | None
    offset: int
    start: int
    end: int


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _with_calls_relabelled(node: Expr, slot: Expr, arg: Expr, index: str, span=None) -> Expr:
    """`node` with each call on `slot` made a call on `arg` relabelled to `index`, at the
    Jacobian's `span` (so that a refusal of the relabelling points at what was written)."""
    if isinstance(node, Call) and node.arg == slot:
        return Call(node.func, arg, index, span=span)
    children = node.children()
    if not children:
        return node
    return with_children(node, tuple(_with_calls_relabelled(c, slot, arg, index, span) for c in children))


def _check_jacobians(node: Expr, jacobians: list, text: str) -> None:
    """`σ_{i,m}(u)` has i free, like the Jacobian J_im it is. Read as the product
    σ'_i(u) δ_im, i is summed wherever nothing else in the product carries it and it is
    not fixed from outside (a bare `σ_{i,m}(u)`, or `y_m = σ_{i,m}(u)`); refused there,
    since the sum σ'(u_m) is not what was written."""
    if not jacobians:
        return
    pending = {id(call): tok for call, tok in jacobians}
    for product, fixed in _products(node, frozenset()):
        for factor in leaf_factors(product):
            tok = pending.get(id(factor))
            if tok is None:
                continue
            i = factor.relabel
            if i not in fixed and occurrence_counts(product, fixed)[i] <= 2:
                m = next(d.right[0] for d in leaf_factors(product) if isinstance(d, Delta) and d.left == (i,))
                raise ParseError(
                    f"{tok.value.name}_{{{i},{m}}}(...) is the Jacobian with i free, but nothing here "
                    f"carries or fixes {i}: read as the product {tok.value.name}'_{i}(...) δ_{{{i} {m}}}, "
                    f"{i} would be summed. For the Jacobian itself write an equation J_{{{i} {m}}} = "
                    f"{tok.value.name}_{{{i},{m}}}(...); for the sum, {tok.value.name}'_{m}(...)",
                    text=text, pos=tok.pos,
                )


def _products(node: Expr, fixed: frozenset[str]):
    """Every product scope of `node` (a product with the products nested in it, or a
    lone factor's product) with the indices fixed from outside it."""
    if isinstance(node, Equation):
        yield from _products(node.rhs, frozenset(node.lhs.all_indices))
        return
    if isinstance(node, Reduce):
        yield from _products(node.body, fixed | set(node.indices))
        return
    if isinstance(node, Product):
        yield node, fixed
        for factor in leaf_factors(node):
            yield from _products(factor, fixed)
        return
    for child in node.children():
        yield from _products(child, fixed)


def _fresh_pool():
    """Letters for the summed index a shifted index stands for: p, q, ... then p1, ..."""
    yield from "pqrstuvwabcdefghlmoxyz"
    for n in range(1, 1 << 30):
        yield from (f"{c}{n}" for c in "pqrstuvw")


def _did_you_mean(name: str) -> str:
    """' (did you mean relu?)' for a misspelt function or reduction, else ''."""
    known = [n for n in list(functions.BY_NAME) + list(REDUCTION_NAMES) + ["max"] if ("'" in n) == ("'" in name)]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    # the matrix functions' short names are near many a scalar's (eta, beta): only a close slip
    close += difflib.get_close_matches(name, [n for n in matrices.BY_NAME if n not in close], n=1, cutoff=0.75)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def negate(node: Expr) -> Expr:
    """`-node`, written as a leading factor -1 merged into a leading number."""
    if isinstance(node, Number):
        return Number(-node.value, span=node.span)
    if isinstance(node, Product):
        first = node.factors[0]
        if isinstance(first, Number):
            return Product((Number(-first.value),) + node.factors[1:], span=node.span)
        return Product((Number(-1.0),) + node.factors, span=node.span)
    return Product((Number(-1.0), node), span=node.span if hasattr(node, "span") else None)
