"""Export: a compiled gradient as a standalone Python module (issue 11, item 4).

A compiled plan is already Python source: straight-line steps, one per operation, calling
a few routines by name (indexcalc.plan). An export writes those steps into a module of
their own, with everything they call written out beside them, so that the gradient goes
where indexcalc does not: the module imports the backend's library (numpy; jax and
jax.numpy; torch) and the standard library, never indexcalc. It holds, in order:

- a docstring naming the program, indexcalc's version and commit, the backend, the
  float type and the shapes;
- the routines the steps call, and only those, as their source here (`inspect.getsource`
  of module-level functions), with what they read from their own modules (a table of
  ufuncs, an error class) written too; a function of the table (`_fn_tanh`) is its
  kernel (functions.Function.on) written out by calling it on names, not numbers
  (`_Spelled`), so a function added to the table exports with no work here;
- the constants (masks, dense shift arrays), rebuilt from the shapes when the module is
  imported, by the comparison of aranges that made them;
- the function: a check of each input's shape and float type (a plan is specialised to
  its shapes: other shapes are a ValueError naming the array and both shapes), then the
  plan's steps, each with its comment (routine, einsum spec, shape), wrapped as the
  backend runs them (np.errstate, jax.jit, torch.no_grad).

On NumPy the steps and routines are the compiled plan's own, so a call costs what the
plan's costs; on jax and torch they are the backend's (`xp`, indexcalc.backends).
"""

from __future__ import annotations

import ast
import functools
import inspect
import keyword
import os
import re
import subprocess
import sys
import textwrap
import types
from typing import Any, Mapping

import numpy as np

from . import __version__, functions, matrices
from .backends import backend_name_of, get_backend
from .backends.base import ROUTINES, namespace_of
from .compile import WRITERS, given_shapes, input_shape, lower
from .dialects import NUMPY_CODE
from .emit import NAMESPACE, body_lines, steps_as_run
from .errors import IndexCalcError, MissingArrayError
from .program import numeric_array

EXPORTABLE = ("numpy", "jax", "torch")
# how the function is wrapped, as the backend runs its plan
WRAPPERS = {"numpy": '@np.errstate(all="ignore")  # inf and nan are answers here, as in indexcalc',
            "jax": "@jax.jit", "torch": "@torch.no_grad()  # the gradient is derived: no autograd graph"}


class ExportError(IndexCalcError):
    """A plan that cannot be exported as asked (a backend, missing shapes)."""


def module_source(compiled, backend: str = "numpy", arrays: Mapping[str, Any] | None = None, *,
                  shapes: Mapping[str, tuple[int, ...]] | None = None, dtype: str | None = None,
                  name: str = "loss_and_grads", program: str | None = None) -> str:
    """The module's text (Compiled.source). `program` is the text its docstring names
    (default: the program compiled)."""
    if not (isinstance(backend, str) and backend in EXPORTABLE):
        raise ExportError(f"cannot export for the backend {backend!r}: choose one of {', '.join(EXPORTABLE)}")
    if not (isinstance(name, str) and name.isidentifier()) or keyword.iskeyword(name):
        raise ExportError(f"the function's name must be a Python name, got {name!r}")
    if program is not None and not isinstance(program, str):
        raise ExportError(f"program is the text the module's docstring names, got {program!r}")
    chosen = get_backend(backend)  # its library is needed: the shims are written from its own names
    shapes, types_, known = _signature(compiled, chosen, arrays, shapes, dtype)
    lowering, value, grads = lower(compiled, shapes, types_, known, chosen.dialect)
    code = lowering.code
    outputs = []
    for param in compiled.params:  # a parameter the lines no longer read: zeros shaped like it
        held = grads.get(param) or code.full(shapes[param], "0.0", np.dtype(types_[compiled.inputs.index(param)]).name)
        outputs.append(f"{param!r}: {held}")
    returned = f"({value}, {{{', '.join(outputs)}}})"
    steps = steps_as_run(lowering, returned, chosen.name == "numpy")  # the plan's own, in place where it is
    writer = _Module(chosen)
    writer.plan_names(steps)
    writer.constants(lowering)
    if writer.array:
        writer.namespace("\n".join([step.code for step in steps] + writer.made))
    dtypes = dict(zip(compiled.inputs, (np.dtype(t).name for t in types_)))
    return _assemble(compiled, chosen, writer, lowering, steps, returned, shapes, dtypes, known, name, program)


