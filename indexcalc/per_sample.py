"""A model's per-sample equations written over a batch: the index n joins every data
tensor and everything computed from one, and the per-sample loss is reduced over n.

    h_i = σ(W_ij x_j)              h_ni = σ(W_ij x_nj)
    loss = (h_i - y_i)(h_i - y_i)  loss_sample_n = (h_ni - y_ni)(h_ni - y_ni)
                                   loss = mean_n(loss_sample_n)

A derivative by a data tensor is each sample's own (an input gradient, a gradient
penalty): per sample, `g_j = D_{,(j)}[x]` is ∂D/∂x_j, so over the batch it is
∂D_n/∂x_nj. A sample's D reads only that sample's x, so this is the derivative of D
summed over the batch, which the notation writes: `Dbatch = sum_m(D_m)`, then
`g_nj = Dbatch_{,(nj)}[x]`, one reverse pass however large the batch (the Jacobian of
every D_m by every x_nj, almost all zeros, is never formed).

What batching cannot write is refused here, in the user's terms, rather than by a route
that would speak of equations the user never wrote."""

from __future__ import annotations

from typing import Sequence

from .declarations import ModelError
from .errors import IndexCalcError
from .expr import Deriv, Equation, Reduce, Shift, Tensor, map_tensors
from .program import check_program
from .relabel import letters_in, substitute_letters

SUMMED_LETTERS = "mpqrstuvabcdefghkαβγεζηθικλμνξπρστυφχψω"  # the batch sum's letter: the first unused


def batched(equations: Sequence[Equation], n: str, data: Sequence[str], loss: str, reduce: str) -> list[Equation]:
    """The equations over the batch index `n` (not used by them), the loss reduced by
    `reduce` ("mean" or "sum") where it depends on data. Raises ModelError with `pos` at
    the user's text where it points."""
    equations = [_shift_letter_moved(eq, n) for eq in equations]
    used = set().union(*(letters_in(eq) for eq in equations))
    if n in used:
        span = next((t.span for eq in equations for t in eq.walk() if isinstance(t, Tensor) and n in t.indices), None)
        raise ModelError(f"the batch index {n} is already used in the equations: with 'batch {n} {reduce}' the "
                         f"equations are written per sample, without {n}; pick another letter, or write 'batch none'",
                         pos=span[0] if span else None, about="batch")
    per_sample = {eq.lhs.name: eq.lhs for eq in equations}
    names = set(per_sample) | {t.name for eq in equations for t in eq.walk() if isinstance(t, Tensor)}
    summed = next(c for c in SUMMED_LETTERS if c not in used and c != n)
    is_batched = set(data)
    totals: dict[str, str] = {}  # a tensor's name → the name of its sum over the batch
    out: list[Equation] = []
    origin: list[Equation] = []  # the user's equation each line of `out` comes from

    def over_batch(t: Tensor) -> Tensor:
        # a derivative of an input is an array the user gives (as on every route), not one taken here
        by_data = [d for d in t.derivs if d.wrt in is_batched] if t.name in per_sample else []
        if not by_data:
            return Tensor(t.name, (n,) + t.indices, t.derivs, span=t.span) if t.name in is_batched else t
        if len(by_data) > 1:
            raise ModelError(f"{t} differentiates by data ({', '.join(d.wrt for d in by_data)}) more than once; "
                             f"a per-sample derivative by data is taken once in a term", pos=_at(t))
        derivs = tuple(Deriv((n,) + d.indices, d.wrt) if d is by_data[0] else d for d in t.derivs)
        if t.name not in is_batched:  # reads no data at all: a derivative of zeros, its shape kept
            return Tensor(t.name, t.indices, derivs, span=t.span)
        if t.name not in totals:
            lhs = per_sample[t.name]
            # a scalar's name takes no `_`, which would read as its indices
            totals[t.name] = _fresh(f"{t.name}_batch" if lhs.indices else f"{t.name}batch", names)
            out.append(Equation(Tensor(totals[t.name], lhs.indices),
                                Reduce("sum", (summed,), Tensor(t.name, (summed,) + lhs.indices))))
            origin.append(current)
        return Tensor(totals[t.name], t.indices, derivs, span=t.span)

    seen_loss = False
    for current in equations:
        if seen_loss:
            reader = next((t for t in current.rhs.walk() if isinstance(t, Tensor) and t.name == loss), None)
            if reader is not None:
                raise ModelError(
                    f"{current.lhs.name} reads {loss}, the loss, after it is reduced over the batch ({reduce} over "
                    f"{n}): each sample's loss or the batch's? For each sample's, compute {current.lhs.name} "
                    f"from what {loss} is computed from, before it; for the batch's, make {current.lhs.name} "
                    f"the loss", pos=_at(reader), about="loss")
        rhs = map_tensors(current.rhs, over_batch)
        depends = any(isinstance(t, Tensor) and (t.name in is_batched or n in t.all_indices) for t in rhs.walk())
        if current.lhs.name == loss:
            seen_loss = True
            if depends:
                sample = Tensor(_fresh(f"{loss}_sample", names), (n,) + current.lhs.indices)
                out.append(Equation(sample, rhs))
                origin.append(current)
                rhs = Reduce(reduce, (n,), Tensor(sample.name, sample.indices))
            out.append(Equation(Tensor(loss, current.lhs.indices), rhs))
            origin.append(current)
            continue
        lhs = current.lhs
        if depends:
            is_batched.add(lhs.name)
            lhs = Tensor(lhs.name, (n,) + lhs.indices, lhs.derivs)
        out.append(Equation(lhs, rhs))
        origin.append(current)
    _check(out, origin, n)
    return out


def _check(out: list[Equation], origin: list[Equation], n: str) -> None:
    """Refuse, naming the user's line, a batched program no route would take (an
    exponent that is data, `x^a`, gains the index n, which an exponent may not carry)."""
    try:
        check_program(out)
    except IndexCalcError:
        for k in range(1, len(out) + 1):
            try:
                check_program(out[:k])
            except IndexCalcError as err:
                raise ModelError(f"batched over {n}, {origin[k - 1]} becomes {out[k - 1]}: {err.problem}",
                                 pos=_at(origin[k - 1].lhs), about="batch") from None
        raise


def _at(t: Tensor) -> int | None:
    return t.span[0] if t.span else None


def _fresh(base: str, taken: set[str]) -> str:
    name = next(f"{base}{k or ''}" for k in range(1 << 30) if f"{base}{k or ''}" not in taken)
    taken.add(name)
    return name


def _shift_letter_moved(eq: Equation, letter: str) -> Equation:
    """`eq` with the letter a shifted index stands for (p in x_{(i+k)}, chosen by the
    parser and shown nowhere) moved off the batch letter: the user did not write it."""
    if not any(isinstance(s, Shift) and s.index == letter for s in eq.rhs.walk()) or letter in eq.lhs.all_indices:
        return eq
    new = next(f"{letter}{k}" for k in range(1, 1 << 30) if f"{letter}{k}" not in letters_in(eq))
    return substitute_letters(eq, {letter: new})
