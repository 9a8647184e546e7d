"""Lowering equations to a plan: straight-line NumPy, one step per operation.

A plan is made once per shape signature and then run many times. Every product is one
contraction; opt_einsum chooses the pairwise order, and each pair becomes the BLAS call
it amounts to (`@` on transposed views, a batched `np.matmul`, or a broadcast multiply)
instead of a dispatch through einsum, whose per-call overhead is larger than a small
network's whole backward pass. The steps are emitted as Python source and compiled
(indexcalc.emit), so a call runs no planning and no interpretation; how a step is spelled
for NumPy or for another backend's namespace is its dialect (indexcalc.dialects).

A mask `[j <= i]` is a constant of the shapes: its array is made once when the plan is
made, held by the plan, and contracted like any operand (a causal softmax multiplies by
it). A max or min reduces the body's array with NumPy; its backward pass is the adjoint
times the tie weights that `diff` writes, a comparison and a count, never a Jacobian.

A shifted index (`x_{nd(i+k)}`, held as x_{ndp} δ_{p(i+k)}) is never a dense 0/1 array
where the plan can help it: summed against an array, the δ is that array's sliding
windows over (i, k), a view, which the contraction then reads as one matmul operand (a
convolution is im2col and a matmul); with its index in the result (the transposed
convolution of a backward pass), the rest is contracted over (i, k) and added into place
by strided slices (col2im). Strides, dilations, reversed letters and zero padding are
slices and np.pad. See `Lowering.shifted`.

Equal subexpressions are computed once: each node is keyed by its canonical form (free
indices numbered in order of appearance, bound ones renamed), so `W_gj x_nj + b_g` in a
gradient reuses the forward pass's `W_ij x_nj + b_i`, and `tanh'(u)` is computed from
the forward `tanh(u)` where the function table says how.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from math import prod
from typing import Callable, Mapping, Sequence

import numpy as np
import opt_einsum

from . import functions, matrices
from .dialects import NUMPY_CODE, Dialect
from .emit import FEW, FEW_LIMIT, FEW_REST
from .errors import IndexCalcError, ShapeError
from .memory import human_size, memory_size
from .expr import (
    MATRIX_REDUCTIONS, Call, Compare, Delta, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Reduce, Shift,
    Sum, Tensor, leaf_factors,
)
from .indices import free_indices, infer_sizes
from .shifts import shift_array, weights
from .printing import format_number, quoted
from .program import Environment, sized_by, unknown_size
from .relabel import canonical_bound, fresh_letters, letters_in, rename


CHAIN = 64  # operands on one line of a plan


class _Sizes(dict):
    """Index letter -> size; a letter no array sizes (`y = δ_ij δ_ij`) is the error that
    evaluate gives, not a KeyError."""

    def __missing__(self, index: str) -> int:
        raise unknown_size(index)


@dataclass(frozen=True)
class Operand:
    """A value during lowering: code (a variable or a literal) and its axes' letters. A
    literal also holds its value, so that operations on literals are done while planning,
    in NumPy, as evaluate does them, and never by Python's float arithmetic in the plan."""

    code: str
    letters: tuple[str, ...]
    value: np.floating | None = None

    @property
    def literal(self) -> bool:
        return self.value is not None


def literal(value: float) -> str:
    """Source text that reads back as exactly `value` (inf and nan included) and binds
    as tightly as a name, so that no operator around it can change what it means."""
    value = float(value)
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        text = "-np.inf" if value < 0 else "np.inf"
    else:
        text = format_number(value) if value else repr(value)  # repr keeps -0.0's sign
    return f"({text})" if text.startswith("-") else text


def derivative_sizes(lhs: Tensor, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, str]]:
    """The sizes evaluate gives a comma derivative's indices, found by evaluate's own rule
    (Environment._derivative_sizes) from shapes alone: zero-strided stand-ins carry the
    shapes without the data."""
    stand_ins = {k: np.broadcast_to(np.empty(()), shapes[k]) for k in sized_by(lhs) if k in shapes}
    return Environment(stand_ins)._derivative_sizes(lhs)


@dataclass(frozen=True)
class Step:
    out: str
    code: str
    routine: str
    spec: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        spec = f"  [{self.spec}]" if self.spec else ""
        return f"{self.out} = {self.code}    # {self.routine}{spec} -> {self.shape}"


