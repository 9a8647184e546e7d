"""Matrix functions on an index pair: the inverse, the determinant and its log.

The notation, after `σ_i(...)`'s relabelling:

    B_ij   = inv_ij(A_kl)          the inverse; A's pair (k, l), in order of first
                                   appearance, is renamed i, j (rows i, columns j)
    B_nij  = inv_ij(A_nkl)         letters fixed from outside (n) are a batch
    d      = det(A_kl)             det and logdet consume the pair: a scalar per batch
    ll     = logdet(L_ka L_la)     element; the argument is any expression with two
    s_n    = det_kl(A_nkl)         free indices (or the pair named, as sum_kl names its)

An argument that already carries both letters of the relabelling is not renamed:
`inv_ij(S_ji)` is the inverse of the matrix S_ji, (Sᵀ)⁻¹, whether i and j are fixed from
outside or not, so that `B_ij = inv_ij(S_ji)` used as `r_i B_ij r_j` means what
`r_i inv_ij(S_ji) r_j` means. The parser resolves the text into the held form
(`resolve`): an inverse's argument carries the pair under its own letters
(`inv_ij(A_kl)` is held as `inv_ij(A_ij)`, a `MatrixCall`), and det/logdet are
reductions over the pair (`Reduce("det", ("k", "l"), A_kl)`), which binds the letters as
`sum_kl` does. Every function here commutes with transposition (f(Aᵀ) = f(A)ᵀ, det Aᵀ =
det A), so the order of the pair's two letters never changes a value.

logdet is log(det A): defined for det A > 0, -inf where det A = 0 and nan where det A < 0
(as `log(det(A))` is, so the two spellings agree everywhere), computed stably from
`np.linalg.slogdet`. The inverse of a singular matrix is a `SingularMatrixError` on every
route (NumPy refuses it too): a silent inf would poison a training run far from its cause.
det of a singular matrix is 0 and its logdet -inf, which are answers.

The rules on paper, each an entry's `derivative`:
    d(A⁻¹)_ij = -Σ_pq (A⁻¹)_ip dA_pq (A⁻¹)_qj
    d det A  = Σ_kl det A (A⁻ᵀ)_kl dA_kl
    d log det A = Σ_kl (A⁻ᵀ)_kl dA_kl
with (A⁻ᵀ)_kl written as the inverse of the argument with k and l swapped. Adding a
function (`pinv`, `trace`) is adding one entry to `MATRIX_FUNCTIONS`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .errors import IndexCalcError
from .expr import (
    MATRIX_CALLS, MATRIX_REDUCTIONS, Equation, Expr, MatrixCall, Number, Product, Program, Reduce, quoted, with_children,
)
from .indices import beside_fixed, error_at, free_indices, shown_call, shown_indices
from .relabel import fresh_letters, letters_in, rename_fixed

REFERENCE_LIMIT = 4  # the explicit-loop reference works by formula up to 4×4 (4! terms)


class SingularMatrixError(IndexCalcError):
    """A matrix to invert (or solve with) is singular."""


@dataclass(frozen=True)
class MatrixFunction:
    """One matrix function. `scalar`: it consumes its pair (a reduction, det) rather than
    giving a matrix over it (inv). `compute` takes stacked matrices (..., n, n);
    `reference` the entries as rows of arrays (the explicit formula the loops use);
    `derivative` is, for a scalar function, the weight W_kl over the reduction's letters
    with d f = Σ_kl W_kl dA_kl, and for a matrix function (given fresh letters p, q) the
    kernel K with dF_ij = Σ_pq K dA_pq. `latex` is a template with {arg} and {sub}."""

    name: str
    scalar: bool
    compute: Callable[[np.ndarray], np.ndarray]
    reference: Callable[[list], object]
    derivative: Callable[..., Expr]
    latex: str


# ---------------------------------------------------------------- numerics


def _inverse(stack: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(stack)
    except np.linalg.LinAlgError as err:
        raise SingularMatrixError(f"the matrix to invert is singular (np.linalg.inv: {err})") from None


def _logdet(stack: np.ndarray) -> np.ndarray:
    sign, logabs = np.linalg.slogdet(stack)
    undefined = np.where(sign == 0, -np.inf, np.nan).astype(logabs.dtype)  # float32 stays float32
    return np.where(sign > 0, logabs, undefined)


def _leibniz(rows: list) -> object:
    """det by Leibniz's formula: Σ over permutations of sign × Π entries."""
    n = len(rows)
    total: object = 1.0 if n == 0 else 0.0
    for perm in itertools.permutations(range(n)) if n else ():
        inversions = sum(perm[a] > perm[b] for a in range(n) for b in range(a + 1, n))
        term: object = -1.0 if inversions % 2 else 1.0
        for r in range(n):
            term = term * rows[r][perm[r]]
        total = total + term
    return total