def _signature(compiled, backend, arrays, shapes, dtype):
    """The inputs' shapes and float types, and the shapes of the arrays that size a
    derivative line: from `arrays`, from `shapes` and `dtype`, or from the last call."""
    for what, given in (("arrays", arrays), ("shapes", shapes)):
        if given is not None and not isinstance(given, Mapping):
            raise ExportError(f"{what} is a dict by name, as {{'W': {'W' if what == 'arrays' else '(4, 2)'}}}; "
                              f"got {type(given).__name__}")
    if arrays is not None:
        missing = [k for k in compiled.inputs if k not in arrays]
        if missing:
            raise MissingArrayError(f"no array given for {missing[0]!r} (the program reads {', '.join(compiled.inputs)})")
        found = {k: input_shape(k, arrays[k]) for k in compiled.inputs}
        types_ = [backend.dtype_of(arrays[k]) if backend_name_of([arrays[k]]) != "numpy" else numeric_array(k, arrays[k]).dtype
                  for k in compiled.inputs]
        types_ = [t if t.kind == "f" else np.dtype("float64") for t in types_]
        known = given_shapes(compiled.sizing, arrays)
    elif shapes is not None:
        missing = [k for k in compiled.inputs if k not in shapes]
        if missing:
            raise MissingArrayError(f"no shape given for {missing[0]!r} (the program reads {', '.join(compiled.inputs)})")
        found = {k: _shape_given(k, shapes[k]) for k in compiled.inputs}
        try:
            types_ = [np.dtype(dtype or "float64")] * len(found)
        except (TypeError, ValueError):
            raise ExportError(f"the float type must be float32 or float64, got {dtype!r}") from None
        known = {k: _shape_given(k, shapes[k]) for k in compiled.sizing if k in shapes}
    elif compiled._last is not None:
        last = compiled._last
        found, types_, known = dict(last.shapes), [np.dtype(t) for t in last.types], dict(last.known)
    else:
        raise ExportError("a plan is made for shapes: give arrays= (or shapes=), or call the compiled program first")
    if any(t.kind != "f" for t in types_):
        raise ExportError(f"the float type must be float32 or float64, got {', '.join(sorted({t.name for t in types_}))}")
    if backend.name != "numpy" and types_:  # one float type on another library, as a call there promotes them
        types_ = [np.result_type(*types_)] * len(types_)
    return found, types_, known


