"""A model's per-sample equations written over a batch: the index n joins every data
tensor and everything computed from one, and the per-sample loss is reduced over n.

    h_i = σ(W_ij x_j)              h_ni = σ(W_ij x_nj)
    loss = (h_i - y_i)(h_i - y_i)  loss = mean_n((h_ni - y_ni)(h_ni - y_ni))

A derivative by a data tensor is each sample's own (an input gradient, a gradient
penalty): per sample, `g_j = D_{,(j)}[x]` is ∂D/∂x_j, so over the batch it is
∂D_n/∂x_nj. A sample's D reads only that sample's x, so this is the derivative of D
summed over the batch, Σ_m D_m by x_nj, which `diff(..., inline=True)` writes out as one
formula with no sum over samples left in it:

    D_by_x_pq = sum_k(tanh'(sum_l(W_kl x_pl) + b_k) W_kq v_k)
    g_nj = D_by_x_nj

one pass over the batch, as backpropagation by hand would make it. Where diff cannot
write the formula (too long to inline), the sum is a line of its own and the term its
derivative (`Dbatch = sum_m(D_m)`, `g_nj = Dbatch_{,(nj)}[x]`): the same numbers, by a
plan that forms the derivative across samples before it sums it.

What batching cannot write is refused here, in the user's terms, rather than by a route
that would speak of equations the user never wrote."""

from __future__ import annotations

from typing import Sequence

from .declarations import ModelError, unused_name
from .errors import IndexCalcError
from .diff import diff
from .expr import Deriv, Equation, Program, Reduce, Shift, Tensor, map_tensors
from .program import check_program
from .relabel import letters_in, substitute_letters

SUMMED_LETTERS = "mpqrstuvabcdefghkαβγεζηθικλμνξπρστυφχψω"  # letters the batching writes: those the user did not


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
    formulas: dict[tuple, tuple[str, bool]] = {}  # a derivative by data → its line, and whether that is a sum
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
        by = Deriv((n,) + by_data[0].indices, by_data[0].wrt)
        others = tuple(d for d in t.derivs if d is not by_data[0])
        if t.name not in is_batched:  # reads no data at all: a derivative of zeros, its shape kept
            return Tensor(t.name, t.indices, (by,) + others, span=t.span)
        key = (t.name, by.wrt, len(by.indices))
        if key not in formulas:
            formulas[key] = written_out(t.name, by)
        name, of_sum = formulas[key]
        if of_sum:
            return Tensor(name, t.indices, (by,) + others, span=t.span)
        # by parameters too: the formula's own derivative, as per sample (the letters say which axis is which)
        return Tensor(name, t.indices + by.indices, others, span=t.span)

    def written_out(name: str, by: Deriv) -> tuple[str, bool]:
        """The name of a line holding ∂(Σ_m f_m)/∂x_n... as a formula (diff's, inlined and
        simplified: one pass over the batch), or, where diff cannot write one, of the sum
        itself, whose derivative the term then takes (a plan that forms it across samples)."""
        lhs = per_sample[name]
        total = Equation(Tensor(unused_name(f"{name}_batch" if lhs.indices else f"{name}batch", names), lhs.indices),
                         Reduce("sum", (summed,), Tensor(name, (summed,) + lhs.indices)))
        formula = _formula(out + [total], by, used | {n, summed})
        if formula is None:
            out.append(total)
            origin.append(current)
            return total.lhs.name, True
        line = unused_name(f"{name}_by_{by.wrt}", names)
        out.append(Equation(Tensor(line, formula.lhs.all_indices), formula.rhs))
        origin.append(current)
        return line, False

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
            # the reduction in the loss's own line: over a line of per-sample losses of its own, the
            # plan's adjoint of mean_n(ℓ_n) was an n×n identity summed (0.8 GB a call at n = 10,000)
            out.append(Equation(Tensor(loss, current.lhs.indices), Reduce(reduce, (n,), rhs) if depends else rhs))
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


def _formula(lines: list[Equation], by: Deriv, avoid: set[str]) -> Equation | None:
    """The derivative of the last of `lines` by `by.wrt`, written out by
    `diff(..., inline=True)`; None where diff refuses (a formula too long to inline)."""
    letters = "".join(c for c in SUMMED_LETTERS if c not in avoid)[: len(by.indices)]
    try:
        return diff(Program(tuple(lines)), f"{by.wrt}_{letters}" if letters else by.wrt, inline=True).equations[-1]
    except IndexCalcError:
        return None


def _at(t: Tensor) -> int | None:
    return t.span[0] if t.span else None


def _shift_letter_moved(eq: Equation, letter: str) -> Equation:
    """`eq` with the letter a shifted index stands for (p in x_{(i+k)}, chosen by the
    parser and shown nowhere) moved off the batch letter: the user did not write it."""
    if not any(isinstance(s, Shift) and s.index == letter for s in eq.rhs.walk()) or letter in eq.lhs.all_indices:
        return eq
    new = next(f"{letter}{k}" for k in range(1, 1 << 30) if f"{letter}{k}" not in letters_in(eq))
    return substitute_letters(eq, {letter: new})