def _minor(rows: list, r: int, c: int) -> list:
    return [[x for b, x in enumerate(row) if b != c] for a, row in enumerate(rows) if a != r]


def _adjugate_inverse(rows: list) -> list:
    """A⁻¹ = adj(A) / det A, the adjugate's entry (a, b) being the cofactor (b, a)."""
    n = len(rows)
    det = _leibniz(rows)
    if np.any(np.asarray(det) == 0):
        raise SingularMatrixError("the matrix to invert is singular (its determinant is 0)")
    return [[(-1.0) ** (a + b) * _leibniz(_minor(rows, b, a)) / det for b in range(n)] for a in range(n)]


def _log_leibniz(rows: list) -> object:
    return np.log(_leibniz(rows))


# ---------------------------------------------------------------- derivative rules


def _renamed(node: Expr, mapping: dict[str, str], fixed) -> Expr:
    return rename_fixed(node, mapping, frozenset(fixed), fresh_letters(letters_in(node) | set(mapping.values())))


def transposed_inverse(body: Expr, pair: tuple[str, str]) -> MatrixCall:
    """(A⁻ᵀ)_kl for A = body over the pair (k, l): the inverse of body with k, l swapped."""
    k, l = pair
    return MatrixCall("inv", _renamed(body, {k: l, l: k}, pair), pair)


def _logdet_weight(node: Reduce) -> Expr:
    return transposed_inverse(node.body, node.indices)


def _det_weight(node: Reduce) -> Expr:
    return Product((node, transposed_inverse(node.body, node.indices)))


def _inverse_kernel(node: MatrixCall, p: str, q: str) -> Expr:
    """-(A⁻¹)_ip (A⁻¹)_qj: each inverse's argument carries its own pair of letters."""
    i, j = node.relabel
    left = MatrixCall("inv", _renamed(node.arg, {j: p}, node.relabel), (i, p))
    right = MatrixCall("inv", _renamed(node.arg, {i: q}, node.relabel), (q, j))
    return Product((Number(-1.0), left, right))


MATRIX_FUNCTIONS: tuple[MatrixFunction, ...] = (
    MatrixFunction("inv", False, _inverse, _adjugate_inverse, _inverse_kernel, r"\left({arg}\right)^{{-1}}{sub}"),
    MatrixFunction("det", True, np.linalg.det, _leibniz, _det_weight, r"\det{sub}\left({arg}\right)"),
    MatrixFunction("logdet", True, _logdet, _log_leibniz, _logdet_weight, r"\log\det{sub}\left({arg}\right)"),
)
BY_NAME = {f.name: f for f in MATRIX_FUNCTIONS}
assert tuple(f.name for f in MATRIX_FUNCTIONS if f.scalar) == MATRIX_REDUCTIONS
assert tuple(f.name for f in MATRIX_FUNCTIONS if not f.scalar) == MATRIX_CALLS


def lookup(name: str) -> MatrixFunction | None:
    return BY_NAME.get(name)


def compute(name: str, stack: np.ndarray, where: str = "") -> np.ndarray:
    """`name` of stacked matrices (..., n, n); a singular matrix named by `where`."""
    try:
        with np.errstate(all="ignore"):
            return BY_NAME[name].compute(stack)
    except SingularMatrixError as err:
        raise SingularMatrixError(f"{where}: {err.problem}" if where else err.problem) from None


def reference(name: str, rows: list, where: str = "") -> object:
    """The explicit formula on a matrix given as rows of entries (arrays over the entries
    being computed): Leibniz's determinant, the adjugate inverse."""
    n = len(rows)
    if n > REFERENCE_LIMIT:
        raise IndexCalcError(
            f"the explicit-loop reference computes {name} by formula up to {REFERENCE_LIMIT}×{REFERENCE_LIMIT}, "
            f"but {where or 'the matrix'} is {n}×{n}: use ic.evaluate for larger matrices"
        )
    try:
        with np.errstate(all="ignore"):
            return BY_NAME[name].reference(rows)
    except SingularMatrixError as err:
        raise SingularMatrixError(f"{where}: {err.problem}" if where else err.problem) from None