def _shape_given(name: str, shape: Any) -> tuple[int, ...]:
    """A shape from `shapes=`: a tuple (or list) of whole numbers, 0 or more."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not (isinstance(shape, (tuple, list)) and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
                                                      and n >= 0 for n in shape)):
        raise ExportError(f"the shape of {name} is a tuple of whole numbers, as (4, 2); got {shape!r}")
    return tuple(int(n) for n in shape)


# ---------------------------------------------------------------- writing routines out


class _Module:
    """The definitions a module needs, gathered from the plan's names: imports, functions
    (source of indexcalc's, in order of need), and assignments (tables, the plan's names)."""

    def __init__(self, backend):
        self.backend = backend
        self.array = backend.name != "numpy"
        self.ns = "xp" if self.array else "np"
        self.imports: dict[str, None] = {"import numpy as np": None} if not self.array else dict.fromkeys(backend.imports)
        self.libraries = [("np", np)] if not self.array else [(backend.library, backend.module)]
        if backend.name == "jax":
            self.libraries.append(("jax", backend.jax))
        self.functions: dict[str, str | None] = {}
        self.tables: dict[str, str] = {}
        self.names: dict[str, str] = {}  # the plan's names for routines, and xp's overrides
        self.made: list[str] = []  # the constants, rebuilt
        self.literals: list[str] = []  # those written out as literal arrays instead

    # --- what the steps call
    def plan_names(self, steps) -> None:
        text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", "\n".join(step.code for step in steps))
        used = sorted(set(re.findall(r"\b(_[A-Za-z]\w*|sliding_window_view)\b", text)))
        for name in used:
            if name.startswith("_fn_"):
                self.kernel(name)
            elif name == "_matrix" and not self.array:
                self.matrix(sorted(set(re.findall(r"_matrix\('(\w+)'", "\n".join(s.code for s in steps)))))
            elif name == "sliding_window_view":
                self.imports["from numpy.lib.stride_tricks import sliding_window_view"] = None
            elif name in (ROUTINES if self.array else NAMESPACE):
                routine = ROUTINES[name] if self.array else NAMESPACE[name]
                written = self.function(routine)
                self.names[name] = f"functools.partial({written}, xp)" if self.array else written
                if self.array:
                    self.imports.setdefault("import functools", None)

    def kernel(self, name: str) -> None:
        """`_fn_<f>`: the function's kernel on the backend's arrays, written out; a plain
        ufunc is the library's own (`_fn_tanh = np.tanh`)."""
        f = next(f for f in functions.FUNCTIONS if "_fn_" + f.name.replace("'", "_prime") == name)
        if f.kernel is None:
            self.names[name] = f"{self.ns}.{f.compute.__name__}"
            return
        spelled = f.kernel(_SpelledNamespace(self.ns, self.backend.dialect, getattr(self.backend, "xp", np)))(_Spelled("x"))
        self.functions[name] = (f'def {name}(x):\n    """{f.name}: the kernel of indexcalc.functions\' table, '
                                f'written out."""\n    return {spelled.text}\n')

    def matrix(self, used: list[str]) -> None:
        """NumPy's `_matrix` (matrices.compute): the table's routine for each function used."""
        table = {name: self.value(matrices.BY_NAME[name].compute) for name in used}
        self.tables["MATRIX"] = "{" + ", ".join(f"{k!r}: {v}" for k, v in table.items()) + "}"
        self.reads("SingularMatrixError", matrices.SingularMatrixError, "_matrix")
        self.functions["_matrix"] = textwrap.dedent('''\
            def _matrix(name, stack, where=""):
                """indexcalc.matrices.compute: the matrix function `name` of stacked matrices (..., n, n)."""
                try:
                    return MATRIX[name](stack)
                except SingularMatrixError as err:
                    raise SingularMatrixError(f"{where}: {err}" if where else str(err)) from None
            ''')

    def namespace(self, steps: str) -> None:
        """`xp`: the library under NumPy's names, with the backend's overrides that the
        steps, the routines and the kernels call (base.namespace_of)."""
        written = self.function(namespace_of)
        calls = set(re.findall(r"\bxp\.(\w+)", steps + "".join(t for t in self.functions.values() if t)))
        overrides = {k: self.value(v) for k, v in self.backend.overrides.items() if k in calls}
        listing = "".join(f"\n    {k!r}: {v}," for k, v in overrides.items())
        self.xp = f"xp = {written}({self.libraries[0][0]}, {{{listing}\n}})\n"
        for key, routine in self.backend.bound.items():
            if key in calls:
                self.imports.setdefault("import functools", None)
                self.xp += f"xp.{key} = functools.partial({self.function(routine)}, xp)\n"

    # --- indexcalc's source, and what it reads
    def function(self, func) -> str:
        """Write `func` (and what it reads) once, with its decorators (an lru_cache); the
        name it has in the module."""
        source = textwrap.dedent(inspect.getsource(func))
        func = inspect.unwrap(func)
        name = func.__name__
        if name in self.functions:
            return name
        self.functions[name] = None  # placed now: what it reads comes after it, and may read it back
        for read in sorted(_reads(func, source)):
            self.reads(read, func.__globals__[read], name)
        self.functions[name] = f"# {func.__module__}.{func.__qualname__}\n{source}"
        return name

    def reads(self, name: str, value: Any, reader: str) -> None:
        """A global that a written function reads, written too (under the same name)."""
        if isinstance(value, types.ModuleType):
            if value.__name__.partition(".")[0] == "indexcalc":
                raise ExportError(f"{reader} reads the module {value.__name__}: it cannot be exported")
            line = f"import {value.__name__}" if name == value.__name__ else f"import {value.__name__} as {name}"
            self.imports[line] = None
        elif isinstance(value, type) and issubclass(value, Exception):
            doc = (value.__doc__ or "").strip()
            self.functions.setdefault(name, f'class {name}(ValueError):\n    """{doc}"""\n')
        elif _ours(value):
            written = self.function(value)
            if written != name:
                self.tables[name] = written
        elif _standard(value, name):
            self.imports[f"from {value.__module__} import {name}"] = None
        elif name not in self.tables:
            self.tables[name] = self.value(value)

    def value(self, value: Any) -> str:
        """Source text for a table's value: numbers, text, containers, library routines."""
        if isinstance(value, (bool, int, str)) or value is None:
            return repr(value)
        if isinstance(value, float):
            return repr(value) if np.isfinite(value) else f"float({str(value)!r})"
        if isinstance(value, (tuple, list)):
            items = ", ".join(self.value(v) for v in value) + ("," if isinstance(value, tuple) and len(value) == 1 else "")
            return f"({items})" if isinstance(value, tuple) else f"[{items}]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.value(k)}: {self.value(v)}" for k, v in value.items()) + "}"
        if _ours(value):
            return self.function(value)
        routine = getattr(value, "__name__", None)
        for alias, library in self.libraries:
            for prefix, place in ((alias, library), (f"{alias}.linalg", getattr(library, "linalg", None)),
                                  (f"{alias}.nn", getattr(library, "nn", None))):
                if routine and place is not None and getattr(place, routine, None) is value:
                    return f"{prefix}.{routine}"
        raise ExportError(f"cannot write {value!r} into an exported module")

    # --- constants
    def constants(self, lowering) -> None:
        """Each mask and dense shift array, rebuilt from the shapes by the comparison that
        made it (checked here against the plan's array), else written out as a literal."""
        by_variable = {step.out: step.code for step in lowering.steps}
        made = {by_variable[var]: key for key, var in lowering.masks.items()}
        for name, array in lowering.constants.items():
            key = made.get(name)
            text = _rebuilt(key, lowering.dtype, lowering.code) if key is not None else None
            check = _rebuilt(key, lowering.dtype, None) if key is not None else None
            if text is None or not np.array_equal(eval(check, {"np": np}), array):  # noqa: S307 - our own text
                text = f"{self.ns}.asarray({array.tolist()!r}, dtype={self.ns}.{array.dtype.name})"
                self.literals.append(name)
            self.made.append(f"{name} = {text}")


