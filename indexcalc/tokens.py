"""The notation's tokenizer: text to tokens, each head (`w_ij`, `W1_{i j}`,
`x_{batch in}`, `loss_{,(gh)}[w]`, `σ'`, `δ_(ij)(kl)`) read whole.

A head is a name made of letters, the digits 0-9 and combining marks, joined by
underscores, the part after the last underscore being the subscript; a head directly
followed by `(` is a call. In a subscript, several words are one index each (a letter `i4`,
or a name `batch`); one word alone is letters (`ij` is i, j) unless the text knows it as a
name: written beside another index somewhere (so the text is read twice when it holds
names) or declared (`index batch`).

Characters that look like the notation but would be read as something else are refused
with the spelling meant: a superscript `x²` is not a name `x²` but a power `x^2`, a
full-width `ｘ` is `x`, and numbers are written with 0-9 only. The parser
(indexcalc.notation) reads the tokens into a tree.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import ParseError

DELTA_NAMES = ("delta", "δ")
DECLARATION_WORDS = ("index", "indices")
DIGITS = "0123456789"
_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TRANSPOSE_ADVICE = (
    "the notation needs no transpose: indices name the axes, so the transpose of w_ij is "
    "w_ji and x_i w_ij sums over w's rows (for a power of a scalar named T write x^(T))"
)
_OPERATORS = (
    "**", "<=", ">=", "==", "!=", "+", "-", "*", "/", "^", "=", "(", ")", "[", "]", ",", "<", ">", "≤", "≥", "≠",
)
OPENING, CLOSING = "([", ")]"
PARTIAL = "∂"
SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"


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



def tokenize(text: str, names: frozenset[str]) -> tuple[list[Token], frozenset[str]]:
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


def known_names(text: str) -> frozenset[str]:
    """The index names `text` knows (declared, or written beside another index), so that
    text written apart from it (a wrt string for `diff`) reads a lone name as it does."""
    return tokenize(unicodedata.normalize("NFC", text), frozenset())[1]


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


_DECLARATION = re.compile(r"(?:" + "|".join(DECLARATION_WORDS) + r")[^\S\n]+(?=[^\W\d_])")
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
            elif c == PARTIAL:
                out.append(Token("head", self._partial(), start, self.i))
            else:
                op = next((o for o in _OPERATORS if text.startswith(o, self.i)), None)
                if op is None:
                    raise self.error(_character_problem(c), start)
                depth += 1 if op in OPENING else -1 if op in CLOSING else 0
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

    def _partial(self) -> Head:
        """`∂C/∂b`, `∂y_i/∂b`, `∂²C/∂a∂b`, `∂²C/∂b²`: a derivative by scalars as the notes
        write it (and `pretty()` prints it), read as the comma derivative `C_{,()}[b]`,
        `y_{i,()()}[a,b]`, `C_{,()()}[b]`: the names below the line in the order written."""
        text, start = self.text, self.i
        self.i += 1
        order = self._superscript()
        if not (self.i < len(text) and _is_name_char(text[self.i])):
            raise self.error("∂ is followed by what it differentiates, as in ∂C/∂b", self.i)
        target_at = self.i
        target = self._head()
        if target.derivs or target.groups is not None or target.is_call or target.name in DELTA_NAMES:
            raise self.error("∂C/∂b differentiates a tensor written plainly, as in ∂y_i/∂b", target_at)
        if not text.startswith("/" + PARTIAL, self.i):
            raise self.error(f"{text[start:self.i]} needs what it is taken by, as in {text[start:self.i]}/∂b", self.i)
        self.i += 1
        wrt: list[str] = []
        while text.startswith(PARTIAL, self.i):
            self.i += 1
            name = self._name_part()
            if not name:
                raise self.error("∂ below the line is followed by a name, as in ∂C/∂b", self.i)
            if text.startswith("_", self.i):
                # ∂C/∂w_g could be by the entry g of w or by a scalar named w_g
                written = re.match(r"_(\{[^}]*\}|[^\s/∂()\[\]{}]*)", text[self.i :]).group()
                entries = written[1:].strip("{}").replace(" ", "")
                comma = self._comma_form(target, wrt, entries if len(entries) == 1 else f"({entries})", name)
                if written.startswith("_{"):
                    raise self.error(f"∂ below the line takes scalars; for the derivative by entries of {name} "
                                     f"write {comma}", self.i)
                raise self.error(
                    f"∂{name}{written} reads two ways: by entries of {name} (write {comma}) or by a scalar named "
                    f"{name}{written} (write {self._comma_form(target, wrt, '()', name + written)})", self.i,
                )
            wrt += [canonical_name(name)] * self._superscript()
        if len(wrt) != order:
            raise self.error(
                f"∂{superscripted(order) if order > 1 else ''} above the line asks for {order} derivative"
                f"{'s' if order > 1 else ''} and {len(wrt)} {'is' if len(wrt) == 1 else 'are'} written below it "
                f"(∂²C/∂a∂b, ∂²C/∂b²)", start,
            )
        return Head(target.name, None, target.indices, ((),) * order, tuple(wrt), True, False)

    @staticmethod
    def _comma_form(target: Head, before: list[str], group: str, name: str) -> str:
        """The comma derivative a ∂ form stands for, its last group `group` by `name`."""
        groups = "()" * len(before) + group
        indices = ("" if all(is_letter_index(i) for i in target.indices) else " ").join(target.indices)
        return f"{target.name}_{{{indices},{groups}}}[{','.join(before + [name])}]"

    def _superscript(self) -> int:
        """The count a run of superscript digits writes (`²` in ∂²C or ∂b²), 1 if none."""
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in SUPERSCRIPT_DIGITS:
            self.i += 1
        digits = "".join(str(SUPERSCRIPT_DIGITS.index(c)) for c in self.text[start : self.i])
        if digits and int(digits) == 0:
            raise self.error("a derivative of order 0 is the tensor itself: write it without ∂", start)
        return int(digits) if digits else 1

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


def written_subscript(indices) -> str:
    """`_ij`, or `_{batch out}` where a name is among the indices: an index list quoted in
    a message as it is written."""
    if all(is_letter_index(i) for i in indices):
        return "_" + "".join(indices)
    return "_{" + " ".join(indices) + "}"


def superscripted(count: int) -> str:
    """`2` as `²`: the order of a derivative written as the notes write it."""
    return "".join(SUPERSCRIPT_DIGITS[int(d)] for d in str(count))
