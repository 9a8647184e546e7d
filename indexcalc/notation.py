"""Text to expression tree: the tokenizer and a recursive-descent parser.

The grammar, loosest binding first (juxtaposition, `*` and `/` bind equally, left to
right; `^` and `**` bind tighter and take one factor):

    program  := line (NEWLINE line)*           # '#' starts a comment
    line     := sum ['=' sum]
    sum      := ['-'|'+'] product (('+'|'-') product)*
    product  := power (['*'|'/'] signed)*        # juxtaposition is '*'
    signed   := '-' signed | power
    power    := atom [('^'|'**') exponent]
    exponent := '-' exponent | power
    atom     := number | tensor | delta | call | reduction | '(' sum ')'

A *head* (`w_ij`, `W1_{i j}`, `loss_{,(gh)}[w]`, `σ'`, `δ_(ij)(kl)`) is read whole by
the tokenizer: a name made of letters, the digits 0-9 and combining marks, joined by
underscores, the part after the last underscore being the subscript. A head directly
followed by `(` is a call.

Characters that look like the notation but would be read as something else are refused
with the spelling meant: a superscript `x²` is not a name `x²` but a power `x^2`, a
full-width `ｘ` is `x`, and numbers are written with 0-9 only.

Parentheses, function arguments, reductions and exponents nest at most `MAX_NESTING`
deep: every later stage walks the tree recursively, and a limit refused here with a caret
is better than a RecursionError there. Signs do not nest (`--x` is read in a loop).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass

from . import functions
from .errors import IndexCalcError, ParseError
from .expr import Call, Delta, Deriv, Equation, Expr, Number, Power, Product, Program, Reduce, Sum, Tensor

DELTA_NAMES = ("delta", "δ")
REDUCTION_NAMES = {"sum": "sum", "Σ": "sum", "mean": "mean", "logsumexp": "logsumexp"}

MAX_NESTING = 100  # parentheses, arguments, reductions and exponents, one inside another
DIGITS = "0123456789"
_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TRANSPOSE_ADVICE = (
    "the notation needs no transpose: indices name the axes, so the transpose of w_ij is "
    "w_ji and x_i w_ij sums over w's rows (for a power of a scalar named T write x^(T))"
)
_OPERATORS = ("**", "+", "-", "*", "/", "^", "=", "(", ")", ",")


@dataclass(frozen=True)
class Head:
    """What the tokenizer reads of a name and its subscript."""

    name: str
    groups: tuple[tuple[str, ...], ...] | None  # δ_(ij)(kl): the two groups
    indices: tuple[str, ...]
    derivs: tuple[tuple[str, ...], ...]
    wrt: tuple[str, ...] | None
    has_subscript: bool
    is_call: bool


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "head", "op", "newline", "end"
    value: object
    pos: int
    end: int


def parse(text: str, *, check: bool = True) -> Expr:
    """Parse text in the notation: an `Equation`, a bare expression, or a `Program` of
    several equations (one per line, `#` comments).

    With `check` (the default) the result also obeys the index rules, the same check
    every route applies (`indexcalc.program.check_program`), so that text which would
    be refused later, or read other than written, is refused here with a caret. Pass
    `check=False` for a tree that is completed before it is used (a model file's
    per-sample equations, say)."""
    if not isinstance(text, str):
        raise ParseError(f"expected text to parse, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    parser = _Parser(text)
    try:
        lines = parser.lines()
    except RecursionError:  # the nesting limit comes first unless the caller's stack is deep
        raise parser.error("the expression is nested too deeply to parse") from None
    if not lines:
        raise ParseError("nothing to parse: the text holds no expression", text=text, pos=0)
    if len(lines) == 1:
        result = lines[0]
    else:
        result = Program(tuple(_program_lines(lines, text)))
    if check:
        _check(result, text)
    return result


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
            raise ParseError(
                f"{line.lhs.key} is defined twice; give the new value a name of its own",
                text=text,
                pos=_start(line.lhs),
            )
        defined.add(line.lhs.key)
    return lines


def _check(node: Expr, text: str) -> None:
    """The index rules, by the checker every route uses (imported when called, since
    indexcalc.program imports this module)."""
    from .indices import free_indices
    from .program import check_program

    try:
        if isinstance(node, Program):
            check_program(node.equations)
        elif isinstance(node, Equation):
            check_program([node])
        else:
            free_indices(node)
    except IndexCalcError as err:
        raise err.with_source(text, None) from None


def _start(node: Expr) -> int:
    span = getattr(node, "span", None)
    return span[0] if span else 0


# ---------------------------------------------------------------- tokenizer


def _is_name_char(c: str) -> bool:
    """Letters of any script, the digits 0-9 and combining marks (ŷ written y + ^)."""
    return (c.isalpha() or c in DIGITS or unicodedata.category(c).startswith("M")) and not _looks_like_other(c)


def _looks_like_other(c: str) -> bool:
    """A character the notation would misread: a superscript or subscript (`x²` is not a
    name but a power), a full-width form, or a digit other than 0-9."""
    tag = unicodedata.decomposition(c).split(" ")[0]
    return tag in ("<super>", "<sub>", "<wide>", "<narrow>", "<fraction>") or (c.isnumeric() and c not in DIGITS)


def _blank(c: str) -> bool:
    return c in " \t\r\f\v" or unicodedata.category(c) == "Zs"  # Zs: a no-break space, say


def _character_problem(c: str) -> str:
    """Why the tokenizer cannot read `c`, and what to write instead."""
    name = unicodedata.name(c, "") if not c.isascii() else ""
    said = f"{c!r}" + (f" ({name})" if name else "")
    plain = unicodedata.normalize("NFKC", c)
    tag = unicodedata.decomposition(c).split(" ")[0]
    if plain == "T" and tag == "<super>" or c == "\u22a4":
        return f"unexpected character {said}: {TRANSPOSE_ADVICE}"
    if tag == "<super>":
        return f"unexpected character {said}: write a power with ^, as in x^{plain}"
    if tag == "<sub>":
        written = f"x{plain} for a name, x_i{plain} for an index" if plain in DIGITS else f"x_{plain}"
        return f"unexpected character {said}: write subscripts in plain letters and digits ({written})"
    if tag in ("<wide>", "<narrow>"):
        return f"unexpected character {said}: write {plain!r}"
    if c.isnumeric():
        return f"unexpected character {said}: write numbers with the digits 0-9 (and / for a fraction)"
    if unicodedata.category(c) == "Cs":
        return f"unexpected character {said}: not text (a byte that is not UTF-8?)"
    if unicodedata.category(c) == "Cf":
        return f"unexpected invisible character {said}: delete it"
    return f"unexpected character {said}"


def canonical_name(raw: str) -> str:
    """One spelling per name: a letter with a hat (ŷ, x̂) is written `yhat`."""
    decomposed = unicodedata.normalize("NFD", raw)
    decomposed = re.sub(r"(\w)\u0302", r"\1hat", decomposed)
    return unicodedata.normalize("NFC", decomposed)


class _Tokenizer:
    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def error(self, message: str, pos: int) -> ParseError:
        return ParseError(message, text=self.text, pos=pos)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        depth = 0
        text = self.text
        while True:
            self._skip_blanks()
            if self.i >= len(text):
                out.append(Token("end", None, self.i, self.i))
                return out
            c, start = text[self.i], self.i
            if c == "#":
                while self.i < len(text) and text[self.i] != "\n":
                    self.i += 1
            elif c in "\n;":
                self.i += 1
                if depth == 0:
                    out.append(Token("newline", c, start, self.i))
            elif c in DIGITS or (c == "." and text[self.i + 1 : self.i + 2] in list(DIGITS)):
                m = _NUMBER.match(text, self.i)
                self.i = m.end()
                if float(m.group()) == float("inf"):
                    raise self.error(f"the number {m.group()} is too large for a float", start)
                out.append(Token("num", float(m.group()), start, self.i))
            elif c.isalpha() and not _looks_like_other(c):
                head = self._head()
                out.append(Token("head", head, start, self.i))
            else:
                op = next((o for o in _OPERATORS if text.startswith(o, self.i)), None)
                if op is None:
                    raise self.error(_character_problem(c), start)
                depth += {"(": 1, ")": -1}.get(op, 0)
                depth = max(depth, 0)
                self.i += len(op)
                out.append(Token("op", op, start, self.i))

    def _skip_blanks(self) -> None:
        while self.i < len(self.text) and _blank(self.text[self.i]):
            self.i += 1

    def _name_part(self) -> str:
        start = self.i
        while self.i < len(self.text) and _is_name_char(self.text[self.i]):
            self.i += 1
        return self.text[start : self.i]

    def _head(self) -> Head:
        text = self.text
        parts = [self._name_part()]
        primes = ""  # σ'_i(u), as printed; σ_i'(u) is read below
        while self.i < len(text) and text[self.i] == "'":
            primes += "'"
            self.i += 1
        subscript: str | None = None
        sub_pos = self.i
        while self.i < len(text) and text[self.i] == "_":
            nxt = text[self.i + 1 : self.i + 2]
            sub_pos = self.i + 1
            if nxt and _is_name_char(nxt):
                self.i += 1
                parts.append(self._name_part())
            elif nxt == "{":
                close = text.find("}", self.i)
                if close == -1:
                    raise self.error("unclosed '{' in a subscript", self.i + 1)
                subscript = text[self.i + 2 : close]
                self.i = close + 1
                break
            elif nxt == "(":
                start = self.i + 1
                m = re.compile(r"(\([^()\n]*\))+").match(text, start)
                if not m:
                    raise self.error("unclosed '(' in a grouped subscript", start)
                subscript = m.group()
                self.i = m.end()
                break
            else:
                raise self.error("'_' must be followed by indices, '{...}' or '(...)'", self.i)
        if subscript is None and len(parts) > 1:
            subscript = parts.pop()
        name = "_".join(parts) + primes
        while self.i < len(text) and text[self.i] == "'":
            name += "'"
            self.i += 1
        groups, indices, derivs = None, (), ()
        if subscript is not None:
            groups, indices, derivs = self._subscript(subscript, sub_pos)
        wrt = None
        if self.i < len(text) and text[self.i] == "[":
            close = text.find("]", self.i)
            if close == -1:
                raise self.error("unclosed '[' after a comma derivative", self.i)
            if not derivs:
                raise self.error(
                    "'[...]' names what a comma derivative is taken by; "
                    f"{name} has no comma derivative", self.i
                )
            names = [canonical_name(w.strip()) for w in text[self.i + 1 : close].split(",")]
            if any(not n or not all(map(_is_name_char, n.replace("_", "a"))) for n in names):
                raise self.error("'[...]' must list tensor names, separated by commas", self.i + 1)
            if len(names) == 1:
                names = names * len(derivs)
            if len(names) != len(derivs):
                raise self.error(
                    f"{len(derivs)} derivatives but {len(names)} names in '[...]'", self.i + 1
                )
            wrt = tuple(names)
            self.i = close + 1
        is_call = text[self.i : self.i + 1] == "("
        return Head(
            canonical_name(name), groups, indices, derivs, wrt, subscript is not None, is_call
        )

    def _subscript(self, sub: str, pos: int):
        """Read `ij`, `(ij)(kl)`, `,i`, `,(gh)`, `k,ij` or `i,(mn)(pq)` (spaces ignored)."""
        compact = "".join(sub.split())
        own, comma, rest = compact.partition(",")
        if "," in rest:
            raise self.error("a subscript holds at most one comma", pos)
        own_groups = self._groups(own, pos)
        if own_groups is not None and comma:
            raise self.error("grouped indices before the comma are only for δ_(ij)(kl)", pos)
        indices = () if own_groups is not None else self._indices(own, pos)
        derivs: tuple[tuple[str, ...], ...] = ()
        if comma:
            if not rest:
                raise self.error("a comma derivative needs indices after the comma", pos)
            derivs = self._deriv_groups(rest, pos)
        return own_groups, indices, derivs

    def _groups(self, s: str, pos: int):
        if not s.startswith("("):
            return None
        groups = re.findall(r"\(([^()]*)\)", s)
        if "".join(f"({g})" for g in groups) != s:
            raise self.error(f"cannot read the index groups {s!r}", pos)
        return tuple(self._indices(g, pos) for g in groups)

    def _deriv_groups(self, s: str, pos: int):
        out = []
        for m in re.finditer(r"\(([^()]*)\)|([^()]\d*)", s):
            if m.group(1) is not None:
                out.append(self._indices(m.group(1), pos))
            else:
                out.append(self._indices(m.group(2), pos))
        if "".join(m.group() for m in re.finditer(r"\(([^()]*)\)|([^()]\d*)", s)) != s:
            raise self.error(f"cannot read the derivative indices {s!r}", pos)
        return tuple(out)

    def _indices(self, s: str, pos: int) -> tuple[str, ...]:
        found = re.findall(r"[^\W\d_][0-9]*", s)
        bad = next((c for c in s if not _is_name_char(c)), None)
        if bad is not None:
            raise self.error(f"cannot read indices {s!r}: {_character_problem(bad)}", pos)
        if "".join(found) != s:
            raise self.error(
                f"cannot read indices {s!r}: an index is one letter, optionally followed by digits",
                pos,
            )
        return tuple(found)


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _Tokenizer(text).tokens()
        self.k = 0
        self.depth = 0  # how many parentheses, arguments and exponents enclose the token

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
                raise self.error(f"unexpected {self._describe(self.tok)}")
        return out

    def line(self) -> Expr:
        start = self.tok
        lhs = self.sum()
        if not self.at("="):
            return lhs
        self.take()
        if not isinstance(lhs, Tensor):
            raise self.error("the left-hand side of '=' must be one tensor, like y_ij", start)
        if len(set(lhs.all_indices)) != len(lhs.all_indices):
            raise self.error(f"the left-hand side {lhs} repeats an index", start)
        if self.tok.kind in ("newline", "end"):
            raise self.error("expected an expression after '='")
        rhs = self.sum()
        if self.at("="):
            raise self.error("only one '=' per line")
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
        factors = [self.power()]
        while True:
            if self.at("*"):
                self.take()
                factors.append(self.signed())
            elif self.at("/"):
                self.take()
                factors.append(Power(self.signed(), Number(-1.0)))
            elif self.tok.kind in ("num", "head") or self.at("("):
                factors.append(self.power())
            else:
                break
        if len(factors) == 1:
            return factors[0]
        return Product(tuple(factors), span=(start, self.tok.pos))

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
        if h.name in REDUCTION_NAMES:
            return self.reduction(h, tok)
        if h.name == "max" and h.is_call:
            return self.maximum(tok)
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
        return Tensor(h.name, h.indices, derivs, span=span)

    def call(self, h: Head, tok: Token, function) -> Expr:
        if not h.is_call:
            raise self.error(f"the function '{h.name}' needs an argument in parentheses", tok)
        if h.derivs or h.groups is not None or len(h.indices) > 1:
            raise self.error(
                f"a subscripted function takes one index, like σ_i(...); "
                f"write its derivative as {function.name}'(...)", tok
            )
        self.expect("(", "after the function name")
        if self.at(")"):
            raise self.error(f"'{h.name}' needs an argument")
        with self.nested(tok):
            arg = self.sum()
        self.expect(")", f"to close the argument of '{h.name}'")
        relabel = h.indices[0] if h.indices else None
        return Call(function.name, arg, relabel, span=(tok.pos, self.toks[self.k - 1].end))

    def reduction(self, h: Head, tok: Token) -> Expr:
        op = REDUCTION_NAMES[h.name]
        if not h.is_call or not h.indices or h.derivs or h.groups is not None:
            raise self.error(f"write a reduction as {op}_j(...), its index as subscript", tok)
        if len(set(h.indices)) != len(h.indices):
            raise self.error(f"{op}_{''.join(h.indices)}(...) repeats an index", tok)
        self.expect("(", "after the reduction")
        with self.nested(tok):
            body = self.sum()
        self.expect(")", f"to close {op}_{''.join(h.indices)}(...)")
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
        if h.groups is not None:
            if len(h.groups) != 2 or len(h.groups[0]) != len(h.groups[1]) or not h.groups[0]:
                raise self.error("a grouped delta pairs two groups of equal length: δ_(ij)(kl)", tok)
            return Delta(h.groups[0], h.groups[1], span=span)
        if len(h.indices) != 2:
            raise self.error("a Kronecker delta takes two indices, δ_ij, or two groups, δ_(ij)(kl)", tok)
        return Delta(h.indices[:1], h.indices[1:], span=span)


def _did_you_mean(name: str) -> str:
    """' (did you mean relu?)' for a misspelt function or reduction, else ''."""
    known = [n for n in list(functions.BY_NAME) + list(REDUCTION_NAMES) + ["max"] if ("'" in n) == ("'" in name)]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
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
