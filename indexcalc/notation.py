"""Text to expression tree: the tokenizer and a recursive-descent parser.

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

A *head* (`w_ij`, `W1_{i j}`, `x_{batch in}`, `loss_{,(gh)}[w]`, `σ'`, `δ_(ij)(kl)`) is
read whole by the tokenizer: a name made of letters, the digits 0-9 and combining marks,
joined by underscores, the part after the last underscore being the subscript. A head
directly followed by `(` is a call; `σ_{i,m}(u)` is the notes' Jacobian σ'_i(u) δ_im.

In a subscript, several words are one index each (a letter `i4`, or a name `batch`); one
word alone is letters (`ij` is i, j) unless the text knows it as a name: written beside
another index somewhere (so the text is read twice when it holds names) or declared.

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
from typing import Iterable

from . import functions, matrices
from .errors import IndexCalcError, ParseError
from .expr import (
    Call, Compare, Delta, Deriv, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift, Sum,
    Tensor,
    leaf_factors,
)

DELTA_NAMES = ("delta", "δ")
REDUCTION_NAMES = {
    "sum": "sum", "Σ": "sum", "mean": "mean", "logsumexp": "logsumexp", "max": "max", "min": "min",
}
# how a comparison in an Iverson bracket is written → the operator stored (expr.COMPARISONS)
COMPARISON_SPELLINGS = {
    "<=": "<=", "≤": "<=", ">=": ">=", "≥": ">=", "==": "==", "=": "==", "!=": "!=", "≠": "!=", "<": "<", ">": ">",
}
DECLARATION_WORDS = ("index", "indices")

MAX_NESTING = 100  # parentheses, arguments, reductions and exponents, one inside another
DIGITS = "0123456789"
_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TRANSPOSE_ADVICE = (
    "the notation needs no transpose: indices name the axes, so the transpose of w_ij is "
    "w_ji and x_i w_ij sums over w's rows (for a power of a scalar named T write x^(T))"
)
_OPERATORS = (
    "**", "<=", ">=", "==", "!=", "+", "-", "*", "/", "^", "=", "(", ")", "[", "]", ",", "<", ">", "≤", "≥", "≠",
)
_OPENING, _CLOSING = "([", ")]"


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


@dataclass(frozen=True)
class Affine:
    """A shifted index as the tokenizer reads it, `(2i+k-1)`: (coefficient, index) terms
    and a whole-number offset; `pos` is where it starts in the text. The parser makes it
    a fresh letter p on the tensor and a `Shift` δ_{p(2i+k-1)} beside it."""

    terms: tuple[tuple[int, str], ...]
    offset: int
    pos: int


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
    result, parser = _read(text, names)
    try:  # the text's matrix functions in the form they are held (the pair named, not guessed again)
        result = matrices.resolve(result)
    except IndexCalcError as err:
        raise err.with_source(text, None) from None
    if check:
        _check(result, text)
        _check_jacobians(result, parser.jacobians, text)
    return result


def _read(text: str, names: Iterable[str] = ()) -> "tuple[Expr, _Parser]":
    """The text's tree as written: matrix functions' pairs not yet resolved, unchecked."""
    parser = _Parser(text, _tokens(text, frozenset(names)))
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


def _tokens(text: str, names: frozenset[str]) -> tuple[list[Token], frozenset[str]]:
    """The tokens and the index names of the text. A name is known everywhere in its text
    once written beside another index (`y_{batch out}`) or declared, so a subscript
    holding it alone (`mean_{batch}(...)`, before or after) is read a second time. The
    first reading passes over a lone word it cannot read as letters (it may be a name
    declared further on); the second refuses it."""
    first = _Tokenizer(text, names, lenient=True)
    tokens = first.tokens()
    known = names | first.declared | first.introduced
    if known == names and not first.passed_over:
        return tokens, known
    return _Tokenizer(text, known).tokens(), known


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


def is_letter_index(word: str) -> bool:
    """An index as the notation has always written it: one letter, optionally followed by
    the digits 0-9 (`i`, `μ`, `i4`)."""
    return bool(word) and word[0].isalpha() and not _looks_like_other(word[0]) and all(c in DIGITS for c in word[1:])


def is_index_name(word: str) -> bool:
    """A named index (`batch`, `out`, `d2`): a letter, then letters and digits, and not
    a letter index."""
    return (
        bool(word) and word[0].isalpha() and all(_is_name_char(c) for c in word) and not is_letter_index(word)
    )


def index_names(node: Expr) -> frozenset[str]:
    """The named indices (not letters) written anywhere in `node`: what text printed from
    elsewhere (a wrt string for `diff`, say) may refer to."""
    found: set[str] = set()
    for sub in node.walk():
        if isinstance(sub, (Tensor, Delta, Mask, Shift)):
            found.update(sub.all_indices)
        elif isinstance(sub, Reduce):
            found.update(sub.indices)
        elif isinstance(sub, Call) and sub.relabel:
            found.add(sub.relabel)
        elif isinstance(sub, MatrixCall):
            found.update(sub.relabel)
    return frozenset(i for i in found if is_index_name(i))


def known_names(text: str) -> frozenset[str]:
    """The index names `text` knows (declared, or written beside another index), so that
    text written apart from it (a wrt string for `diff`) reads a lone name as it does."""
    return _tokens(unicodedata.normalize("NFC", text), frozenset())[1]


_GROUP = re.compile(r"\(([^()]*)\)")


def _looks_affine(inside: str) -> bool:
    """Whether a group in parentheses is a shifted index rather than δ's index group: it
    holds a sign or a digit before a letter (`i+k`, `2i`, `e-i`, `i+1`)."""
    return bool(re.search(r"[+\-*]", inside)) or bool(re.match(r"\s*[0-9]", inside))


def _only_inside_groups(s: str) -> bool:
    """Whether all the blanks of a subscript stand inside its parentheses (`nd(i + k)`)."""
    depth = 0
    for c in s.strip():
        depth += (c == "(") - (c == ")")
        if depth == 0 and c.isspace():
            return False
    return True


def _plain(affine: Affine) -> bool:
    """`(i)`: one index, coefficient 1, no offset: the plain index, no shift."""
    return len(affine.terms) == 1 and affine.terms[0][0] == 1 and affine.offset == 0


_DECLARATION = re.compile(r"(?:index|indices)[^\S\n]+(?=[^\W\d_])")
_WORD = re.compile(r"[^\s,]+")


class _Tokenizer:
    """Reads the text into tokens. `names` are the words read as named indices where a
    subscript holds that word alone (`x_{batch}`); every word of a subscript of several
    words is read on its own (`x_{batch in}`), and the names met so (`introduced`) or
    declared (`declared`) are what a second reading takes as `names`."""

    def __init__(self, text: str, names: frozenset[str] = frozenset(), lenient: bool = False):
        self.text = text
        self.i = 0
        self.names = names
        self.lenient = lenient
        self.passed_over = False
        self.introduced: set[str] = set()
        self.declared: set[str] = set()

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
            if depth == 0 and (not out or out[-1].kind == "newline") and self._declaration():
                continue
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
                depth += 1 if op in _OPENING else -1 if op in _CLOSING else 0
                depth = max(depth, 0)
                self.i += len(op)
                out.append(Token("op", op, start, self.i))

    def _declaration(self) -> bool:
        """`index batch` or `indices batch, out` on a line of its own: these words are
        named indices wherever they stand, alone in a subscript too. A line with '=' is
        an equation (a tensor may be called `index`)."""
        m = _DECLARATION.match(self.text, self.i)
        if not m:
            return False
        end = len(self.text)
        for stop in "\n;#":
            found = self.text.find(stop, m.end())
            end = min(end, found) if found != -1 else end
        if "=" in self.text[m.end() : end]:
            return False
        for word in _WORD.finditer(self.text, m.end(), end):
            name, at = word.group(), word.start()
            if not is_index_name(name):
                why = (
                    "a letter is an index without declaring it" if is_letter_index(name)
                    else "a named index is a letter followed by letters and digits (batch, d2)"
                )
                raise self.error(f"cannot declare {name!r} an index name: {why}", at)
            self.declared.add(name)
        self.i = end
        return True

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
                subscript, sub_pos = text[self.i + 2 : close], self.i + 2
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
            if parts[0] in DELTA_NAMES and len(parts) == 1 and text[self.i : self.i + 1] == "(":
                # δ_p(i+k): the shifted δ, its form part of the subscript
                close = text.find(")", self.i)
                if close != -1 and "(" not in text[self.i + 1 : close] and "\n" not in text[self.i : close]:
                    subscript += text[self.i : close + 1]
                    self.i = close + 1
        name = "_".join(parts) + primes
        while self.i < len(text) and text[self.i] == "'":
            name += "'"
            self.i += 1
        groups, indices, derivs = None, (), ()
        if subscript is not None:
            groups, indices, derivs = self._subscript(subscript, sub_pos, name in DELTA_NAMES)
        wrt = None
        if text[self.i : self.i + 1] == "[":
            if derivs:
                wrt = self._wrt(name, derivs)
            else:
                self._refuse_misplaced_wrt(name)
        is_call = text[self.i : self.i + 1] == "("
        return Head(
            canonical_name(name), groups, indices, derivs, wrt, subscript is not None, is_call
        )

    def _refuse_misplaced_wrt(self, name: str) -> None:
        """`x_i[w]`: a bracket right after a tensor that holds names and no comparison
        was meant to say what a derivative is taken by (an Iverson bracket compares)."""
        close = self.text.find("]", self.i)
        inside = self.text[self.i + 1 : close] if close != -1 else ""
        if inside.strip() and all(is_index_name(w) or is_letter_index(w) for w in _WORD.findall(inside)):
            raise self.error(
                f"'[...]' names what a comma derivative is taken by; {name} has no comma derivative "
                f"(an Iverson bracket compares two sides, [j <= i])", self.i,
            )

    def _wrt(self, name: str, derivs) -> tuple[str, ...]:
        """`[w]` or `[W1,b]` right after a comma derivative: what it is taken by."""
        text, opening = self.text, self.i
        close = text.find("]", opening)
        if close == -1:
            raise self.error("unclosed '[' after a comma derivative", opening)
        inside = text[opening + 1 : close]
        if any(c in inside for c in "<>=≤≥≠!"):
            raise self.error(
                f"'[' right after the comma derivative {name}_{{...}} reads two ways: as what it is "
                f"taken by ({name}_{{...}}[w]) or as an Iverson bracket; for the bracket write a space "
                f"before it: {name}_{{...}} [{inside.strip()}]", opening,
            )
        names = [canonical_name(w.strip()) for w in inside.split(",")]
        if any(not n or not all(map(_is_name_char, n.replace("_", "a"))) for n in names):
            raise self.error("'[...]' must list tensor names, separated by commas", opening + 1)
        if len(names) == 1:
            names = names * len(derivs)
        if len(names) != len(derivs):
            if self.lenient:  # the count depends on which words are names: the second reading tells
                self.passed_over = True
            else:
                raise self.error(f"{len(derivs)} derivatives but {len(names)} names in '[...]'", opening + 1)
        self.i = close + 1
        return tuple(names)

    def _subscript(self, sub: str, pos: int, delta: bool = False):
        """Read `ij`, `(ij)(kl)`, `,i`, `,(gh)`, `k,ij`, `i,(mn)(pq)` or `batch out,(g h)`,
        `sub` starting at `pos` of the text."""
        own, comma, rest = sub.partition(",")
        if "," in rest:
            raise self.error("a subscript holds at most one comma", pos + len(own) + 1 + rest.index(","))
        groups = [m.group(1) for m in _GROUP.finditer(own)]
        plain = not delta and all(len(g.split()) == 1 and (is_letter_index(g.strip()) or g.strip() in self.names)
                                  for g in groups)  # x_{(i)}: the index i
        if own.strip().startswith("(") and not any(map(_looks_affine, groups)) and not plain:
            if comma:
                raise self.error("grouped indices before the comma are only for δ_(ij)(kl)", pos)
            return self._groups(own, pos), (), ()
        indices = self._list(own, pos)
        derivs: tuple[tuple[str, ...], ...] = ()
        if comma:
            if "(" in own:
                raise self.error(
                    "a comma derivative's own indices are plain letters or names: a shifted index "
                    "(i+k) names no axis of the derivative's array", pos + own.index("("),
                )
            if not rest.strip():
                raise self.error("a comma derivative needs indices after the comma", pos + len(own))
            derivs = self._deriv_groups(rest, pos + len(own) + 1)
        return None, indices, derivs

    def _groups(self, s: str, pos: int):
        pieces = list(re.finditer(r"\s*\(([^()]*)\)\s*", s))
        if "".join(m.group() for m in pieces) != s:
            raise self.error(f"cannot read the index groups {s.strip()!r}", pos)
        return tuple(self._list(m.group(1), pos + m.start(1)) for m in pieces)

    def _deriv_groups(self, s: str, pos: int):
        """Each group in parentheses is one derivative (`(gh)`, `(out in)`); outside them
        each index is one (`ij` is two, by i and by j)."""
        out: list[tuple[str, ...]] = []
        pieces = list(re.finditer(r"\(([^()]*)\)|[^()]+", s))
        if "".join(m.group() for m in pieces) != s:
            raise self.error(f"cannot read the derivative indices {s.strip()!r}", pos)
        for m in pieces:
            if m.group(1) is not None and _looks_affine(m.group(1)):
                raise self.error(
                    f"a derivative is taken at plain indices, one per axis of what it is by: ({m.group(1)}) "
                    f"is a shifted index, which names no axis; write the group as plain letters, as in (gh)",
                    pos + m.start(1),
                )
            if m.group(1) is not None:
                out.append(self._list(m.group(1), pos + m.start(1)))
            else:
                out.extend((index,) for index in self._list(m.group(), pos + m.start()))
        return tuple(out)

    def _list(self, s: str, pos: int) -> tuple[str, ...]:
        """Indices as written in a subscript. One word is letters (`ij` is i, j), unless it
        is a known name (`batch`, declared or written beside another index somewhere in the
        text); of several words each is one index, a letter (`i`, `i4`) or a name. A part in
        parentheses is a shifted index, `(i+k)` (`_affine_list`)."""
        if "(" in s or ")" in s:
            return self._affine_list(s, pos)
        words = [(m.group(), pos + m.start()) for m in re.finditer(r"\S+", s)]
        if len(words) == 1:
            word, at = words[0]
            if word in self.names:
                return (word,)
            if self.lenient and is_index_name(word):
                try:
                    return self._letters(word, at)
                except ParseError:
                    self.passed_over = True
                    return (word,)
            return self._letters(word, at)
        return tuple(self._word(word, at) for word, at in words)

    def _word(self, word: str, at: int) -> str:
        """One word of a spaced subscript: one index, a letter (`i`, `i4`) or a name."""
        if is_letter_index(word):
            return word
        if is_index_name(word):
            self.introduced.add(word)
            return word
        bad = next((k for k, c in enumerate(word) if not _is_name_char(c)), 0)
        problem = _character_problem(word[bad]) if not _is_name_char(word[bad]) else "it starts with a digit"
        raise self.error(
            f"cannot read the index {word!r}: {problem} (an index is a letter with optional digits, "
            f"i or i4, or a name of letters and digits, batch or d2)", at + bad,
        )

    def _affine_list(self, s: str, pos: int) -> tuple:
        """`nd(i+k)`, `n d (i+k) (j+l)`, `(2i+k-1)`, `batch c (i + k)`: plain indices read as
        a subscript without parentheses reads them (run together: letters; spaced: one
        word, one index), each part in parentheses an `Affine`. A plain `(i)` is the
        index i."""
        pieces = list(re.finditer(r"\(([^()]*)\)|[^()]+", s))
        if "".join(m.group() for m in pieces) != s:
            bad = next((k for k, c in enumerate(s) if c in "()"), 0)
            raise self.error("unbalanced parentheses in a subscript: a shifted index is written (i+k)", pos + bad)
        spaced = not _only_inside_groups(s)
        out: list = []
        for m in pieces:
            if m.group(1) is not None:
                out.append(self._affine(m.group(1), pos + m.start(1), spaced))
            elif spaced:
                out.extend(self._word(w.group(), pos + m.start() + w.start()) for w in re.finditer(r"\S+", m.group()))
            elif m.group():
                out.extend(self._list(m.group(), pos + m.start()))
        return tuple(i.terms[0][1] if isinstance(i, Affine) and _plain(i) else i for i in out)

    def _affine(self, s: str, pos: int, spaced: bool) -> Affine:
        """`2i+k-1`: terms of a whole-number coefficient and one index each (a letter, or a
        name where the subscript is spaced or the name known), and whole numbers."""
        if not s.strip():
            raise self.error("empty parentheses in a subscript: a shifted index is written (i+k)", pos - 1)
        terms: list[tuple[int, str]] = []
        offset = 0
        k = 0
        term = re.compile(r"\s*([+-])?\s*([0-9]+)?\s*(\*?)\s*([^\W\d_][^\s+\-*()]*)?\s*")
        while k < len(s):
            m = term.match(s, k)
            if m.end() == k or (k > 0 and not m.group(1)):
                raise self._affine_error(s, pos, k)
            sign, digits, star, word = m.groups()
            at = pos + m.start(4) if word else pos + m.start(2) if digits else pos + k
            if digits and m.end() < len(s) and s[m.end()] in ".eE" or word and "." in word:
                raise self.error(
                    f"the coefficients and offset of a shifted index are whole numbers: cannot read ({s.strip()})",
                    pos + m.end(2) if digits else at,
                )
            if not digits and not word:
                raise self._affine_error(s, pos, k)
            value = (-1 if sign == "-" else 1) * (int(digits) if digits else 1)
            if word is None:
                if star:
                    raise self._affine_error(s, pos, m.start(3))
                offset += value
            else:
                index = self._affine_index(word, at, spaced)
                if any(index == name for _, name in terms):
                    raise self.error(
                        f"the index {index} occurs twice in the shifted index ({s.strip()}); write it once, "
                        f"with its coefficient (as in 2{index})", at,
                    )
                if value == 0:
                    raise self.error(f"the coefficient of {index} in ({s.strip()}) is 0; leave the term out", at)
                terms.append((value, index))
            k = m.end()
        if not terms:
            raise self.error(
                f"a shifted index needs an index: ({s.strip()}) is a number (a tensor's entry at a fixed "
                f"position is not written in the notation)", pos,
            )
        return Affine(tuple(terms), offset, pos - 1)

    def _affine_error(self, s: str, pos: int, k: int) -> ParseError:
        return self.error(
            f"cannot read the shifted index ({s.strip()}): write whole-number multiples of indices and whole "
            f"numbers joined by + and -, as in (i+k), (2i+k-1), (e-i)", pos + k,
        )

    def _affine_index(self, word: str, at: int, spaced: bool) -> str:
        if is_letter_index(word) or word in self.names:
            return word
        if is_index_name(word) and (spaced or self.lenient):
            if spaced:
                self.introduced.add(word)
            else:
                self.passed_over = True
            return word
        if is_index_name(word):
            raise self.error(
                f"a term of a shifted index is one index: {word!r} is not a letter (write the subscript "
                f"spaced, x_{{n d ({word} + k)}}, for a name, or declare it: index {word})", at,
            )
        bad = next((k for k, c in enumerate(word) if not _is_name_char(c)), 0)
        raise self.error(f"cannot read the index {word!r} in a shifted index: {_character_problem(word[bad])}", at + bad)

    def _letters(self, s: str, pos: int) -> tuple[str, ...]:
        bad = next((k for k, c in enumerate(s) if not _is_name_char(c)), None)
        if bad is not None:
            raise self.error(f"cannot read indices {s!r}: {_character_problem(s[bad])}", pos + bad)
        found = list(re.finditer(r"[^\W\d_][0-9]*", s))
        covered = 0
        for m in found:
            if m.start() != covered:
                break
            covered = m.end()
        if covered != len(s):
            raise self.error(
                f"cannot read indices {s!r}: an index is one letter, optionally followed by digits",
                pos + covered,
            )
        return tuple(m.group() for m in found)


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
            if tok.kind == "op" and tok.value in _OPENING + _CLOSING:
                depth += 1 if tok.value in _OPENING else -1
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


def written_subscript(indices) -> str:
    """`_ij`, or `_{batch out}` where a name is among the indices: an index list quoted in
    a message as it is written."""
    if all(is_letter_index(i) for i in indices):
        return "_" + "".join(indices)
    return "_{" + " ".join(indices) + "}"


def _with_calls_relabelled(node: Expr, slot: Expr, arg: Expr, index: str, span=None) -> Expr:
    """`node` with each call on `slot` made a call on `arg` relabelled to `index`, at the
    Jacobian's `span` (so that a refusal of the relabelling points at what was written)."""
    if isinstance(node, Call) and node.arg == slot:
        return Call(node.func, arg, index, span=span)
    children = node.children()
    if not children:
        return node
    from .expr import with_children

    return with_children(node, tuple(_with_calls_relabelled(c, slot, arg, index, span) for c in children))


def _check_jacobians(node: Expr, jacobians: list, text: str) -> None:
    """`σ_{i,m}(u)` has i free, like the Jacobian J_im it is. Read as the product
    σ'_i(u) δ_im, i is summed wherever nothing else in the product carries it and it is
    not fixed from outside (a bare `σ_{i,m}(u)`, or `y_m = σ_{i,m}(u)`); refused there,
    since the sum σ'(u_m) is not what was written."""
    if not jacobians:
        return
    from .indices import occurrence_counts

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
