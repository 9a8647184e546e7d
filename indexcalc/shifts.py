"""Shifted indices (convolution): the one place that says what a `Shift` is in numbers.

`δ_{p(2i+k-1)}` is 1 where p = 2i + k - 1 and 0 elsewhere; `x_{nd(i+k)}` is held as
`x_{ndp} δ_{p(i+k)}`. Two questions every route asks of it are answered here, so that
evaluate, the loops and the compiled plan cannot disagree:

- `inferred_size`: how far a letter that no array sizes runs. In `x_{(a·L + rest + c)}`
  with a > 0 it runs over the valid positions: every L ≥ 0 at which the largest value
  the form takes (the other letters at their largest where their coefficient is
  positive, at 0 where it is negative) still lies inside x. In the transposed form
  `K_{(e-i)}` that simplify makes of a derivative, i runs as in the convolution it
  transposes (e = i + q: the valid range of i over e's size and K's). A size given otherwise (an
  array, the left-hand side) wins, and where it is larger the positions past x's edge
  read zeros: that is padding (`x_{(i+k-1)}` with i sized like x is "same" padding).
- `shift_array`: the dense 0/1 array over the Shift's letters, for the routes that
  contract it as an operand (evaluate is the reference, so small is fine there).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import numpy as np

from .expr import Delta, Expr, Shift, Tensor


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
    """The valid-convolution size of `letter`, a letter of `shift` that `sizes` lacks.

    Read the Shift as `target = a·letter + rest + c` with a > 0, the target its index
    (`δ_{p(2i+k-1)}`: p = 2i + k - 1) or, where the letter's coefficient there is negative,
    a term letter of coefficient +1 moved across (`δ_{q(e-i)}`: e = i + q, so i runs as
    in the convolution this transposes). Then the letter runs over the L ≥ 0 with
    a·L + largest(rest) + c ≤ size(target) - 1, never below 0 of them. None where the
    Shift cannot tell: no such target, or it or another letter has no size yet."""
    w = weights(shift)
    mine = w.get(letter, 0)
    if mine == 0 or letter == shift.index:
        return None
    # the Shift's own index first, when it qualifies (the weights start with it)
    target = next((t for t in w if t != letter and w[t] * mine < 0 and abs(w[t]) == 1), None)
    if target is None or target not in sizes:
        return None
    scale = -w[target]  # target = Σ (w_L / scale) L + offset / scale over the other letters
    rest = [(w[name] * scale, name) for name in w if name not in (target, letter)]
    if any(name not in sizes for _, name in rest):
        return None
    a = mine * scale
    room = sizes[target] - 1 - largest(rest, sizes) - shift.offset * scale
    return room // a + 1 if room >= 0 else 0


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


def sized_letters(factors: "tuple[Expr, ...]", given=(), through_shifts: bool = True) -> set[str]:
    """The letters whose size `factors` tell (their arrays' axes, what δ ties to those,
    what shifts infer from them unless `through_shifts` is off), beside the letters
    `given` sized from outside: the check, without numbers, that `infer_sizes` will find
    a size for a letter."""
    nodes = [n for f in factors for n in f.walk()]
    known = set(given) | {i for n in nodes if isinstance(n, Tensor) for i in n.all_indices}
    pairs = [pair for n in nodes if isinstance(n, Delta) for pair in n.pairs]
    shifted = [n for n in nodes if isinstance(n, Shift)] if through_shifts else []
    known = tied_by_deltas(known, pairs)
    grew = bool(shifted)
    while grew:
        grew = False
        for shift in shifted:
            for letter in set(shift.all_indices) - known:
                if inferred_size(shift, letter, dict.fromkeys(known, 1)) is not None:
                    known.add(letter)
                    grew = True
        if grew:
            known = tied_by_deltas(known, pairs)
    return known


def tied_by_deltas(known: "set[str] | frozenset[str]", pairs) -> set[str]:
    """`known` with every letter a chain of δ pairs ties to one of them: a δ gives the
    size of either letter it pairs once the other has one."""
    known = set(known)
    grew = True
    while grew:
        grew = False
        for a, b in pairs:
            if (a in known) != (b in known):
                known |= {a, b}
                grew = True
    return known