class Lowering:
    """Turns equations, in order, into steps; tensors are looked up by key.

    `dtypes` are the inputs' float types. Numbers and δs take their common type, as in
    evaluate; where the inputs' types differ, a literal is written with its type
    (`np.float64(3)`), since a bare Python number would leave a float32 operand's type
    alone where evaluate's number promotes it. `known` holds the shapes of arrays given
    but not read, which may still size a derivative.
    """

    def __init__(self, inputs: dict[str, tuple[int, ...]], size_constants: dict[str, tuple[str, ...]] | None = None,
                 dtypes: Sequence[np.dtype] = (), known: Mapping[str, tuple[int, ...]] | None = None,
                 code: "Dialect | None" = None):
        self.code = code or NUMPY_CODE  # how a step is spelled for the backend the plan runs on
        self.size_constants = size_constants or {}  # key -> indices: the constant 1/(their sizes)
        self.known = dict(known or {})
        self.means: dict[str, Operand] = {}
        self.steps: list[Step] = []
        self.env: dict[str, str] = {}
        self.env_shapes: dict[str, tuple[int, ...]] = {}  # tensor key -> its array's shape (kept as env grows)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.cache: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.pairs: dict[tuple, tuple[str, tuple[int, ...]]] = {}  # pair's: its operands, letters → result
        self.count = 0
        self.sizes: dict[str, int] = _Sizes()
        self.order: dict[str, int] = {}
        self.inputs = list(inputs)
        self.constants: dict[str, np.ndarray] = {}  # name in the plan's namespace -> a mask's array
        self.masks: dict[tuple, str] = {}  # a mask's kind, shape and layout -> the variable holding it
        self.solves: dict[tuple, str] = {}  # np.linalg.solve steps by their operands
        self.dtype = np.result_type(*dtypes).name if dtypes else "float64"
        self.memory = memory_size()
        self.typed = len(set(dtypes)) > 1
        for key, shape in inputs.items():
            var = self._var()
            self._emit(var, f"arrays[{key!r}]", "input", key, shape)
            self.env[key] = var
            self.env_shapes[key] = self.shapes[var]

    # --- bookkeeping
    def _var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def _emit(self, var: str, code: str, routine: str, spec: str, shape) -> str:
        self.steps.append(Step(var, code, routine, spec, tuple(shape)))
        self.shapes[var] = tuple(shape)
        return var

    def _store(self, code: str, letters: tuple[str, ...], routine: str, spec: str = "") -> Operand:
        shape = [self.sizes[i] for i in letters]
        nbytes = prod(shape) * np.dtype(self.dtype).itemsize
        if self.memory is not None and nbytes > self.memory:  # refused before the first step runs, not a MemoryError
            raise ShapeError(f"the plan's step {routine} makes an array of shape {tuple(shape)} over "
                             f"{', '.join(letters)}: {human_size(nbytes)}, more than this machine's memory "
                             f"({human_size(self.memory)})")
        var = self._var()
        self._emit(var, code, routine, spec, shape)
        return Operand(var, letters)

    def leaf(self, node: Tensor) -> Operand:
        """A tensor as an operand; a mean's constant 1/N is a literal, its N taken from the
        sizes of the line the mean is on, where it is first met (the adjoints reuse it)."""
        if node.key not in self.size_constants:
            return Operand(self.env[node.key], node.all_indices)
        if node.key not in self.means:
            self._mean(node.key, self.sizes)
        return self.means[node.key]

    def _mean(self, key: str, sizes: "_Sizes") -> None:
        """The mean `key`'s constant 1/N, N the sizes of its letters in `sizes`."""
        count = prod(sizes[i] for i in self.size_constants[key])
        if count == 0:  # as infer_sizes refuses it on the other routes (a shift left it empty)
            empty = ", ".join(i for i in self.size_constants[key] if sizes[i] == 0)
            raise ShapeError(f"mean_{empty} runs over no value of {empty}: its valid range is empty")
        self.means[key] = self.constant(1.0 / count)

    def _means_on(self, written: Equation, fixed: frozenset[str], preset) -> None:
        """The constants 1/N of the means first met on `written`, N from its letters' sizes:
        the letters a mean was recorded with are that line's, and reading a named sum
        through writes the line again, where they may have moved to fresh ones (o to o~1)."""
        keys = [t.key for t in written.rhs.walk()
                if isinstance(t, Tensor) and t.key in self.size_constants and t.key not in self.means]
        if keys:
            sizes = self._line_sizes(written.rhs, fixed, preset)
            for key in dict.fromkeys(keys):
                self._mean(key, sizes)

    def _line_sizes(self, rhs: Expr, fixed: frozenset[str], preset) -> "_Sizes":
        """Each letter of a line's right-hand side with its size, from the arrays so far."""
        shapes = self.env_shapes
        return _Sizes(_plain_sizes(rhs, shapes, preset) or infer_sizes(rhs, shapes, fixed, preset))

    def constant(self, value) -> Operand:
        """A literal in the plan's float type, as evaluate makes its numbers."""
        value = np.dtype(self.dtype).type(value)
        text = literal(value).replace("np.", self.code.ns + ".")
        return Operand(f"{self.code.ns}.{self.dtype}({text})" if self.typed else text, (), value)

    def fold(self, compute: Callable[[], float]) -> Operand:
        """An operation on literals done now, in NumPy, quiet as evaluate is about inf and nan."""
        with np.errstate(all="ignore"):
            return self.constant(compute())

    # --- equations
    def equation(self, eq: Equation, like: str | None = None, written: Equation | None = None) -> str:
        """Lower one equation; `like` names a tensor whose shape its result has (the
        adjoint of x is shaped like x, even where it is constant along an axis); `written`
        is the line as compile wrote it, where its means' letters are (`eq` may be it
        read through a named sum, on fresh letters)."""
        shapes = self.env_shapes
        fixed = frozenset(eq.lhs.all_indices)
        sizing = {k: shapes[k] if k in shapes else self.known[k] for k in sized_by(eq.lhs) if k in shapes or k in self.known}
        preset = derivative_sizes(eq.lhs, sizing)
        if like is not None:
            preset = {i: (n, like) for i, n in zip(eq.lhs.all_indices, self.shapes[self.env[like]])}
        self.sizes = self._line_sizes(eq.rhs, fixed, preset)
        missing = [i for i in eq.lhs.all_indices if i not in self.sizes]
        if missing:
            raise ShapeError(f"{unknown_size(missing[0], eq.rhs)}, in {quoted(eq.lhs)}")
        if written is not None and written != eq:
            self._means_on(written, fixed, preset)
        self.order = {index: k for k, index in enumerate(eq.lhs.all_indices)}
        result = self.lower(eq.rhs, fixed)
        var = self.arrange(result, eq.lhs.all_indices, broadcast=True)
        self.env[eq.lhs.key] = var
        self.env_shapes[eq.lhs.key] = self.shapes[var]
        return var

    def arrange(self, op: Operand, target: tuple[str, ...], broadcast: bool = False) -> str:
        """A variable holding `op` with axes in `target` order (absent axes broadcast)."""
        code = self.aligned(op, target)
        full = tuple(self.sizes[i] for i in target)
        present = all(i in op.letters for i in target)
        if op.literal and broadcast:
            return self._store(self.code.full(full, code, self.dtype), target, "broadcast").code
        if op.literal or not present:
            code = f"{self.code.ns}.broadcast_to({code}, {full})" if broadcast else code
            return self._store(self.code.copy(code) if broadcast else code, target, "broadcast").code
        if code == op.code:
            return op.code
        return self._store(code, target, "transpose").code

    def aligned(self, op: Operand, target: tuple[str, ...], leading: bool = True) -> str:
        """Code for `op` transposed and expanded so that it broadcasts against `target`.
        Without `leading`, axes missing before its first letter are left to broadcasting
        (`b` for `b[None, :]`: an elementwise operator adds them; an index costs a view)."""
        if op.literal or not op.letters:
            return op.code
        present = [i for i in target if i in op.letters]
        perm = [op.letters.index(i) for i in present]
        code = op.code
        if perm != list(range(len(perm))):
            code = self.code.transpose(code, tuple(perm))
        if len(present) < len(target):
            axes = [':' if i in op.letters else 'None' for i in target]
            if not leading:
                axes = axes[axes.index(':'):]
            if 'None' in axes:
                code = f"{code}[{', '.join(axes)}]"
        return code

    def preferred(self, letters: tuple[str, ...]) -> tuple[str, ...]:
        """Letters in the order of the equation's left-hand side where it has them, so
        results come out laid out as they will be stored (no transposed activations)."""
        return tuple(sorted(letters, key=lambda i: self.order.get(i, len(self.order))))

    # --- expressions
    def key(self, node: Expr, fixed: frozenset[str]) -> tuple[str, tuple[str, ...]]:
        """canonical_key with the sizes of the free letters: a δ's may come from outside it
        (T9#bar_pqrs and T10#bar_pqrs read the same, δ_rs, but r and s have T9's or T10's sizes)."""
        key, order = canonical_key(node, fixed)
        return key + repr(tuple(self.sizes.get(i) for i in order)), order

    def lower(self, node: Expr, fixed: frozenset[str]) -> Operand:
        if isinstance(node, Number):
            return self.constant(node.value)
        if isinstance(node, Tensor) and len(set(node.all_indices)) == len(node.all_indices):
            return self.leaf(node)
        key, order = self.key(node, fixed)
        if key in self.cache:
            return self._held(key, order)
        result = self._lower(node, fixed)
        if not result.literal:
            self.cache[key] = (result.code, tuple(order.index(i) for i in result.letters))
        return result

    def cached(self, node: Expr, fixed) -> Operand | None:
        """The variable already holding `node`'s value (up to its letters' names), on
        `node`'s letters; None if the plan has not computed it."""
        key, order = self.key(node, fixed)
        return self._held(key, order) if key in self.cache else None

    def _held(self, key: str, order: tuple[str, ...]) -> Operand:
        var, positions = self.cache[key]
        return Operand(var, tuple(order[p] for p in positions))

    def _lower(self, node: Expr, fixed: frozenset[str]) -> Operand:
        if isinstance(node, (Tensor, Delta, Mask, Shift, Product)):
            return self.product(node, fixed, self.preferred(free_indices(node, fixed)))
        if isinstance(node, Sum):
            return self.sum(node, fixed)
        if isinstance(node, Compare):
            return self.compare(node, fixed)
        if isinstance(node, Power):
            return self.power(node, fixed)
        if isinstance(node, Call):
            return self.call(node, fixed)
        if isinstance(node, MatrixCall):
            return self.matrix(node.func, node.relabel, self.lower(node.arg, fixed), node)
        if isinstance(node, Reduce):
            return self.reduce(node, fixed)
        raise IndexCalcError(f"cannot plan {type(node).__name__}")

    def sum(self, node: Sum, fixed) -> Operand:
        target = self.preferred(free_indices(node, fixed))
        parts = [(negative, self.lower(term, fixed)) for negative, term in map(_unsigned, node.terms)]
        if all(part.literal for _, part in parts):
            values = [-part.value if negative else part.value for negative, part in parts]
            return self.fold(lambda: functools.reduce(operator.add, values))
        short = len(parts) <= CHAIN  # one line: its operator broadcasts the leading axes (a part line must have them)
        pieces = [(" - " if negative else " + ", self.aligned(part, target, leading=not short), part.letters)
                  for negative, part in parts]
        return self._chained(pieces, target, "add")

    def compare(self, node: Compare, fixed) -> Operand:
        """`[a op b]`, elementwise over the sides' indices (they combine as a sum's terms)."""
        target = self.preferred(free_indices(node, fixed))
        left, right = self.lower(node.left, fixed), self.lower(node.right, fixed)
        if left.literal and right.literal:
            return self.fold(lambda: functions.compare_values(node.op, left.value, right.value, self.dtype))
        code = f"_compare({node.op!r}, {self.aligned(left, target)}, {self.aligned(right, target)}, {self.code.ns}.{self.dtype})"
        return self._store(code, target, f"compare {node.op}")

    def mask(self, node: Mask) -> Operand:
        """The mask's array, made now from the sizes (once per shape signature), laid out
        in the line's order of letters, and held by the plan as a constant: a call reads
        it, never builds it; one step per distinct mask, whatever its letters."""
        array, letters = functions.mask_operand(node, self.sizes.__getitem__, self.dtype)
        wanted = self.preferred(letters)
        flipped = wanted != letters
        key = (node.op, node.offset, node.right is None, node.right == node.left, array.shape, flipped)
        if key not in self.masks:
            name = f"_mask{len(self.constants) + 1}"
            self.constants[name] = np.ascontiguousarray(array.T) if flipped else array
            self.masks[key] = self._store(name, wanted, f"mask {node.op} (a constant of the shapes)").code
        return Operand(self.masks[key], wanted)

    def _chained(self, pieces: list[tuple[str, str, tuple[str, ...]]], letters: tuple[str, ...], routine: str) -> Operand:
        """`a + b - c ...` (or `a * b ...`: each piece is an operator, an operand and the
        operand's letters), in lines of at most CHAIN operands: Python's compiler nests a
        chain one level per operand, and a 10,000-term sum overflowed its stack. A line
        holds the letters of its own operands, not the whole result's: a line of scalars
        is a scalar, and `in_place` writes into a step as large as its shape says."""
        joiner = " * " if pieces[0][0] == " * " else " + "  # a line's signs stay on its line
        while len(pieces) > CHAIN:
            lines = []
            for k in range(0, len(pieces), CHAIN):
                line = pieces[k : k + CHAIN]
                own = tuple(i for i in letters if any(i in held for _, _, held in line))
                lines.append((joiner, self._chained(line, own, routine).code, own))
            pieces = lines
        code = "".join(op + operand for op, operand, _ in pieces)
        code = code[3:] if code.startswith((" + ", " * ")) else "-" + code[3:]
        return self._store(code, letters, routine)

    def power(self, node: Power, fixed) -> Operand:
        """`b * b` for b², `1.0 / b` for 1/b and the like, which keep b's float type: where
        the inputs' types differ, evaluate's typed exponent may promote it, so there it is
        `b ** e`, with e written with its type."""
        base = self.lower(node.base, fixed)
        exponent = self.lower(node.exponent, fixed)
        if base.literal and exponent.literal:
            return self.fold(lambda: np.power(base.value, exponent.value))
        b, e = base.code, exponent.code
        special = {2.0: f"{b} * {b}", -1.0: f"1.0 / {b}", 0.5: f"{self.code.ns}.sqrt({b})", 1.0: b, -2.0: f"1.0 / ({b} * {b})"}
        value = node.exponent.value if isinstance(node.exponent, Number) and not self.typed else None
        return self._store(special.get(value, f"{b} ** {e}"), base.letters, "power")

    def call(self, node: Call, fixed) -> Operand:
        arg = self.lower(node.arg, fixed)
        if arg.literal:
            return self.fold(lambda: functions.lookup(node.func).compute(np.asarray(arg.value)))
        letters = arg.letters
        if node.relabel is not None:
            from .indices import relabelled_index

            source = relabelled_index(node, fixed)
            letters = tuple(node.relabel if i == source else i for i in letters)
            if len(set(letters)) < len(letters):  # σ_i(T_ji) with i fixed outside: σ(T_ii), the diagonal
                arg = self.unary(Operand(arg.code, letters), None)
                letters = arg.letters
        base = functions.lookup(node.func.rstrip("'")) if node.func.endswith("'") else None
        if base is not None and base.prime_from_value and node.func == base.name + "'":
            hit = self.cached(Call(base.name, node.arg, node.relabel), fixed)
            if hit is not None:
                code = base.prime_from_value(self.aligned(hit, letters), self.code.astype)
                return self._store(code, letters, f"{node.func} from {base.name}")
        name = "_fn_" + functions.lookup(node.func).name.replace("'", "_prime")
        return self._store(f"{name}({arg.code})", letters, node.func)

    def full(self, op: Operand, letters: tuple[str, ...]) -> str:
        """Code for `op` with exactly `letters` as axes, broadcast where it is constant."""
        code = self.aligned(op, letters)
        if op.literal or not set(letters) <= set(op.letters):
            code = f"{self.code.ns}.broadcast_to({code}, {tuple(self.sizes[i] for i in letters)})"
        return code

    def matrix(self, name: str, pair: tuple[str, ...], arg: Operand, node: Expr) -> Operand:
        """A matrix function by np.linalg, on the stack of matrices over the pair (its
        axes last, rows then columns), every other letter a batch."""
        batch = self.preferred(tuple(i for i in arg.letters if i not in pair))
        stack = self.full(arg, batch + tuple(pair))
        scalar = matrices.lookup(name).scalar
        return self._store(f"_matrix({name!r}, {stack}, {_where(node)!r})", batch if scalar else batch + tuple(pair),
                           f"np.linalg {name}")

    def solved(self, node: MatrixCall, fixed, operands: list, out: tuple[str, ...]) -> bool:
        """`inv_ij(A) b_j...` as np.linalg.solve(A, b): where one other operand carries
        the inverse's column letter (or its row letter: a solve with Aᵀ) and nothing else
        does, the inverse only multiplies and is never formed. The partner becomes the
        solution, carrying the other letter of the pair; False where no partner fits."""
        i, j = node.relabel
        for contracted, kept, transpose in ((j, i, False), (i, j, True)):
            if contracted in out:
                continue
            holders = [k for k, op in enumerate(operands) if op is not None and contracted in op.letters]
            if len(holders) != 1:
                continue
            partner = operands[holders[0]]
            if kept in partner.letters or partner.letters.count(contracted) != 1:
                continue
            matrix = self.lower(node.arg, fixed)
            batch = self.preferred(tuple(x for x in matrix.letters if x not in node.relabel))
            rest = tuple(x for x in partner.letters if x != contracted and x not in batch)
            rhs = self.aligned(partner, batch + (contracted,) + rest)
            stack = self.full(matrix, batch + (i, j))
            letters = batch + (kept,) + rest
            key = (stack, rhs, transpose)  # the same solve in the forward and backward lines: once
            if key not in self.solves:
                code = f"_solve({stack}, {rhs}, {transpose}, {_where(node)!r})"
                self.solves[key] = self._store(code, letters, "np.linalg solve (the inverse only multiplies)").code
            operands[holders[0]] = Operand(self.solves[key], letters)
            return True
        return False

    def reduce(self, node: Reduce, fixed) -> Operand:
        scale = 1.0 / prod(self.sizes[i] for i in node.indices) if node.op == "mean" else 1.0
        body, indices = node.body, node.indices
        if node.op in ("sum", "mean"):
            # sum_kl(sum_ij(...)) is one contraction over ijkl: a max-pool's backward pass
            # scatters over (i, k) only with both summed where the Shift stands
            while isinstance(body, Reduce) and body.op == "sum" and not set(body.indices) & (fixed | set(indices)):
                body, indices = body.body, indices + body.indices
        inner = fixed | set(indices)
        if node.op in MATRIX_REDUCTIONS:
            return self.matrix(node.op, node.indices, self.lower(node.body, inner), node)
        out = self.preferred(tuple(i for i in free_indices(body, inner) if i not in indices))
        if isinstance(body, (Product, Tensor, Delta, Mask, Shift)) and node.op in ("sum", "mean"):
            return self.product(body, inner, out, scale)
        node = Reduce(node.op, indices, body)
        body = self.lower(node.body, inner)
        axes = tuple(body.letters.index(i) for i in node.indices if i in body.letters)
        count = prod(self.sizes[body.letters[a]] for a in axes)
        rest = prod(self.sizes[i] for i in body.letters) // max(count, 1)
        out = tuple(i for i in body.letters if i not in node.indices)
        total = self.held_sum_of_exps(node, fixed) if node.op == "logsumexp" else None
        if node.op in FEW and 0 < count <= FEW_LIMIT and rest >= FEW_REST:
            code = f"_reduce_few({node.op!r}, {body.code}, {axes})"
        elif total is not None and set(total.letters) == set(out):
            code = f"_reduce({node.op!r}, {body.code}, {axes}, {self.aligned(total, out)})"
        else:
            code = f"_reduce({node.op!r}, {body.code}, {axes})"
        return self._store(code, out, node.op)

    def held_sum_of_exps(self, node: Reduce, fixed) -> Operand | None:
        """For `logsumexp_k(v)` (a softmax's derivative, indexcalc.exponentials.log_of),
        the forward pass's `sum_k(exp(v))` if the plan holds it: the log of that is the
        logsumexp wherever it is in range, and costs no exps (functions.reduce_array)."""
        return self.cached(Reduce("sum", node.indices, Call("exp", node.body)), fixed)

    # --- contractions
    def product(self, node: Expr, fixed, out: tuple[str, ...], scale: float = 1.0) -> Operand:
        factors = [node] if isinstance(node, (Tensor, Delta, Mask, Shift)) else list(leaf_factors(node))
        operands: list[Operand | None] = [self.constant(scale)]
        embeds: list[tuple[str, str]] = []
        inverses: list[tuple[int, MatrixCall]] = []  # placed once the other operands are known
        shifts = [f for f in factors if isinstance(f, Shift)]
        for factor in factors:
            if isinstance(factor, Number):
                operands.append(self.constant(factor.value))
            elif isinstance(factor, Delta):
                for a, b in factor.pairs:
                    if a in out and b in out and a != b:
                        embeds.append((a, b))
                    else:
                        operands.append(self.summed_delta(a, b, out, factors) or self.identity(a, b))
            elif isinstance(factor, Tensor):
                operands.append(self.unary(self.leaf(factor), None))
            elif isinstance(factor, Mask):
                operands.append(self.mask(factor))
            elif isinstance(factor, MatrixCall) and factor.func == "inv":
                inverses.append((len(operands), factor))
                operands.append(None)
            elif not isinstance(factor, Shift):
                operands.append(self.lower(factor, fixed))
        shift_letters = {i for f in shifts for i in f.all_indices}  # a solve must not sum a letter a shift holds too
        for position, inverse in inverses:
            if shift_letters & set(inverse.relabel) or not self.solved(inverse, fixed, operands, out):
                operands[position] = self.lower(inverse, fixed)
        operands = [op for op in operands if op is not None]
        deltas = {i for f in factors if isinstance(f, Delta) for i in f.all_indices}
        operands, scatters = self.shifted(shifts, operands, out, deltas)
        # the free letters δs link form groups, each one diagonal: a letter the factors carry
        # (or the first) stays, the others go on its diagonal (x_j δ_ij: i does, not j), and
        # a second carried letter is masked (x_i z_j δ_ij)
        carried = {i for op in operands for i in op.letters}
        groups: list[list[str]] = []
        for a, b in embeds:
            joined = [g for g in groups if a in g or b in g]
            merged = [i for g in joined for i in g] + [i for i in (a, b) if not any(i in g for g in joined)]
            groups = [g for g in groups if g not in joined] + [merged]
        embeds = []
        for group in groups:
            held = [i for i in group if i in carried]
            rep = held[0] if held else group[0]
            operands += [self.identity(rep, i) for i in held[1:]]
            embeds += [(rep, i) for i in group if i != rep and i not in held]
        embedded = {b for _, b in embeds}
        inner_out = tuple(i for i in out if i not in embedded and i in carried)
        # a scatter's letters stay on the contraction's result, to be added into its index after it
        inner_out += tuple(i for _, terms, _ in scatters for _, i in terms if i not in inner_out)
        literals = [op.value for op in operands if op.literal]
        scale = self.fold(lambda: functools.reduce(operator.mul, literals))
        scalars = [op.code for op in operands if not op.letters and not op.literal]
        arrays = [op for op in operands if op.letters]
        factors = scalars if scale.value == 1 else [scale.code] + scalars
        if arrays:
            result = self.contract(arrays, inner_out)
            if factors:
                pieces = [(" * ", f, ()) for f in factors] + [(" * ", result.code, result.letters)]
                result = self._chained(pieces, result.letters, "scale")
        elif scalars:
            result = self._chained([(" * ", f, ()) for f in factors], (), "multiply")
        else:
            result = scale
        if scatters:
            result = self.scatter(result, scatters)
        for a, b in embeds:
            result = self.embed(result, a, b)
        return result

    # --- shifted indices (convolution)
    def shifted(self, shifts: list[Shift], operands: list[Operand], out, deltas: set[str]):
        """Each Shift of a product as the routine it amounts to, never as a dense array
        where one of these applies. Its relation Σ w·letter + offset = 0 is solved for one
        letter e of weight ±1 (`solve`): a *gather* where e is summed and operands carry
        it (each is replaced by its windows over the other letters, `window`: a
        convolution's x_{nd(i+k)}); a *scatter* where e is in the result and no operand
        carries it (the contraction keeps the other letters and each value is added into
        its position, `scatter`: the transposed convolution). Solving for the largest
        letter leaves the smallest contraction: x_{ndp} δ_{p(i+k)} is windows of x over
        (i, k), not windows of K over (p, i); g_{aci} K_{cb(e-i)} scatters over e, not
        windows of K over (e, i). A Shift sharing a letter with a δ, or the letter it
        would be solved for with another Shift, and one that neither form fits (p, i and
        k all free in `δ_{p(i+k)}`, or p free and carried) stay a dense 0/1 operand, as a
        mask does: correct, and the fallback."""
        scatters = []
        gathers: dict[int, list] = {}  # operand -> its gathers, made at once (one np.pad, one window view)
        letters = [op.letters for op in operands]  # the operands' letters once their windows are taken
        dense = []
        for shift in shifts:
            w = weights(shift)
            others = {i for s in shifts if s is not shift for i in s.all_indices}
            choice = None if set(w) & deltas or 0 in w.values() else self.solve(w, letters, out, others)
            if choice is None:
                dense.append(self.dense_shift(shift))
                continue
            kind, e = choice
            terms = tuple((-w[e] * c, i) for i, c in w.items() if i != e)  # e = Σ coef·letter + offset
            gather = (e, self._ordered(terms), -w[e] * shift.offset)
            if kind == "scatter":
                scatters.append(gather)
                continue
            for k, held in enumerate(letters):
                if e in held:
                    gathers.setdefault(k, []).append(gather)
                    letters[k] = _windowed(held, [gather])
        operands = [self.window(op, gathers[k]) if k in gathers else op for k, op in enumerate(operands)]
        return operands + dense, scatters

    def _ordered(self, terms) -> tuple[tuple[int, str], ...]:
        """The longest letter first: it steps along the positions (or is the slice of a
        scatter-add), the others are window axes (or are looped over)."""
        return tuple(sorted(terms, key=lambda t: -self.sizes[t[1]]))

    def solve(self, w: dict[str, int], letters: list[tuple[str, ...]], out, others: set[str]) -> tuple[str, str] | None:
        """("gather" or "scatter", the letter to solve for), or None (the dense fallback).
        `others` are the letters of the product's other Shifts: the letter a gather
        removes must be none of them, and a scatter's letters none at all (the
        windows of x_{(i+k)} z_{(i+k)} share i and k, and that is fine)."""
        if not all(self.sizes[i] for i in w):
            return None  # an empty range: the dense array is empty too
        carried = [i for held in letters for i in held]
        candidates = []
        for e, coef in w.items():
            rest = [i for i in w if i != e]
            if abs(coef) != 1 or not rest or e in others:
                continue
            if e not in out and e in carried and all(held.count(e) < 2 for held in letters):
                candidates.append((self.sizes[e], 1, e, "gather"))
            elif (e in out and e not in carried and not set(rest) & others
                  and all(i not in out and i in carried for i in rest)):
                candidates.append((self.sizes[e], 0, e, "scatter"))
        if not candidates:
            return None
        _, _, e, kind = max(candidates)
        return kind, e

    def window(self, op: Operand, gathers) -> Operand:
        """`op` with each axis e of `gathers` replaced by the letters e = Σ coef·letter +
        offset runs over: NumPy's sliding windows (a view) along that axis, one window
        axis per letter but the longest, which steps along the positions (a stride is the
        slice's step); a coefficient above 1 on a window letter is a dilation (the
        window's step), a negative one reverses that axis, and positions past an edge (an
        offset, or a size declared larger than the valid range) read the zeros of np.pad.
        All of an operand's shifted axes (x_{nd(i+k)(j+l)}) are one view."""
        size = self.sizes
        shape = list(self.shapes[op.code])
        pads, lengths, window_axes, index, relations = [(0, 0)] * len(shape), [], [], [":"] * len(shape), []
        for e, terms, offset in gathers:
            axis = op.letters.index(e)
            start = offset + sum(c * (size[i] - 1) for c, i in terms if c < 0)  # a reversed letter's last value
            span = sum(abs(c) * (size[i] - 1) for c, i in terms)
            lo, hi = max(0, -start), max(0, start + span - (size[e] - 1))
            pads[axis] = (lo, hi)
            (c1, first), windows = terms[0], terms[1:]
            width = [abs(c) * (size[i] - 1) + 1 for c, i in windows]
            length = shape[axis] + lo + hi - sum(width) + len(width)  # positions left along the axis
            index[axis] = _slice(start + lo, start + lo + abs(c1) * (size[first] - 1) + 1, c1, length)
            lengths += width
            window_axes += [axis] * len(width)
            index += [_slice(0, n, c, n) for (c, _), n in zip(windows, width)]
            relations.append(f"{e} = {_linear(terms, offset)}")
        relation = ", ".join(relations)
        code = op.code
        if any(lo or hi for lo, hi in pads):
            padded = [n + lo + hi for n, (lo, hi) in zip(shape, pads)]
            code = self._emit(self._var(), f"{self.code.ns}.pad({code}, {tuple(pads)})", f"zero padding for {relation}", "", padded)
        if lengths:
            code = self.code.windows(code, tuple(lengths), tuple(window_axes))
        while index and index[-1] == ":":
            index.pop()
        if index:
            code = self.code.index(code, index)
        routine = f"windows for {relation}" if lengths else f"strided slice for {relation}"
        return self._store(code, _windowed(op.letters, gathers), routine)

    def scatter(self, op: Operand, scatters) -> Operand:
        """result_{..e..} = Σ op_{..terms..} over e = Σ coef·letter + offset, for each
        scatter at once: zeros, and one strided slice-add per value of the letters but
        the longest of each (the transposed convolution's col2im; never a dense (e,
        terms) array). The indices e come last, in order."""
        summed = {i for _, terms, _ in scatters for _, i in terms}
        groups = tuple((tuple(op.letters.index(i) for _, i in terms), self.sizes[e], tuple(c for c, _ in terms), offset)
                       for e, terms, offset in scatters)
        letters = tuple(i for i in op.letters if i not in summed) + tuple(e for e, _, _ in scatters)
        relation = ", ".join(f"{e} = {_linear(terms, offset)}" for e, terms, offset in scatters)
        return self._store(f"_scatter({op.code}, {groups})", letters, f"scatter-add for {relation}")

    def dense_shift(self, shift: Shift) -> Operand:
        """The fallback: the Shift's 0/1 array, made now and held as a constant like a mask."""
        array, letters = shift_array(shift, self.sizes.__getitem__, self.dtype)
        key = ("shift", tuple(weights(shift).values()), shift.offset, array.shape)
        if key not in self.masks:
            name = f"_shift{len(self.constants) + 1}"
            self.constants[name] = array
            self.masks[key] = self._store(name, letters, f"dense {shift} (a constant of the shapes)").code
        return Operand(self.masks[key], letters)

    def summed_delta(self, a: str, b: str, out, factors) -> Operand | None:
        """A δ pair one of whose letters this product sums and no other factor reads:
        Σ_a δ_ab is 1 for every b, so ones over b (or 1, where another factor sizes b, or
        b's size, where b is summed alone too), not an identity matrix summed (n² for the
        mean of a line of per-sample losses); None otherwise."""
        counts: dict[str, int] = {}
        for factor in factors:
            for i in factor.all_indices if isinstance(factor, (Tensor, Delta, Mask, Shift)) else letters_in(factor):
                counts[i] = counts.get(i, 0) + 1
        for lone, other in ((a, b), (b, a)):
            if lone == other or lone in out or counts.get(lone) != 1:
                continue
            if counts.get(other, 0) > 1:
                return self.constant(1.0)
            if other in out:
                return self._store(self.code.full((self.sizes[other],), "1.0", self.dtype), (other,), "ones (δ summed)")
            return self.constant(float(self.sizes[other]))
        return None

    def identity(self, a: str, b: str) -> Operand:
        if a == b:
            return self.constant(1.0)
        return self._store(f"{self.code.ns}.eye({self.sizes[a]}, dtype={self.code.ns}.{self.dtype})", (a, b), "identity (δ kept)")

    def embed(self, op: Operand, a: str, b: str) -> Operand:
        """result_{..a..b..} = op_{..a..} δ_ab, written on the diagonal of zeros."""
        letters = op.letters + (b,) if a in op.letters else op.letters + (a, b)
        if a not in op.letters:
            ns, n = self.code.ns, self.sizes[a]
            code = self.code.full((n,), op.code, self.dtype) if op.literal else f"{ns}.repeat({ns}.expand_dims({op.code}, -1), {n}, -1)"
            op = self._store(code, op.letters + (a,), "broadcast")
            letters = op.letters + (b,)
        shape = tuple(self.sizes[i] for i in letters)
        var = self._var()
        diag = opt_einsum.get_symbol
        src = "".join(diag(k) for k in range(len(letters) - 1))
        spec = src + diag(letters.index(a)) + "->" + src
        code = f"_embed({op.code}, {shape}, {spec!r})"
        self._emit(var, code, "diagonal (δ in the answer)", spec, shape)
        return Operand(var, letters)

    def unary(self, op: Operand, out: tuple[str, ...] | None) -> Operand:
        """Take diagonals of repeated letters (`m_ii`) and sum letters not wanted."""
        if len(set(op.letters)) == len(op.letters) and (out is None or set(op.letters) <= set(out)):
            return op
        letters = tuple(dict.fromkeys(op.letters))
        keep = letters if out is None else tuple(i for i in letters if i in out)
        sym = {i: opt_einsum.get_symbol(k) for k, i in enumerate(letters)}
        spec = "".join(sym[i] for i in op.letters) + "->" + "".join(sym[i] for i in keep)
        if len(set(op.letters)) == len(op.letters):
            axes = tuple(op.letters.index(i) for i in op.letters if i not in keep)
            return self._store(self.code.sum(op.code, axes), keep, "sum", spec)
        return self._store(f"{self.code.ns}.einsum({spec!r}, {op.code})", keep, "einsum (diagonal)", spec)

    def contract(self, operands: list[Operand], out: tuple[str, ...]) -> Operand:
        if not operands:
            return self.constant(1.0)
        counts: dict[str, int] = {}
        for op in operands:
            for i in set(op.letters):
                counts[i] = counts.get(i, 0) + 1
        operands = [self.unary(op, tuple(i for i in op.letters if i in out or counts[i] > 1)) for op in operands]
        if len(operands) == 1:
            return operands[0]
        if len(operands) == 2:
            return self.pair(operands[0], operands[1], out)
        sym = {}
        for op in operands:
            for i in op.letters:
                sym.setdefault(i, opt_einsum.get_symbol(len(sym)))
        spec = ",".join("".join(sym[i] for i in op.letters) for op in operands) + "->" + "".join(sym[i] for i in out)
        shapes = [self.shapes[op.code] for op in operands]
        path, _ = opt_einsum.contract_path(spec, *shapes, shapes=True, optimize="auto")
        pending = list(operands)
        for pair in path:
            picked = [pending[k] for k in pair]
            rest = [op for k, op in enumerate(pending) if k not in pair]
            needed = set(out).union(*(op.letters for op in rest)) if rest else set(out)
            if len(picked) == 1:
                result = self.unary(picked[0], tuple(i for i in picked[0].letters if i in needed))
            else:
                keep = tuple(dict.fromkeys(i for op in picked for i in op.letters if i in needed))
                result = self.pair(picked[0], picked[1], keep) if len(picked) == 2 else self.contract(picked, keep)
            pending = rest + [result]
        return pending[0]

    def pair(self, a: Operand, b: Operand, out: tuple[str, ...]) -> Operand:
        """Two operands contracted, once: the same two variables contracted alike (up to
        the letters' names: a weight's gradient and a bias's reading one Xᵀ·δ) are one step."""
        first, second = sorted((a, b), key=lambda op: op.code)
        names = {i: k for k, i in enumerate(dict.fromkeys(first.letters + second.letters))}
        key = (first.code, tuple(names[i] for i in first.letters), second.code,
               tuple(names[i] for i in second.letters), tuple(names[i] for i in out))
        if key in self.pairs:
            code, positions = self.pairs[key]
            letters = list(names)
            return Operand(code, tuple(letters[k] for k in positions))
        result = self._pair(a, b, out)
        self.pairs[key] = (result.code, tuple(names[i] for i in result.letters))
        return result

    def _pair(self, a: Operand, b: Operand, out: tuple[str, ...]) -> Operand:
        """Two operands, every letter in both of them or in `out`: the right BLAS call."""
        shared = [i for i in a.letters if i in b.letters]
        contracted = [i for i in shared if i not in out]
        batch = [i for i in shared if i in out]
        left = [i for i in a.letters if i not in b.letters]
        right = [i for i in b.letters if i not in a.letters]
        spec = f"{''.join(a.letters)},{''.join(b.letters)}->{''.join(out)}"
        if not contracted:
            letters = tuple(a.letters) + tuple(right)
            code = f"{self.aligned(a, letters)} * {self.aligned(b, letters, leading=False)}"
            return self._store(code, letters, "multiply", spec)
        if not batch and len(a.letters) <= 2 and len(b.letters) <= 2 and len(contracted) == 1:
            if left and right and out.index(right[0]) < out.index(left[0]):
                return self._pair(b, a, out)  # (n, i) is wanted: x @ W.T, not (W @ x.T).T
            k = contracted[0]
            ca = a.code if a.letters[-1] == k else self.code.transpose(a.code, (1, 0))
            cb = b.code if b.letters[0] == k else self.code.transpose(b.code, (1, 0))
            return self._store(f"{ca} @ {cb}", tuple(left) + tuple(right), "matmul", spec)
        return self.batched(a, b, batch, left, contracted, right, spec)

    def batched(self, a, b, batch, left, contracted, right, spec) -> Operand:
        size = self.sizes
        ta = self.aligned(a, tuple(batch + left + contracted))
        tb = self.aligned(b, tuple(batch + contracted + right))
        nb, nl, nk, nr = (prod(size[i] for i in group) for group in (batch, left, contracted, right))
        letters = tuple(batch + left + right)
        shape = tuple(size[i] for i in letters)
        reshape = self.code.reshape
        if not (batch or left or right) and self.code is NUMPY_CODE:
            # a full contraction (a squared norm): one dot of the flattened operands, the
            # numbers of the (1, K) @ (K, 1) matmul without its three reshapes
            return self._store(f"np.vdot({ta}, {tb})", (), "dot", spec)
        if batch:
            product = f"{self.code.ns}.matmul({reshape(ta, (nb, nl, nk))}, {reshape(tb, (nb, nk, nr))})"
        else:
            product = f"({reshape(ta, (nl, nk))} @ {reshape(tb, (nk, nr))})"
        code = reshape(product, shape)
        return self._store(code, letters, "batched matmul" if batch else "tensordot", spec)


