"""One exception family for everything indexcalc rejects.

Every error a user can cause is an `IndexCalcError`; the subclasses say which stage
objected. An error about text carries the position it concerns, so the message can quote
the line and put a caret under the offending character.
"""

from __future__ import annotations


class IndexCalcError(Exception):
    """Base class of every error indexcalc raises on bad input."""

    def __init__(self, message: str, *, text: str | None = None, pos: int | None = None):
        self.problem = message
        self.text = text
        self.pos = pos
        super().__init__(self._render())

    def with_source(self, text: str, pos: int | None) -> "IndexCalcError":
        """Attach the source text (and a position in it, if not known yet)."""
        if self.text is None:
            self.text = text
            if self.pos is None:
                self.pos = pos
            self.args = (self._render(),)
        return self

    def with_hint(self, hint: str) -> "IndexCalcError":
        """Add a sentence to the problem, for a stage above the one that raised it."""
        if hint and hint not in self.problem:
            self.problem += hint
            self.args = (self._render(),)
        return self

    def _render(self) -> str:
        if self.text is None or self.pos is None:
            return self.problem
        return self.problem + "\n" + point_at(self.text, self.pos)

    def __str__(self) -> str:
        return self._render()


class ParseError(IndexCalcError):
    """The text is not in the notation (bad character, bad grammar, unknown function)."""


class IndexNotationError(IndexCalcError):
    """The indices break a summation rule (mismatched terms, wrong free indices, ...)."""


class ShapeError(IndexCalcError):
    """An array's shape disagrees with its indices or with another array."""


class MissingArrayError(IndexCalcError):
    """A tensor or scalar named in the expression was not given an array."""


class DiffError(IndexCalcError):
    """What to differentiate, or by what, is not well posed."""


class InlineTooLargeError(DiffError):
    """`inline=True` on a derivative whose one formula would be too large to read (or to
    build: each derivative line substituted into another multiplies its terms out, so a
    chain of them grows geometrically); the chain form gives the same numbers."""


class ArgumentError(IndexCalcError, TypeError):
    """A keyword of the API given a value of the wrong kind (`wrt=1.5`, `backend=["jax"]`,
    `inline=array`): the message names the keyword and what it takes. A TypeError too, as
    Python's own calls raise for the wrong kind of argument."""


def kind_of(value) -> str:
    """A value as an error message shows it: short, its type where its text says little."""
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '…' if len(text) > 40 else text}"


def names_argument(value, what: str, example: str) -> list[str]:
    """A keyword that takes names (`wrt`): one name, any iterable of names, or None for
    none; anything else an ArgumentError that says so."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        names = None
    if names is None or isinstance(value, bytes) or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"{what} must be a name or a list of names ({example}), not {kind_of(value)}")
    return names


def optional_name(value, what: str, example: str) -> str | None:
    """A keyword that takes one name or None (`of`, `backend`)."""
    if value is not None and not isinstance(value, str):
        raise ArgumentError(f"{what} must be a name ({example}) or None, not {kind_of(value)}")
    return value


WINDOW = 60  # characters of a long line quoted on each side of the caret


def point_at(text: str, pos: int) -> str:
    """The line of `text` holding `pos`, with a caret under that character; of a long
    line, the WINDOW characters either side, cut with "…" (a 3,000-deep formula's error
    quoted all of it)."""
    pos = max(0, min(pos, len(text)))
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end == -1 else end
    line_number = text.count("\n", 0, start) + 1
    left, right = max(start, pos - WINDOW), min(end, pos + WINDOW)
    shown = ("…" if left > start else "") + text[left:right] + ("…" if right < end else "")
    prefix = f"  line {line_number}: "
    return f"{prefix}{shown}\n{' ' * (len(prefix) + pos - left + (left > start))}^"


def read_as_indices(written: str, name: str, indices) -> str:
    """The sentence a refusal adds where `c_new`, meant as one name, was read as c with the
    indices n, e, w (a letter each, as `w_ij` is w with i and j); nothing where `written` is
    not `name` and two or more indices spelled one after the other. The one test of that
    reading, for the parser's refusals, a Model's declarations and the arrays given."""
    if len(indices) < 2 or written != f"{name}_{''.join(indices)}":
        return ""
    each = " (a letter each)" if all(len(i) == 1 for i in indices) else ""  # w2 is one index, a letter with a digit
    return (f"; {written} reads as {name} with the indices {', '.join(indices)}{each}: "
            f"a scalar named {written} is written {written}_{{}}")


def given_as_one_name(missing: str, given) -> str:
    """That sentence for an array given as `c_new` where the program reads c (with the
    indices n, e, w), or nothing."""
    rests = (str(key)[len(missing) + 1:] for key in given if str(key).startswith(missing + "_"))
    return next((read_as_indices(f"{missing}_{rest}", missing, rest) for rest in rests if rest.isalpha()), "")
