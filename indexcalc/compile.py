"""`ic.compile`: the loss and every gradient in one planned call.

Backpropagation falls out of the algebra. The forward program is put in a form where
every function argument is a named intermediate (`u_ni = W_ij x_nj + b_i`,
`h_ni = tanh(u_ni)`), and then, from the loss backwards, each line's adjoint is the
derivative of the line contracted with the adjoint of its result and simplified:

    ū_gh = sum_ni(h̄_ni tanh'(u_ni) δ_(ni)(gh))  →  h̄_gh tanh'(u_gh)
    W̄_gh = sum_ni(ū_ni δ_ig x_nh)               →  sum_n(ū_ng x_nh)

a vector–Jacobian product with the δ contracted away, so no Jacobian is ever built.
Forward and backward lines are then lowered together into one plan (`indexcalc.plan`)
per shape signature, which shares what they have in common.
"""

from __future__ import annotations

import builtins
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .diff import Rules, resolve_derivatives
from .backends import KNOWN, backend_name_of, get_backend
from .errors import (
    ArgumentError, DiffError, IndexCalcError, InlineTooLargeError, MissingArrayError, given_as_one_name, kind_of,
    names_argument, optional_name,
)
from .expr import MATRIX_REDUCTIONS, Call, Equation, Expr, MatrixCall, Number, Product, Program, Reduce, Sum, Tensor
from .indices import check_equation, map_scoped
from .inline import inline_last
from .emit import emit
from .exponentials import SCALE
from .logs_in_range import lines_in_range, logs_in_range, through_named_sums
from .plan import Lowering, canonical_key
from .program import check_program, inputs_read, needed_lines, numeric_array, sized_by
from .relabel import fresh_letters, letters_in, rename_fixed
from .scope import explicit
from .simplify import simplify_tree
from .wellformed import as_parsed
from .wrt import expression_equation, index_count, parse_wrt, target_line, written_through, wrt_letters, wrt_names


def compile(source, wrt: Iterable[str] | str = (), *, of: str | None = None,
            backend: str | None = None) -> "Compiled":
    """A callable `f(arrays) -> (value, grads)` for the equation `of` (default: the last).

    `wrt` names the parameters (`"W1"` or `"W1_gh"`); the equation must then be a scalar,
    and `grads` maps each name to an array shaped like it. Without `wrt` the callable
    evaluates the program (a derivative program from `diff` included) and `grads` is empty.

    `backend` is the array library the plan runs on: "numpy", "jax" (under jax.jit),
    "torch" (on the tensors' device, no autograd graph), "dask" (lazy, chunked) or
    "cupy"; by default the library of the arrays each call is given. The results are
    that library's arrays.
    """
    text = source if isinstance(source, str) else None
    wrt = names_argument(wrt, "wrt", 'wrt="W1" or wrt=["W1", "b1"]')
    optional_name(of, "of", 'of="L"')
    optional_name(backend, "backend", f"one of {', '.join(KNOWN)}")
    try:
        if backend is not None:
            get_backend(backend)  # an unknown or missing library is refused now, not at the first call
        node = as_parsed(source)
        compiled = _compile(node, wrt, of, wrt_names(source, node))
        compiled.backend = backend
        compiled.text = text if text is not None else str(node)
        return compiled
    except IndexCalcError as err:
        raise err.with_source(text, None) if text else err


