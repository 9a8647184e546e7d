"""A plan's steps to Python source, and the namespace that source runs in on NumPy.

The lowering (indexcalc.plan) writes one step per operation; here the steps become the
body of `def plan(arrays)`: each variable deleted after its last use, as hand-written code
frees memory, and on NumPy an elementwise step written into an operand it is the last to
read. Beside NumPy, the code calls a few routines of its own (the scatter-add of a
transposed convolution, reductions over a few large values, an in-place σ), which
`NAMESPACE` holds; other backends bind their own versions (indexcalc.backends.routines).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import re
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from . import functions, matrices
from .dialects import NUMPY_CODE

if TYPE_CHECKING:
    from .plan import Lowering, Step


def _scatter(values: np.ndarray, groups) -> np.ndarray:
    """out[..., e1, e2, ...] = Σ values over each e = offset + Σ steps·l, for each group
    (the axes of values that hold its l's, e's size, the steps, the offset); the e's
    come last. One strided slice-add along each group's first l per value of the others
    (a 3x3 kernel's col2im: nine). A negative step runs its axis backwards; a position
    outside 0..size-1 is dropped (what a zero padding in the forward pass read)."""
    order, flips, shape, adds, crop = scatter_layout(values.shape, groups)
    values = np.moveaxis(values, order, tuple(range(-len(order), 0)))
    if adds is None:  # the windows tile the positions (2x2 pooling, stride 2): a reshape
        return values.reshape(shape)
    if flips:
        values = np.flip(values, flips)
    out = np.zeros(shape, dtype=values.dtype)
    for into, take in adds:
        out[into] += values[take]
    return out[crop] if crop else out


@functools.lru_cache(maxsize=1024)
def scatter_layout(shape: tuple[int, ...], groups):
    """_scatter's indexing, worked out once per shape: the axes moved last, those run
    backwards, the output's shape (padded), each slice-add's (into, take) and the crop."""
    order = tuple(a for group in groups for a in group[0])
    lengths = tuple(shape[a] for a in order)
    keep = len(shape) - len(order)
    flips, firsts, loops, out, crop, at = [], [], [], [n for a, n in enumerate(shape) if a not in order], [], keep
    for _, size, steps, offset in groups:
        n = lengths[at - keep : at - keep + len(steps)]
        start = offset + sum(c * (m - 1) for c, m in zip(steps, n) if c < 0)
        flips += [at + k for k, c in enumerate(steps) if c < 0]
        steps = tuple(abs(c) for c in steps)
        lo, hi = max(0, -start), max(0, start + sum(c * (m - 1) for c, m in zip(steps, n)) - (size - 1))
        out.append(size + lo + hi)
        crop.append(slice(lo, lo + size))
        firsts.append((start + lo, steps[0], n[0]))
        loops.append((steps[1:], n[1:]))
        at += len(steps)
    tiles = not flips and all(len(steps) == 1 and steps[0] == 1 and n_rest[0] == step and start == 0 and n * step == size
                              for (start, step, n), (steps, n_rest), (_, size, _, _) in zip(firsts, loops, groups))
    # (from 0 itself, not from a padded start: x_(2i+k-1) reads position -1, out has room for it)
    tiles = tiles and all(c.start == 0 and c.stop == n for c, n in zip(crop, out[keep:]))
    if tiles:  # e = K·i + k, k < K, covering 0..size-1 once: each value has a place of its own
        return order, (), tuple(out), None, None
    adds = []
    for rest in itertools.product(*(range(m) for _, n in loops for m in n)):
        into, take, r = [], [], 0
        for (start, step, n), (steps, _) in zip(firsts, loops):
            picked = rest[r : r + len(steps)]
            s = start + sum(c * v for c, v in zip(steps, picked))
            into.append(slice(s, s + step * (n - 1) + 1, step))
            take += [slice(None), *picked]
            r += len(steps)
        adds.append(((Ellipsis, *into), (Ellipsis, *take)))
    cropped = any(c.start or c.stop != n for c, n in zip(crop, out[keep:]))
    return order, tuple(flips), tuple(out), tuple(adds), (Ellipsis, *crop) if cropped else None


FEW = {"max": np.maximum, "min": np.minimum, "sum": np.add}
FEW_LIMIT, FEW_REST = 16, 1024  # a reduction over at most this many values, each an array at least this large


def _reduce_few(op: str, values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """A max, min or sum over a few values (a 2x2 pooling window, its tie count), each a
    large array: one elementwise np.maximum (or np.minimum, np.add) per value. NumPy's
    own reduction over small, strided axes (a window view's) runs 10-25 times slower."""
    combine = FEW[op]
    values = np.moveaxis(values, axes, tuple(range(-len(axes), 0)))
    at = list(np.ndindex(*values.shape[-len(axes) :]))
    out = np.array(values[(...,) + at[0]])
    for index in at[1:]:
        combine(out, values[(...,) + index], out=out)
    return out


def _embed(values: np.ndarray, shape: tuple[int, ...], spec: str) -> np.ndarray:
    out = np.zeros(shape, dtype=np.result_type(values, np.float32))
    np.einsum(spec, out)[...] = values
    return out


def _sigma_into(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e^-x), the function table's formula, written into `x` (an array the
    plan no longer needs): the same operations in the same order, no temporaries."""
    np.negative(x, x)
    np.exp(x, x)
    np.add(x, 1.0, x)
    np.reciprocal(x, x)
    return x


def _own(result, arrays, keys: tuple[str, ...]):
    """`result` as a call returns it: a copy where it is, or looks into, an array the
    caller gave (`y_i = v_i` is v itself, `y_ji = x_ij` a view of x, the gradient of
    w_i v_i is v), so that writing into a result never changes the caller's arrays, as
    evaluate's results never do. Only results a step made without a new array are checked."""
    if isinstance(result, np.ndarray) and any(np.may_share_memory(result, arrays[k]) for k in keys):
        return result.copy()
    return result


def owned(steps: "Sequence[Step]", var: str, keys: tuple[str, ...]) -> str:
    """The code that returns plan variable `var` (`_own`, where a view may reach the caller)."""
    made = next((step for step in steps if step.out == var), None)
    if made is not None and _makes_new_array(ast.parse(made.code, mode="eval").body):
        return var
    return f"_own({var}, arrays, {keys!r})"


NAMESPACE = {
    "np": np, "_own": _own, "_embed": _embed, "_sigma_into": _sigma_into, "_reduce": functions.reduce_array, "_compare": functions.compare_values,
    "_matrix": matrices.compute, "_solve": matrices.solve,
    "sliding_window_view": np.lib.stride_tricks.sliding_window_view, "_scatter": _scatter, "_reduce_few": _reduce_few,
}
for _f in functions.FUNCTIONS:
    NAMESPACE["_fn_" + _f.name.replace("'", "_prime")] = _f.compute


_TOKENS = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\b(v\d+)\b""")


def variables(code: str) -> list[str]:
    """The plan variables `code` reads: names outside its quoted keys and specs, so that a
    tensor called `v9` (read as `arrays['v9']`) is not taken for the variable v9."""
    return [name for name in _TOKENS.findall(code) if name]


# What a step may run in place, into an operand it is the last to read: elementwise
# operators as their ufunc with the output given by position (cheaper than `out=`), and
# the functions that have an in-place form.
IN_PLACE = {ast.Add: "np.add", ast.Sub: "np.subtract", ast.Mult: "np.multiply", ast.Div: "np.divide"}
IN_PLACE_CALLS = {"_fn_sigma": "_sigma_into"}


def _makes_new_array(node: ast.expr) -> bool:
    """Whether a step's code makes a new array (arithmetic, a matmul, a sum, a function of
    the table), never a view of what it reads (a transpose, a reshape, an index, an input)."""
    if isinstance(node, ast.BinOp):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id.startswith("_fn_")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("sum", "vdot")


def in_place(steps: "Sequence[Step]", outputs: str) -> list[Step]:
    """The steps with an elementwise operation written into an operand that dies at it
    (`np.multiply(v17, v16, v17)`, `_sigma_into(v8)`): same shape, a float64 plan (so the
    result's type is the operand's), and no view of the operand alive (it and every step
    that reads it make new arrays). The same operations on the same values: the same
    numbers, without an allocation each."""
    trees = [ast.parse(step.code, mode="eval").body for step in steps]
    made = {step.out: (step, tree) for step, tree in zip(steps, trees)}
    viewed: set[str] = set()  # variables some step reads without making a new array
    last: dict[str, int] = {}
    for k, (step, tree) in enumerate(zip(steps, trees)):
        for name in variables(step.code):
            last[name] = k
            if not _makes_new_array(tree):
                viewed.add(name)
    kept = set(variables(outputs))

    def reusable(side: ast.expr, k: int, shape) -> str | None:
        name = side.id if isinstance(side, ast.Name) else None
        if name not in made or last.get(name) != k or name in kept or name in viewed:
            return None
        step, tree = made[name]
        return name if step.shape == shape != () and _makes_new_array(tree) else None

    out = []
    for k, (step, tree) in enumerate(zip(steps, trees)):
        if isinstance(tree, ast.BinOp) and type(tree.op) in IN_PLACE:
            into = reusable(tree.left, k, step.shape) or reusable(tree.right, k, step.shape)
            if into:
                code = f"{IN_PLACE[type(tree.op)]}({ast.unparse(tree.left)}, {ast.unparse(tree.right)}, {into})"
                step = dataclasses.replace(step, code=code)
        elif (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id in IN_PLACE_CALLS
              and len(tree.args) == 1 and not tree.keywords):
            into = reusable(tree.args[0], k, step.shape)
            if into:
                step = dataclasses.replace(step, code=f"{IN_PLACE_CALLS[tree.func.id]}({into})")
        out.append(step)
    return out


def steps_as_run(lowering: "Lowering", outputs: str, on_numpy: bool) -> list[Step]:
    """The steps as the plan runs them: on NumPy in float64 alone, an elementwise step
    written into an operand that dies there (`in_place`). An exported module runs these
    too: an in-place result keeps its operand's memory order, and a matmul over another
    order may round otherwise, so the module's numbers are the plan's only if its steps are."""
    if on_numpy and lowering.code is NUMPY_CODE and lowering.dtype == "float64" and not lowering.typed:
        return in_place(lowering.steps, outputs)
    return list(lowering.steps)


def body_lines(steps: "Sequence[Step]", outputs: str, comments: bool = False, indent: str = "    ") -> list[str]:
    """The plan's lines: each step, and each variable deleted after its last use, so that
    memory holds what is still needed, as hand-written code does. With `comments`, each
    step says what it computes (`str(step)`: routine, einsum spec, shape), as an exported
    module shows it."""
    last_use: dict[str, int] = {}
    for k, step in enumerate(steps):
        for name in variables(step.code):
            last_use[name] = k
    kept = set(variables(outputs))
    dies: dict[int, list[str]] = {}  # step -> the variables last read there
    for name, last in last_use.items():
        if name not in kept:
            dies.setdefault(last, []).append(name)
    lines = []
    for k, step in enumerate(steps):
        lines.append(indent + (str(step) if comments else f"{step.out} = {step.code}"))
        dead = sorted(dies.get(k, ()))
        if dead:
            lines.append(f"{indent}del {', '.join(dead)}")
    return lines


def emit(lowering: "Lowering", value: str, grads: Mapping[str, str], backend=None, like=None) -> tuple[str, object]:
    """Python source of the plan, and the function it defines (`body_lines`), returning
    plan variable `value` and the gradients' (`grads`: parameter → variable).
    On NumPy the function runs with floating-point warnings off, as evaluate's powers and
    functions do: inf and nan are answers here, not accidents; and a result that may look
    into the caller's arrays is copied (`owned`). On another backend it runs in that
    backend's namespace, wrapped as the backend runs it (jax.jit, no_grad)."""
    steps = lowering.steps
    on_numpy = backend is None or backend.name == "numpy"
    if on_numpy:
        keys = tuple(lowering.inputs)
        value, grads = owned(steps, value, keys), {k: owned(steps, v, keys) for k, v in grads.items()}
    outputs = f"({value}, {{{', '.join(f'{k!r}: {v}' for k, v in grads.items())}}})"
    body = "\n".join(body_lines(steps_as_run(lowering, outputs, on_numpy), outputs))
    source = f"def plan(arrays):\n{body}\n    return {outputs}\n"
    if not on_numpy:
        namespace = backend.namespace(lowering.constants, like)
        exec(compile(source, "<indexcalc plan>", "exec"), namespace)
        return source, backend.wrap(namespace["plan"])
    namespace = {**NAMESPACE, **lowering.constants}
    exec(compile(source, "<indexcalc plan>", "exec"), namespace)
    return source, np.errstate(all="ignore")(namespace["plan"])