_PLAIN = (Tensor, Number, Product, Sum, Power, Compare, Mask)


def _plain_sizes(node: Expr, shapes: Mapping[str, tuple[int, ...]], preset: Mapping[str, tuple[int, str]]) -> dict | None:
    """infer_sizes' answer for a line where the arrays' axes alone size every letter, in
    one pass and without writing the texts its errors would quote; None wherever the line
    needs more of it (a δ, a shift, a relabelling or a matrix function ties letters), or
    may give an error (sizes that disagree, a count that does not match, an empty axis
    under a mean): infer_sizes then answers, as it always has."""
    sizes = {index: size for index, (size, _) in preset.items()}
    for sub in node.walk():
        if isinstance(sub, Tensor):
            shape = shapes.get(sub.key)
            if shape is None:
                continue
            axes = sub.all_indices
            if len(shape) != len(axes):
                return None
            for index, size in zip(axes, shape):
                if sizes.setdefault(index, size) != size:
                    return None
        elif isinstance(sub, Call):
            if sub.relabel is not None:
                return None
        elif isinstance(sub, Reduce):
            if sub.op in MATRIX_REDUCTIONS:
                return None
        elif not isinstance(sub, _PLAIN):
            return None
    return sizes if all(sizes.values()) else None


def _unsigned(term: Expr) -> tuple[bool, Expr]:
    """A term led by a negative number, as the term it subtracts (`a - 2 b`, not `a + -2 * b`)."""
    if isinstance(term, Product) and isinstance(term.factors[0], Number) and term.factors[0].value < 0:
        return True, Product((Number(-term.factors[0].value),) + term.factors[1:])
    return False, term