def _compile(node: Expr, wrt: list[str], of: str | None, names: frozenset[str] = frozenset()) -> "Compiled":
    if isinstance(node, Program):
        check_program(node.equations)
        equations = list(resolve_derivatives(node).equations)
    elif isinstance(node, Equation):
        equations = [node]
    else:
        equations = [expression_equation(node)]
    equations = equations[: target_line(equations, of) + 1]
    for eq in equations:
        check_equation(eq)
    written = equations
    # every sum a node before anything is substituted: an inlined definition cannot capture
    equations = needed_lines(_inline_derivatives(needed_lines([explicit(eq) for eq in equations])))
    target = equations[-1]
    wanted = [parse_wrt(w, names) for w in wrt]
    params = [name for name, _ in wanted]
    used = {t.key for eq in equations for t in eq.rhs.walk() if isinstance(t, Tensor)}
    for name, given in wanted:
        if name not in used and not written_through(written, name):
            raise DiffError(f"{name} does not occur in the program: nothing to differentiate by")
        if given is not None:  # as in diff: W1_g for a matrix is a typo
            wrt_letters(given, index_count(equations, name), name, set(), target)
    if params and target.lhs.all_indices:
        raise DiffError(f"compile differentiates a scalar; {target.lhs} has indices {target.lhs.all_indices}")
    if params:  # the backward pass differentiates `exp(S_n) / Z` through Z's sum, as diff does
        equations = _through_exponential_sums(equations)
    # simplified after the checks: T0_ii tanh(1.5 - 1.5) folds to 0, but T0 occurs, with gradient 0;
    # then a log of a sum of exponentials in range, so that its adjoint is too (cross-entropy's).
    # Not simplified again: a shift writes its exponents three times, and simplify of a Hessian
    # so grown took twice the time (the shifted-log attention of tests/test_routes.py: 4.5 s, 1.9 s)
    forward, scales = _prepare([logs_in_range(simplify_tree(eq)) for eq in equations])
    backward = _adjoints(forward, params) if params else []
    return Compiled(forward, backward, params, scales)


INLINED_LIMIT = 4000  # nodes: past this, compile keeps a derivative's lines (inline.INLINE_LIMIT is diff's)


def _inline_derivatives(equations: list[Equation]) -> list[Equation]:
    """Named derivatives (`z_{n,g}[w]`, the chain form of `diff`) substituted where they
    are used, so that a Hessian is one formula that simplify can factor and the plan can
    contract backwards, not a chain of Jacobian-sized arrays. A formula that would grow
    past INLINED_LIMIT nodes keeps its derivative lines: simplify's time grows with it,
    while the plan computes each line once all the same."""
    if not any(eq.lhs.derivs for eq in equations):
        return equations
    out: list[Equation] = []
    for k, eq in enumerate(equations):
        last = k == len(equations) - 1
        if last or not eq.lhs.derivs and any(isinstance(t, Tensor) and t.derivs for t in eq.rhs.walk()):
            try:  # a line read by later lines too: its derivatives inlined, not held as Jacobian-sized lines
                eq = explicit(inline_last(out + [eq], limit=INLINED_LIMIT)[-1])
            except InlineTooLargeError:
                pass
        out.append(eq)
    return out


def _through_exponential_sums(equations: list[Equation]) -> list[Equation]:
    """A named sum of exponentials (`Z_v = sum_k(exp(S_vk))`) under a power or a log
    replaced by its sum, so that the lines' adjoints take its stable derivative (the
    adjoint of Z in `exp(S_n) / Z` holds Z^-2, 0 past logits of ~355). The forward values
    are the same sums; Z's line stays where anything else reads it."""
    read = through_named_sums(equations)
    return equations if read is equations else needed_lines([explicit(eq) for eq in read])


# ---------------------------------------------------------------- forward form


def _prepare(equations: list[Equation]) -> tuple[list[Equation], dict[str, tuple]]:
    """Name every function argument; write mean_n(x) as sum_n(x) times a constant 1/N."""
    out: list[Equation] = []
    scales: dict[str, tuple] = {}
    named: dict[str, tuple[str, tuple[str, ...]]] = {}
    counter = iter(range(1 << 30))
    for eq in equations:
        fixed = frozenset(eq.lhs.all_indices)
        rhs = _named_arguments(eq.rhs, fixed, (out, counter, scales, named, eq.lhs.all_indices))
        out.append(Equation(eq.lhs, rhs))
    return out, scales