def _standard(value: Any, name: str) -> bool:
    """A class or function of the standard library, imported by that name (SimpleNamespace)."""
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    return (module is not None and module.__name__.partition(".")[0] in sys.stdlib_module_names
            and getattr(module, name, None) is value)


def _ours(value: Any) -> bool:
    """A function of indexcalc's (an lru_cache'd one too), written out by its source."""
    return isinstance(inspect.unwrap(value), types.FunctionType) and value.__module__.partition(".")[0] == "indexcalc"


def _reads(func: types.FunctionType, source: str) -> set[str]:
    """The module globals `func` reads: the names its source loads (decorators included)
    that are neither its own locals nor builtins."""
    local, codes = set(), [func.__code__]
    while codes:
        code = codes.pop()
        local.update(code.co_varnames, code.co_cellvars)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    tree = ast.parse(source)
    for node in ast.walk(tree):  # annotations are never evaluated (`from __future__ import annotations`)
        if isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return {n for n in loaded - local if n in func.__globals__ and n != func.__name__}


def _rebuilt(key: tuple, dtype: str, code) -> str | None:
    """The text that makes a mask or a dense shift array from the shapes (plan.Lowering.mask
    and .dense_shift keep these keys), spelled by the dialect `code` (None: NumPy's)."""
    code = code or NUMPY_CODE
    ns = code.ns
    if key[0] == "shift":
        _, coefs, offset, shape = key
        total = " + ".join(f"{c} * {ns}.reshape({ns}.arange({n}), {tuple(n if a == k else 1 for a in range(len(shape)))})"
                           for k, (c, n) in enumerate(zip(coefs, shape)))
        cells = f"{ns}.broadcast_to({total} + {offset} == 0, {tuple(shape)})"
        return code.astype(cells, f"{ns}.{dtype}")
    op, offset, single, same, shape, flipped = key
    if single:
        cells = f"{ns}.arange({shape[0]}) {op} {offset}"
    elif same:
        cells = f"{ns}.arange({shape[0]}) {op} {ns}.arange({shape[0]}) + {offset}"
    else:
        cells = f"{ns}.arange({shape[0]})[:, None] {op} {ns}.arange({shape[1]})[None, :] + {offset}"
    text = code.astype(cells, f"{ns}.{dtype}")
    if flipped:  # laid out as the line reads it, as the plan holds it
        text = code.transpose(text, (1, 0))
        text = f"np.ascontiguousarray({text})" if ns == "np" else f"xp.materialize({text})"
    return text


# ---------------------------------------------------------------- a kernel, spelled


_RANKS = {"+": 5, "-": 5, "*": 6, "/": 6, "**": 8, "<": 4, "<=": 4, ">": 4, ">=": 4}


