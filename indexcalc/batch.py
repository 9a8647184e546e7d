"""Which compiled programs are a sum over the batch of per-row terms, and so can run
block by block.

A loss L = Σ_n ℓ(row n) computed on each block of the batch's rows is the sum of the
blocks' losses, and each gradient by an array the rows do not index is the sum of the
blocks' gradients (differentiation is linear); the gradient by a batched array is the
blocks' gradients side by side. A mean over the batch is such a sum times 1/N, so each
block's results are weighted by its rows/N, and then a term that reads no batched array
(a weight penalty) comes out once too, as the weights add to one. This lets a backend
(dask) run the whole NumPy plan on each block, as one task, and add the blocks' results:
a graph of one task per block, not one per step and block.

The decision is by construction, never by numbers. Each line the result needs is read
with its binders written out (`scope.explicit`, so every summed index has a letter of
its own), and must be row by row: where it reads a batched array, the batch index is
one letter, fixed by its left-hand side, at the batch axis of every batched array it
reads and nowhere else (no sum, shift, δ, mask or matrix function over it). The last
line must be a sum of terms, each a sum (or each a mean) over the batch index of such
row-by-row terms, times factors that read no batched array. Anything else — a batch
norm's mean over the batch on a hidden line, a loss that is a function of such a sum,
a pairwise loss, a summed loss plus a penalty — is not split: the caller runs the whole
plan, which is always right.
"""

from __future__ import annotations

from typing import Mapping

from .expr import (
    Call, Delta, Equation, Expr, Mask, MatrixCall, Product, Reduce, Shift, Sum, Tensor, with_children,
)
from .scope import explicit

SUM, MEAN, ONCE = "sum", "mean", "once"


def batch_reduction(forward: list[Equation], scales: Mapping[str, tuple[str, ...]],
                    batch_axes: Mapping[str, int]) -> str | None:
    """"sum" or "mean": how the last line of `forward` (compile's lines, with `scales`,
    its means' constants) reduces over the batch, where the inputs in `batch_axes` are
    batched along those axes and every line it needs is row by row; None where not (or
    where it reads no batched array)."""
    needed = _needed(forward)
    batched = dict(batch_axes)
    for number, line in enumerate(forward):
        if number < len(forward) - 1 and line.lhs.key not in needed:
            continue
        rhs = _means_written_out(line.rhs, scales)
        if rhs is None:
            return None
        eq = explicit(Equation(line.lhs, rhs))
        rows = _Rows(batched)
        if number == len(forward) - 1 or not rows.reads_batch(eq.rhs):
            continue
        letter = rows.batch_letter(eq.rhs)
        if letter is None or eq.lhs.all_indices.count(letter) != 1 or not rows.row_by_row(eq.rhs, letter):
            return None
        batched[eq.lhs.key] = eq.lhs.all_indices.index(letter)
    kind = _Rows(batched).kind(eq.rhs)
    return kind if kind in (SUM, MEAN) else None


def _needed(forward: list[Equation]) -> set[str]:
    """The keys of the lines the last one reads, directly or through others."""
    defined = {eq.lhs.key: eq for eq in forward}
    needed, todo = set(), [forward[-1]]
    while todo:
        eq = todo.pop()
        for node in eq.rhs.walk():
            if isinstance(node, Tensor) and node.key in defined and node.key not in needed:
                needed.add(node.key)
                todo.append(defined[node.key])
    return needed


def _means_written_out(node: Expr, scales: Mapping[str, tuple[str, ...]]) -> Expr | None:
    """`node` with each of compile's `sum_nk(...) #mean0` (#mean0 = 1/N, over the first
    letters of the sum) written back as `mean_n(sum_k(...))`, explicit sums both, so that
    what is a mean is said by the node, wherever `explicit` moves the factors of a
    product; None if a mean's constant is anywhere else."""
    if isinstance(node, Product) and len(node.factors) == 2 and isinstance(node.factors[0], Reduce) \
            and isinstance(node.factors[1], Tensor) and node.factors[1].key in scales:
        total, count = node.factors[0], len(scales[node.factors[1].key])
        body = _means_written_out(total.body, scales)
        if body is None or total.op != "sum" or count > len(total.indices):
            return None
        if count < len(total.indices):
            body = Reduce("sum", total.indices[count:], body)
        return Reduce("mean", total.indices[:count], body)
    if isinstance(node, Tensor) and node.key in scales:
        return None
    children = node.children()
    if not children:
        return node
    new = [_means_written_out(c, scales) for c in children]
    return None if any(c is None for c in new) else with_children(node, tuple(new))


class _Rows:
    """The row-by-row test of one line, given the batch axis of each batched array by key."""

    def __init__(self, batched: Mapping[str, int]):
        self.batched = batched

    def reads_batch(self, node: Expr) -> bool:
        return any(isinstance(t, Tensor) and t.key in self.batched for t in node.walk())

    def batch_letter(self, node: Expr) -> str | None:
        """The one letter at the batch axes of the batched arrays `node` reads, or None
        where they are read at different letters."""
        letters = {t.all_indices[self.batched[t.key]] for t in node.walk()
                   if isinstance(t, Tensor) and t.key in self.batched}
        return letters.pop() if len(letters) == 1 else None

    def row_by_row(self, node: Expr, letter: str) -> bool:
        """Whether `letter` occurs in `node` only at the batch axis of batched arrays."""
        for part in node.walk():
            if isinstance(part, Tensor):
                indices = part.all_indices
                at_batch = part.key in self.batched and indices[self.batched[part.key]] == letter
                if indices.count(letter) != (1 if at_batch else 0) or (part.key in self.batched and not at_batch):
                    return False
            elif isinstance(part, MatrixCall):
                if self.reads_batch(part):  # its matrix axes are the relabelled ones; not worth telling apart
                    return False
            elif letter in _letters_of(part):
                return False
        return True

    def kind(self, node: Expr) -> str | None:
        """ONCE for a term that reads no batched array; SUM or MEAN for a sum or mean over
        the batch of row-by-row terms, times terms read once, summed or averaged over
        other letters, or a sum of those; None for anything else."""
        if not self.reads_batch(node):
            return ONCE
        if isinstance(node, Sum):
            kinds = [self.kind(t) for t in node.terms]
            batch = set(kinds) - {ONCE}
            if None in kinds or len(batch) != 1:
                return None
            kind = batch.pop()
            return kind if ONCE not in kinds or kind == MEAN else None  # a sum's blocks would repeat the once-term
        if isinstance(node, Product):
            batched = [f for f in node.factors if self.reads_batch(f)]
            return self.kind(batched[0]) if len(batched) == 1 else None
        if isinstance(node, Reduce) and node.op in (SUM, MEAN):
            letter = self.batch_letter(node.body)
            if letter is None or letter not in node.indices:
                return self.kind(node.body) if letter is not None else None  # over other letters: linear
            return node.op if self.row_by_row(node.body, letter) else None
        return None


def _letters_of(node: Expr) -> tuple[str, ...]:
    """The letters a node names itself (not its children's)."""
    if isinstance(node, Delta):
        return node.left + node.right
    if isinstance(node, Mask):
        return (node.left,) if node.right is None else (node.left, node.right)
    if isinstance(node, Shift):
        return node.all_indices
    if isinstance(node, Reduce):
        return node.indices
    if isinstance(node, Call):
        return () if node.relabel is None else (node.relabel,)
    return ()