def solve(stack: np.ndarray, rhs: np.ndarray, transpose: bool = False, where: str = "") -> np.ndarray:
    """Σ_j (A⁻¹)_ij b_j... without the inverse: `stack` (..., n, n), `rhs` (..., n, rest...)
    whose leading axes broadcast against the stack's; (Aᵀ)⁻¹ b with `transpose`."""
    batch = stack.ndim - 2
    rest = rhs.shape[batch + 1 :]
    flat = rhs.reshape(rhs.shape[: batch + 1] + (math.prod(rest),))
    matrix = np.swapaxes(stack, -1, -2) if transpose else stack
    try:
        out = np.linalg.solve(matrix, flat)
    except np.linalg.LinAlgError as err:
        raise SingularMatrixError(f"{where}: the matrix to solve with is singular (np.linalg.solve: {err})") from None
    return out.reshape(out.shape[: batch + 1] + rest)


# ---------------------------------------------------------------- the text's pair


def text_pair(op: str, arg: Expr, fixed: frozenset[str], node: Expr) -> tuple[str, str]:
    """The pair a written matrix function takes: its argument's two free indices beside
    those fixed from outside, in order of first appearance."""
    free = free_indices(arg, fixed)
    candidates = tuple(i for i in free if i not in fixed)
    if len(candidates) != 2:
        raise error_at(
            f"{op}(...) takes a matrix: its argument must have exactly two free indices beside those fixed "
            f"from outside (a batch), but {quoted(arg)} has {shown_indices(candidates)}{beside_fixed(fixed)}",
            node,
        )
    return candidates  # type: ignore[return-value]


def held_inverse(node: MatrixCall, fixed: frozenset[str]) -> MatrixCall:
    """`inv_ij(A_kl)` as held, `inv_ij(A_ij)`: the argument's pair renamed onto the
    relabelling (an argument carrying both letters already is left as it is)."""
    free = free_indices(node.arg, fixed)
    if all(i in free for i in node.relabel):
        return node
    shown = shown_call(node)
    mine = [i for i in node.relabel if i in free]
    if mine:
        batch = [i for i in mine if i in fixed]
        why = (" free, fixed from outside (a batch index: the result would read a diagonal)" if batch
               else " (and not the other)")
        raise error_at(
            f"{shown} renames its argument's pair to {', '.join(node.relabel)}, but {quoted(node.arg)} already carries "
            f"{', '.join(mine)}{why}: name the pair with both letters or with neither",
            node,
        )
    pair = text_pair(shown.removesuffix("(...)"), node.arg, fixed, node)
    arg = _renamed(node.arg, dict(zip(pair, node.relabel)), fixed | set(pair))
    return replace(node, arg=arg)


def resolve(node: Expr, fixed: frozenset[str] = frozenset()) -> Expr:
    """Parsed text in the held form: each inverse's argument carrying its pair under the
    relabelling, each `det(...)`/`logdet(...)` a reduction over its argument's pair."""
    if not any(_unresolved_candidate(sub) for sub in node.walk()):
        return node
    if isinstance(node, Program):
        return Program(tuple(resolve(eq) for eq in node.equations))
    if isinstance(node, Equation):
        return Equation(node.lhs, resolve(node.rhs, frozenset(node.lhs.all_indices)), source=node.source)
    if isinstance(node, Reduce):
        if node.op in MATRIX_REDUCTIONS and not node.indices:
            body = resolve(node.body, fixed)
            return Reduce(node.op, text_pair(node.op, body, fixed, node), body, span=node.span)
        return replace(node, body=resolve(node.body, fixed | set(node.indices)))
    if isinstance(node, MatrixCall):
        return held_inverse(replace(node, arg=resolve(node.arg, fixed)), fixed)
    return with_children(node, tuple(resolve(c, fixed) for c in node.children()))


def _unresolved_candidate(node: Expr) -> bool:
    return isinstance(node, MatrixCall) or (isinstance(node, Reduce) and node.op in MATRIX_REDUCTIONS)