def canonical_key(node: Expr, fixed: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """A text that names what `node` computes, whatever its letters, and the order of its
    free indices that the text's placeholders stand for."""
    order = free_indices(node, fixed)
    fresh = fresh_letters(letters_in(node) | fixed)
    inner_fixed = set(fixed)
    for n, index in enumerate(order):
        mark = f"<{n}>"  # fixed or not: a free index means the same either way
        node = rename(node, index, mark, frozenset(inner_fixed), fresh)
        inner_fixed = (inner_fixed - {index}) | ({mark} if index in fixed else set())
    node = canonical_bound(node, frozenset(inner_fixed))
    return f"{type(node).__name__}:{node}", order


def _where(node: Expr, width: int = 80) -> str:
    """The formula a plan step computes, for its error message."""
    text = str(node)
    return text if len(text) <= width else text[: width - 1] + "…"


def _linear(terms, offset: int) -> str:
    """`2i + k - 1`: a Shift's solved side, for the plan's listing."""
    text = ""
    for c, i in terms:
        sign = "-" if c < 0 else "+"
        text += f" {sign} {'' if abs(c) == 1 else abs(c)}{i}"
    if offset:
        text += f" {'-' if offset < 0 else '+'} {abs(offset)}"
    text = text[3:] if text.startswith(" + ") else "-" + text[3:]
    return text


def _slice(start: int, stop: int, step: int, length: int) -> str:
    """The slice text for start, start+|step|, ... below stop, run backwards where step < 0."""
    if step < 0:
        last = start + (stop - 1 - start) // -step * -step
        return f"{last}:{start - 1 if start else ''}:{step}"
    text = f"{start or ''}:{stop if stop != length else ''}" + (f":{step}" if step != 1 else "")
    return ":" if text == ":" else text


def _windowed(letters: tuple[str, ...], gathers) -> tuple[str, ...]:
    """An operand's letters once `Lowering.window` has taken its windows: each e becomes
    its first (longest) letter, the window letters come last, in order."""
    first = {e: terms[0][1] for e, terms, _ in gathers}
    return tuple(first.get(i, i) for i in letters) + tuple(i for _, terms, _ in gathers for _, i in terms[1:])
