"""Shifted indices (convolution): the one place that says what a `Shift` is in numbers.

`δ_{p(2i+k-1)}` is 1 where p = 2i + k - 1 and 0 elsewhere; `x_{nd(i+k)}` is held as
`x_{ndp} δ_{p(i+k)}`. Two questions every route asks of it are answered here, so that
evaluate, the loops and the compiled plan cannot disagree:

- `inferred_size`: how far a letter that no array sizes runs. In `x_{(a·L + rest + c)}`
  with a > 0 it runs over the valid positions: every L ≥ 0 at which the largest value
  the form takes (the other letters at their largest where their coefficient is
  positive, at 0 where it is negative) still lies inside x. A size given otherwise (an
  array, the left-hand side) wins, and where it is larger the positions past x's edge
  read zeros: that is padding (`x_{(i+k-1)}` with i sized like x is "same" padding).
- `shift_array`: the dense 0/1 array over the Shift's letters, for the routes that
  contract it as an operand (evaluate is the reference, so small is fine there).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import numpy as np

from .expr import Shift


def weights(shift: Shift) -> dict[str, int]:
    """The Shift as the equation Σ w_L·L + offset == 0 over its distinct letters (the
    index with weight -1, plus whatever a renaming merged into it): one coefficient per
    letter, in order of first appearance, zero weights kept (the letter still runs)."""
    out: dict[str, int] = {shift.index: -1}
    for coef, letter in shift.terms:
        out[letter] = out.get(letter, 0) + coef
    return out


def largest(terms, sizes: Mapping[str, int]) -> int:
    """The largest value Σ coef·letter takes with each letter in 0..size-1."""
    return sum(coef * (sizes[letter] - 1) for coef, letter in terms if coef > 0)


def inferred_size(shift: Shift, letter: str, sizes: Mapping[str, int]) -> int | None:
    """The valid-convolution size of `letter`, a term of `shift` that `sizes` lacks: the
    number of L ≥ 0 with a·L + largest(rest) + offset ≤ size(index) - 1 (never below 0).
    None where the Shift cannot tell it: the letter's coefficient is not positive, it
    occurs more than once, or the index or another letter has no size yet."""
    mine = [coef for coef, name in shift.terms if name == letter]
    if len(mine) != 1 or mine[0] <= 0 or letter == shift.index or shift.index not in sizes:
        return None
    rest = [(coef, name) for coef, name in shift.terms if name != letter]
    if any(name not in sizes for _, name in rest):
        return None
    room = sizes[shift.index] - 1 - largest(rest, sizes) - shift.offset
    return max(0, room // mine[0] + 1) if room >= 0 else 0


def shift_array(shift: Shift, size_of: Callable[[str], int], dtype) -> tuple[np.ndarray, tuple[str, ...]]:
    """The Shift as a 0/1 array over its distinct letters (index first), in the float
    type `dtype`; built once per shape and shared (so read-only), like a mask's."""
    w = weights(shift)
    letters = tuple(w)
    sizes = tuple(size_of(letter) for letter in letters)
    return _array(tuple(w.values()), sizes, shift.offset, np.dtype(dtype).name), letters


@functools.lru_cache(maxsize=256)
def _array(coefs: tuple[int, ...], sizes: tuple[int, ...], offset: int, dtype: str) -> np.ndarray:
    total = np.asarray(offset)
    for axis, (coef, n) in enumerate(zip(coefs, sizes)):
        grid = np.arange(n).reshape([n if a == axis else 1 for a in range(len(sizes))])
        total = total + coef * grid
    out = np.broadcast_to(total == 0, sizes).astype(np.dtype(dtype))
    out.flags.writeable = False
    return out


def holds(shift: Shift, at: Callable[[str], object]):
    """Whether the Shift holds at the index values `at` gives (ints or integer arrays,
    broadcast together): the loops' reading, entry by entry."""
    total = shift.offset
    for coef, letter in shift.terms:
        total = total + coef * at(letter)
    return at(shift.index) == total