class _Spelled:
    """A value in a kernel being written out: the text that computes it, and how tightly
    it binds (9: a name or a call; 8: **; 7: unary minus; 6: * /; 5: + -; 4: a
    comparison), so that parentheses go where Python needs them and nowhere else."""

    def __init__(self, text: str, rank: int = 9):
        self.text, self.rank = text, rank

    def _op(self, op: str, other: Any, reverse: bool = False) -> "_Spelled":
        left, right = (_spelled(other), self) if reverse else (self, _spelled(other))
        rank = _RANKS[op]
        tight = op == "**" or rank == 4  # ** groups to the right; comparisons chain
        left_text = left.text if left.rank > rank or (left.rank == rank and not tight) else f"({left.text})"
        right_text = right.text if right.rank > rank else f"({right.text})"
        return _Spelled(f"{left_text} {op} {right_text}", rank)

    def __add__(self, o): return self._op("+", o)
    def __radd__(self, o): return self._op("+", o, True)
    def __sub__(self, o): return self._op("-", o)
    def __rsub__(self, o): return self._op("-", o, True)
    def __mul__(self, o): return self._op("*", o)
    def __rmul__(self, o): return self._op("*", o, True)
    def __truediv__(self, o): return self._op("/", o)
    def __rtruediv__(self, o): return self._op("/", o, True)
    def __pow__(self, o): return self._op("**", o)
    def __rpow__(self, o): return self._op("**", o, True)
    def __lt__(self, o): return self._op("<", o)
    def __le__(self, o): return self._op("<=", o)
    def __gt__(self, o): return self._op(">", o)
    def __ge__(self, o): return self._op(">=", o)

    def __neg__(self):
        return _Spelled(f"-{self.text}" if self.rank >= 7 else f"-({self.text})", 7)

    def __getattr__(self, name: str) -> "_Spelled":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Spelled(f"{self.text}.{name}")

    def __call__(self, *args, **kwargs) -> "_Spelled":
        parts = [_spelled(a).text for a in args] + [f"{k}={_spelled(v).text}" for k, v in kwargs.items()]
        return _Spelled(f"{self.text}({', '.join(parts)})")


def _spelled(value: Any) -> _Spelled:
    if isinstance(value, _Spelled):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _Spelled(repr(value), 9 if value >= 0 else 7)
    raise ExportError(f"a kernel passed {value!r}, which cannot be written out")


class _SpelledNamespace:
    """`xp` (or np) for a kernel being written out: each routine a name, `astype` the
    dialect's; a name the library (`real`) lacks is missing here too, as a kernel that
    asks for a library's own routine (torch.sigmoid) is told on the live namespace."""

    def __init__(self, ns: str, dialect, real):
        self.ns, self.dialect, self.real = ns, dialect, real

    def __getattr__(self, name: str):
        if name == "astype":
            return lambda x, dtype: _Spelled(self.dialect.astype(_spelled(x).text, _spelled(dtype).text))
        if not hasattr(self.real, name):
            raise AttributeError(name)
        return _Spelled(f"{self.ns}.{name}")


# ---------------------------------------------------------------- the module