def _named_arguments(node: Expr, fixed, state) -> Expr:
    """`node` with its non-trivial function arguments replaced by named tensors; an
    argument met again (whatever its letters) reuses the first one's name."""
    out, counter, scales, named, order = state

    def again(child: Expr, inner=fixed) -> Expr:
        return _named_arguments(child, inner, state)

    def name(arg: Expr, inner=fixed) -> Expr:
        """`arg` as a named tensor, on a line of its own (reused if met before)."""
        if isinstance(arg, Tensor) and len(set(arg.all_indices)) == len(arg.all_indices):
            return arg
        key, canonical_order = canonical_key(arg, inner)
        if key not in named:
            letters = tuple(i for i in order if i in canonical_order)
            letters += tuple(i for i in canonical_order if i not in letters)
            label = f"#u{next(counter)}"
            # fixed on the new line, its letters must not capture an inner scope's own
            # (the trace k in σ_i(T_jikk^2 x_k)): renamed onto themselves, that one moves aside
            own = {i: i for i in canonical_order if i not in inner}
            body = rename_fixed(arg, own, inner, fresh_letters(letters_in(arg) | inner)) if own else arg
            out.append(Equation(Tensor(label, letters), body))
            named[key] = (label, tuple(canonical_order.index(i) for i in letters))
        label, positions = named[key]
        return Tensor(label, tuple(canonical_order[p] for p in positions))

    if isinstance(node, Call):
        return Call(node.func, name(again(node.arg)), node.relabel)
    if isinstance(node, MatrixCall):  # the inverse's argument a named matrix: its adjoint is one line
        return MatrixCall(node.func, name(again(node.arg)), node.relabel)
    if isinstance(node, Reduce):
        body = again(node.body, fixed | set(node.indices))
        if node.op == "mean":
            scale = Tensor(f"{SCALE}{next(counter)}")
            scales[scale.key] = node.indices
            if isinstance(body, Reduce) and body.op == "sum":  # mean_n(sum_h(..)): one contraction
                return Product((replace(body, indices=node.indices + body.indices), scale))
            return Product((Reduce("sum", node.indices, body, implicit=node.implicit), scale))
        if node.op in MATRIX_REDUCTIONS:
            return replace(node, body=name(body, fixed | set(node.indices)))
        return replace(node, body=body)
    return map_scoped(node, fixed, again)


# ---------------------------------------------------------------- adjoints


BAR = "#bar"


def _bar(key: str) -> str:
    """The name of the adjoint of `key`; `_unbar` gives `key` back."""
    return key + BAR


def _unbar(name: str) -> str:
    return name[: -len(BAR)]


def _adjoints(forward: list[Equation], params: list[str]) -> list[Equation]:
    """From the loss backwards: each line's result's adjoint, then the parameters'."""
    depends = set(params)
    for eq in forward:
        if {t.key for t in eq.rhs.walk() if isinstance(t, Tensor)} & depends:
            depends.add(eq.lhs.key)
    contributions: dict[str, list[tuple[Expr, tuple[str, ...]]]] = {}
    lines: list[Equation] = []
    target = forward[-1].lhs.key
    for eq in reversed(forward):
        key = eq.lhs.key
        if key not in depends:
            continue
        if key == target:
            adjoint: Expr = Number(1.0)
        elif key in contributions:
            bar = _sum_of(contributions.pop(key), eq.lhs.all_indices, key)
            lines.append(bar)
            adjoint = Tensor(bar.lhs.name, eq.lhs.all_indices)
        else:
            continue
        inputs = {t.key: t for t in eq.rhs.walk() if isinstance(t, Tensor) and t.key in depends}
        for x_key, x in inputs.items():
            contribution = _vjp(eq, x, adjoint)
            if contribution is not None:  # x only inside a comparison: no gradient flows
                contributions.setdefault(x_key, []).append(contribution)
    for name in params:
        if name in contributions:
            lines.append(_sum_of(contributions.pop(name), None, name))
    return lines


def _vjp(eq: Equation, x: Tensor, adjoint: Expr) -> tuple[Expr, tuple[str, ...]] | None:
    """sum_A(ȳ_A ∂y_A/∂x_G), simplified, with G fresh letters for x's axes; None where
    the derivative is zero by the rules (x only inside a comparison `[x_n > 0]`)."""
    used = letters_in(eq)
    fresh = fresh_letters(used)
    G = tuple(fresh() for _ in x.all_indices)
    fixed = frozenset(eq.lhs.all_indices) | set(G)
    terms = Rules(x.key, G, set(), fresh, sized_outside=True).d(eq.rhs, fixed)  # ȳ_A carries A
    if not terms:
        return None
    A = eq.lhs.all_indices
    # the adjoint goes into every term, beside the δ it is to be contracted with
    products = tuple(Product((adjoint, t.expr())) for t in terms)
    body = Sum(products) if len(products) > 1 else products[0]
    contribution = Reduce("sum", A, body, implicit=True) if A else body
    result = simplify_tree(Equation(Tensor("#c", G), contribution))
    return result.rhs, G


