"""Reading the line and the caret off an error message, for the tests of errors."""

from __future__ import annotations

import re

import pytest

import indexcalc as ic


def caret(err: ic.IndexCalcError) -> tuple[int, str, int]:
    """(line number, quoted line, column of the caret in that line) read off a message."""
    lines = str(err).split("\n")
    assert len(lines) >= 3, f"no quoted line and caret in:\n{err}"
    quoted, marker = lines[-2], lines[-1]
    m = re.match(r"  line (\d+): ", quoted)
    assert m, f"no 'line N:' before the quoted text in:\n{err}"
    assert marker.strip() == "^", f"the last line is not a lone caret in:\n{err}"
    return int(m.group(1)), quoted[m.end():], marker.index("^") - m.end()


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the line of `text` that holds `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def assert_points_at(err: ic.IndexCalcError, text: str, where) -> None:
    """The caret stands under character `where` of `text` (an offset into the whole text,
    or a (low, high) range of acceptable offsets), on the line that holds it; a long line
    is quoted as a window around the caret, "…" where it is cut."""
    low, high = (where, where) if isinstance(where, int) else where
    line_number, quoted, column = caret(err)
    line_start = text.rfind("\n", 0, low) + 1
    line = text[line_start:].split("\n")[0]
    assert line_number == text.count("\n", 0, low) + 1, str(err)
    cut_left = quoted.startswith("…") and not line.startswith("…")
    window = quoted[1:] if cut_left else quoted
    window = window[:-1] if window.endswith("…") and not line.endswith("…") else window
    column -= cut_left
    offsets = [k for k in range(len(line) - len(window) + 1) if line.startswith(window, k)]
    assert offsets, f"the quoted text is not part of the line:\n{err}"
    assert any(low - line_start <= k + column <= high - line_start for k in offsets), (
        f"caret at column {column} of the window, expected {low - line_start}..{high - line_start} of the line:\n{err}"
    )


def assert_parse_refuses(text: str, fragment: str, where) -> None:
    """`ic.parse(text)` raises a ParseError that says `fragment` and points at `where`
    (as `assert_points_at` takes it): the shape of every table of refusals."""
    with pytest.raises(ic.ParseError) as info:
        ic.parse(text)
    assert fragment in str(info.value)
    assert_points_at(info.value, text, where)