def _assemble(compiled, backend, writer: _Module, lowering, steps, outputs: str, shapes, dtypes, known, name,
              program) -> str:
    program = program if program is not None else compiled.text
    shown = program.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')  # a docstring holds any program
    grads = ", ".join(compiled.params)
    width = max((len(k) for k in shapes), default=0)
    shape_lines = "\n".join(f"    {k:<{width}}  {shapes[k]}  {dtypes[k]}" for k in shapes)
    sizing = "".join(f"\n    ({k}: {v}, sizes a derivative line)" for k, v in known.items())
    library = {"numpy": "numpy", "jax": "jax and jax.numpy", "torch": "torch"}[backend.name]
    if backend.name == "jax" and "float64" in dtypes.values():
        sizing += "\nfloat64 on JAX needs its x64 mode: jax.config.update(\"jax_enable_x64\", True) before any array is made."
    constants = ("\nConstants: the masks and dense shift arrays are rebuilt from these shapes when the module\n"
                 "is imported (a comparison of aranges, as indexcalc makes them)" if writer.made else "")
    if writer.literals:
        constants += f"; {', '.join(writer.literals)} written out as literal arrays"
    constants += "." if writer.made else ""
    returns = f"(loss, {{{', '.join(repr(p) + ': ...' for p in compiled.params)}}})" if compiled.params else "(value, {})"
    head = f'''"""{"Loss and gradients by " + grads if grads else "The value"} of a program, exported by indexcalc.

    {textwrap.indent(shown, "    ").lstrip()}

indexcalc {__version__}{_commit()}; backend: {backend.name} (this module imports {library} and the
Python standard library only, never indexcalc).

The function `{name}(arrays)` takes a dict of arrays by name and returns
{returns}.

It is specialised to these shapes and float types (indexcalc makes a plan per shape
signature); other shapes are refused with a ValueError: export again for them.
{shape_lines}{sizing}{constants}
"""'''
    imports = "\n".join(["from __future__ import annotations", ""] + sorted(writer.imports, key=_import_order))
    parts = [head, imports]
    functions_ = [text for text in writer.functions.values() if text]
    if functions_:
        parts.append("# ---------------------------------------------------------------- routines the plan calls\n\n\n"
                     + "\n\n\n".join(text.strip() for text in functions_))
    tables = [f"{k} = {v}" for k, v in writer.tables.items()]
    if writer.array:
        tables.append(writer.xp.rstrip())
    tables += [f"{k} = {v}" for k, v in writer.names.items()]
    if tables:
        parts.append("\n".join(tables))
    if writer.made:
        parts.append("# constants of the shapes, made once\n" + "\n".join(writer.made))
    library_dtype = {"numpy": "np.dtype({!r})", "jax": "jnp.dtype({!r})", "torch": "torch.{}"}[backend.name]
    inputs = "".join(f"\n    ({k!r}, {shapes[k]}, {library_dtype.format(dtypes[k])})," for k in shapes)
    tensor = ("    if not isinstance(value, torch.Tensor):\n"
              "        raise ValueError(f\"{key} must be a torch tensor, got {type(value).__name__}\")\n"
              if backend.name == "torch" else "")
    check = (f"# each input's name, shape and float type\nINPUTS = ({inputs}\n)\n\n\n"
             "def _check(arrays):\n"
             '    """Each input there, an array of the shape and float type this module was exported for\n'
             '    (a comparison per input: cheap beside the steps)."""\n'
             "    for key, shape, dtype in INPUTS:\n"
             "        if key not in arrays:\n"
             "            raise ValueError(f\"no array given for {key!r} (the function reads \"\n"
             "                             f\"{', '.join(k for k, _, _ in INPUTS)})\")\n"
             "        value = arrays[key]\n"
             "        if getattr(value, \"shape\", None) != shape or getattr(value, \"dtype\", None) != dtype:\n"
             "            _refuse(key, value, shape, dtype)\n\n\n"
             "def _refuse(key, value, shape, dtype):\n"
             '    """Why the input `key` is not what this module was exported for."""\n'
             f"{tensor}"
             "    if not (hasattr(value, \"shape\") and hasattr(value, \"dtype\")):\n"
             "        raise ValueError(f\"{key} must be an array, got {type(value).__name__}\")\n"
             "    if tuple(value.shape) != shape:\n"
             "        raise ValueError(f\"{key} has shape {tuple(value.shape)}, but this module was exported for \"\n"
             "                         f\"{key} of shape {shape}: export it again for these shapes\")\n"
             "    raise ValueError(f\"{key} is {value.dtype}, but this module was exported for {dtype}\")\n")
    parts.append(check)
    body = "\n".join(body_lines(steps, outputs, comments=True))
    doc = (f"The value of {compiled.forward[-1].lhs} and its gradients by {grads}" if grads
           else f"The value of {compiled.forward[-1].lhs}")
    function = (f"{WRAPPERS[backend.name]}\n"
                f"def {name}(arrays):\n"
                f'    """{doc}, for arrays of the shapes above. Each step\n'
                f"    says what it computes: the routine, its einsum spec where it contracts, its shape.\"\"\"\n"
                f"    _check(arrays)\n"
                f"{body}\n"
                f"    return {outputs}\n")
    parts.append(function)
    return "\n\n\n".join(part.strip() for part in parts) + "\n"


def _import_order(line: str) -> tuple:
    return (line.startswith("from "), line)


@functools.lru_cache(maxsize=1)
def _commit() -> str:
    """`, commit abc1234` where indexcalc runs from a git checkout, else nothing."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return f", commit {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else ""


WRITERS.update(module=module_source)