def _sum_of(parts: list[tuple[Expr, tuple[str, ...]]], letters: tuple[str, ...] | None, key: str) -> Equation:
    """x̄ = the sum of the contributions of every line that uses x, on x's letters."""
    letters = parts[0][1] if letters is None else letters
    terms = []
    for expr, G in parts:
        if tuple(G) != tuple(letters):
            fresh = fresh_letters(letters_in(expr) | set(G) | set(letters))
            expr = rename_fixed(expr, dict(zip(G, letters)), frozenset(G), fresh)
        terms.append(expr)
    # contributions from different lines may bind a letter of the result: one letter, one size
    return explicit(Equation(Tensor(_bar(key), tuple(letters)), terms[0] if len(terms) == 1 else Sum(tuple(terms))))


# ---------------------------------------------------------------- the callable

# What writes a compiled plan out as a module of its own: indexcalc.export, above the
# pipeline, reads the plan and so cannot be imported by it; it puts itself here when the
# package imports it, as the printers give the tree its printing (expr.PRINTERS).
WRITERS: dict[str, Callable[..., str]] = {}


class Compiled:
    """The compiled program: call it with arrays by name; `print()` shows its plan."""

    def __init__(self, forward: list[Equation], backward: list[Equation], params: list[str], scales):
        self.forward = forward
        self.backward = backward
        self.params = params
        self.scales = scales
        defined = {eq.lhs.key for eq in forward}
        # a parameter the simplified lines no longer read still has a gradient (zeros) shaped like it
        self.inputs = sorted((inputs_read(forward) | set(params)) - defined - set(scales))
        # arrays a derivative line is sized by (`Y_{ij,(gh)}[X] = δ_(ij)(gh)`), when given
        sizing = set().union(*(sized_by(eq.lhs) for eq in forward))
        self.sizing = sorted(sizing - defined - set(self.inputs))
        self._plans: dict[tuple, _Plan] = {}
        self._last: _Plan | None = None
        self._fast: Callable | None = None  # the last call's plan, behind a check of its signature
        self.backend: str | None = None  # None: the arrays' own library, call by call
        self.text = "\n".join(str(eq) for eq in forward)  # the program it came from (compile sets the text given)

    def __getstate__(self) -> dict:
        """The plans made for the shapes seen so far are code generated at run time, which
        pickle cannot carry (a Model sent to another process, say): they are left behind
        and made again on the first call there."""
        return {**vars(self), "_plans": {}, "_last": None, "_fast": None}

    @property
    def backend(self) -> str | None:
        return self._backend

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend, self._fast = name, None

    def __call__(self, arrays: Mapping[str, Any]):
        if self._fast is not None:  # the common case: float NumPy arrays shaped and typed as last call's
            result = self._fast(arrays)
            if result is not _OTHER:
                return result
        try:
            values = [arrays[k] for k in self.inputs]
        except KeyError as err:
            raise MissingArrayError(
                f"no array given for {err.args[0]!r} (the program reads {', '.join(self.inputs)})"
                + given_as_one_name(err.args[0], arrays)
            ) from None
        except (TypeError, IndexError):  # a list, an array: indexed by a name
            raise ArgumentError(f"arrays must be a mapping of names to arrays, not {kind_of(arrays)}") from None
        signature = tuple((v.shape, v.dtype) if type(v) is np.ndarray and v.dtype.kind == "f" else None for v in values)
        if self.backend not in (None, "numpy") or (None in signature and backend_name_of(values) != "numpy"):
            return self._call_on(get_backend(self.backend or backend_name_of(values)), arrays, values)
        direct = None not in signature and not self.sizing  # float NumPy arrays, nothing else to check
        if None in signature:
            arrays = {**arrays, **{k: _as_input(k, arrays[k]) for k in self.inputs}}
            signature = tuple((arrays[k].shape, arrays[k].dtype) for k in self.inputs)
        if self.sizing:
            signature += tuple(given_shapes(self.sizing, arrays).items())
        plan = self._plans.get(signature)
        if plan is None:
            shapes, types = {}, []
            for key in self.inputs:
                value = numeric_array(key, arrays[key])
                shapes[key] = value.shape
                types.append(value.dtype)
            plan = self._plans[signature] = _Plan(self, shapes, types, given_shapes(self.sizing, arrays))
        self._last = plan
        # the next call checks its arrays against this signature first (no sizing arrays,
        # whose shapes would need checking too; no gradient of zeros to add)
        self._fast = plan.checked if direct and not plan.missing else None
        value, grads = plan.run(arrays)
        self._zeros(arrays, grads)
        return value, grads

    def _zeros(self, arrays: Mapping[str, Any], grads: dict) -> None:
        """Zeros for the parameters the lines no longer read, shaped like them."""
        for name in self.params:
            if name not in grads:
                grads[name] = np.zeros(np.shape(arrays[name]), dtype=np.result_type(arrays[name], np.float32))

    def _call_on(self, backend, arrays: Mapping[str, Any], values: list):
        """A call on another library's arrays: by the backend's own route where it has one
        for these arrays (with the next call's fast path), else `run_plan`."""
        own = backend.own_route(self, arrays)
        if own is not None:
            result, self._fast = own
            return result
        return self.run_plan(backend, arrays, values, remember=backend.reuses_plans)

    def run_plan(self, backend, arrays: Mapping[str, Any], values: list, remember: bool = True):
        """The plan's steps on the backend's arrays: every input goes over to it (NumPy
        arrays and numbers included) in one float type, as evaluate's would promote them.
        `remember`: let the next call of this signature skip the conversions (not where a
        backend's own route calls this while it traces)."""
        mine = [backend_name_of([v]) == backend.name for v in values]  # once per input: this is every call
        like = next((v for v, m in zip(values, mine) if m), None)
        types = [backend.dtype_of(v) if m else numeric_array(k, v).dtype for k, v, m in zip(self.inputs, values, mine)]
        dtype = np.result_type(*[t if t.kind == "f" else np.float64 for t in types]) if types else np.dtype("float64")
        inputs = {k: backend.asarray(v, dtype, like) for k, v in zip(self.inputs, values)}
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        known = given_shapes(self.sizing, arrays)
        signature = (backend.name, str(getattr(like, "device", "")), dtype) + tuple(shapes.items()) + tuple(known.items())
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plans[signature] = _Plan(self, shapes, [dtype] * len(shapes), known, backend, like)
        self._last, self._fast = plan, None
        if remember and all(mine) and not self.sizing and not plan.missing and all(t == dtype for t in types):
            # the next call checks its arrays against this one's first: the backend's own
            # arrays, shaped, typed and placed alike, need no conversion
            self._fast = _checked(plan.run, list(inputs), [shapes[k] for k in inputs],
                                  [v.dtype for v in values], type(like), backend.placement(like))
        value, grads = plan.run(inputs)
        for name in self.params:
            if name not in grads:
                grads[name] = backend.zeros(tuple(inputs[name].shape) if name in inputs else (), dtype, like)
        return value, grads

    def source(self, backend: str = "numpy", arrays: Mapping[str, Any] | None = None, *,
               shapes: Mapping[str, tuple[int, ...]] | None = None, dtype: str | None = None,
               name: str = "loss_and_grads", program: str | None = None) -> str:
        """The text of a standalone Python module with one function, `name(arrays)`, that
        returns what a call returns (the value, and the gradients by name), importing only
        the backend's library ("numpy", "jax" or "torch"), never indexcalc. A plan is made
        for one shape signature, so the module is for the shapes of `arrays` (or `shapes`
        and `dtype`, default float64; or those of the last call) and refuses others.
        Its docstring names `program` (default: the text compiled). indexcalc.export writes it."""
        return WRITERS["module"](self, backend, arrays, shapes=shapes, dtype=dtype, name=name, program=program)

    @property
    def plan_count(self) -> int:
        """How many shape signatures have been planned."""
        return len(self._plans)

    def __str__(self) -> str:
        head = f"compiled {self.forward[-1].lhs}" + (f", gradients by {', '.join(self.params)}" if self.params else "")
        if self._last is None:
            lines = [str(eq) for eq in self.forward + self.backward]
            return head + " (not planned yet; the lines it will plan:)\n" + "\n".join("  " + l for l in lines)
        return head + "\n" + "\n".join("  " + str(step) for step in self._last.lowering.steps)

    __repr__ = __str__


def _as_input(key: str, value) -> np.ndarray:
    """An input as evaluate reads it: an array, of floats. The plan then never meets a
    Python number (whose `**` and `/` differ from NumPy's) nor integers."""
    array = numeric_array(key, value)
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def given_shapes(names: list[str], arrays: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of those of `names` that have arrays: optional, as they are to evaluate."""
    return {k: input_shape(k, arrays[k]) for k in names if k in arrays}


def input_shape(key: str, value) -> tuple[int, ...]:
    """An array's shape, whatever its library (NumPy reads numbers and lists)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None and type(value).__module__.partition(".")[0] != "numpy" else numeric_array(key, value).shape


def lower(compiled: Compiled, shapes: dict[str, tuple[int, ...]], types: list, known: dict,
          dialect=None) -> tuple[Lowering, str, dict[str, str]]:
    """The steps for one shape signature, the variable holding the value, and those holding
    the gradients (a parameter the lines no longer read has none)."""
    lowering = Lowering(shapes, compiled.scales, types, known, dialect)
    lines = lines_in_range(list(compiled.forward) + list(compiled.backward))
    for eq, written in zip(lines, compiled.forward):
        lowering.equation(eq, written=written)
    for eq in lines[len(compiled.forward) :]:
        lowering.equation(eq, like=_unbar(eq.lhs.name))
    value = lowering.env[compiled.forward[-1].lhs.key]
    grads = {name: lowering.env[_bar(name)] for name in compiled.params if _bar(name) in lowering.env}
    return lowering, value, grads


class _Plan:
    """One shape signature's steps, as a compiled Python function."""

    def __init__(self, compiled: Compiled, shapes: dict[str, tuple[int, ...]], types: list, known: dict,
                 backend=None, like=None):
        lowering, value, grads = lower(compiled, shapes, types, known, backend.dialect if backend is not None else None)
        self.lowering = lowering
        self.shapes, self.types, self.known = shapes, types, known
        self.source, self.run = emit(lowering, value, grads, backend, like)
        self.missing = [name for name in compiled.params if name not in grads]  # their gradients are zeros
        self.checked = _checked(self.run, list(shapes), list(shapes.values()), types) if backend is None else None


_OTHER = object()  # what a plan's `checked` returns for arrays not of its signature


def _checked(run: Callable, keys: list[str], shapes: list[tuple] | None, types: list | None,
             array_type: type = np.ndarray, device: Any = None) -> Callable:
    """`run` behind a check that the arrays are `array_type`'s of exactly these shapes and
    element types (and on `device`, if given), one comparison each, constants in the code;
    else _OTHER: a call with the last call's signature needs no more, any other takes
    Compiled.__call__'s full path, its conversions and its errors. A NumPy plan reads the
    mapping given; another library's (a jitted function of a dict) gets the inputs alone.
    Without shapes and types, only the arrays' type is checked (a jitted function that
    tells one signature from another itself)."""
    names = {f"_t{k}": np.dtype(t) if array_type is np.ndarray else t for k, t in enumerate(types or ())}
    reads = "; ".join(f"a{k} = arrays[{key!r}]" for k, key in enumerate(keys))
    placed = "" if device is None else " or a{k}.device != _device"
    signature = "" if shapes is None else " or a{k}.shape != {shape!r} or a{k}.dtype is not _t{k}"
    tests = " or ".join(("type(a{k}) is not _array" + signature + placed).format(k=k, shape=tuple(shape))
                        for k, shape in enumerate(shapes or [()] * len(keys)))
    given = "arrays" if array_type is np.ndarray else "{" + ", ".join(f"{key!r}: a{k}" for k, key in enumerate(keys)) + "}"
    source = (f"def checked(arrays):\n    try:\n        {reads or 'pass'}\n    except Exception:\n        return _OTHER\n"
              f"    if {tests or 'False'}:\n        return _OTHER\n    return run({given})\n")
    namespace = {"_array": array_type, "_device": device, "_OTHER": _OTHER, "run": run, **names}
    exec(builtins.compile(source, "<indexcalc signature check>", "exec"), namespace)
    return namespace["checked"]
