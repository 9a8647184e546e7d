"""What a backend is: how arrays go in, the namespace its plan's code runs with, and how
the plan function is wrapped (a jit, no autograd graph)."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

from .. import functions
from . import routines


class Backend:
    """NumPy's plan is the default and needs none of this; see NumpyBackend."""

    name = "?"
    dialect: Any = None
    # whether the plan's steps may be reused by the next call on its signature alone
    # (dask's may not: each call sees first whether its arrays split into blocks)
    reuses_plans = True

    def namespace(self, constants: Mapping[str, np.ndarray], like: Any) -> dict[str, Any]:
        raise NotImplementedError

    def wrap(self, plan: Callable) -> Callable:
        return plan

    def own_route(self, compiled: Any, arrays: Mapping[str, Any]) -> tuple[tuple, Callable | None] | None:
        """A call by a route of the backend's own: its value and gradients, and what the
        next call tries first (a function of the arrays returning them, or compile's _OTHER
        for arrays it does not take; None for nothing); None for the plan's steps
        (Compiled.run_plan). dask runs a sum over the batch block by block, JAX one jitted
        function per program."""
        return None

    def dtype_of(self, value: Any) -> np.dtype:
        """The value's element type, as NumPy names it (a backend keeps its own objects)."""
        return np.dtype(str(value.dtype).rpartition(".")[2])

    def asarray(self, value: Any, dtype: np.dtype, like: Any) -> Any:
        raise NotImplementedError

    def placement(self, like: Any) -> Any:
        """The device a call's arrays must share with `like` to reuse its plan (whose
        constants live there), or None where they cannot be elsewhere."""
        return getattr(like, "device", None)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, like: Any) -> Any:
        return self.asarray(np.zeros(shape, dtype), dtype, like)


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        from ..dialects import NUMPY_CODE

        self.dialect = NUMPY_CODE


# the routines a plan calls by name, each taking the namespace xp first (bound to it per backend)
ROUTINES = {
    "_reduce": routines.reduce, "_reduce_few": routines.reduce_few, "_compare": routines.compare,
    "_embed": routines.embed, "_scatter": routines.scatter, "_matrix": routines.matrix, "_solve": routines.solve,
}


def namespace_of(module: Any, overrides: Mapping[str, Any]) -> SimpleNamespace:
    """`xp`: the library's names, NumPy's meanings where the library differs (`overrides`).
    Module-level, so that an exported plan (indexcalc.export) writes it out as it is."""
    names = {k: getattr(module, k) for k in dir(module) if not k.startswith("__")}
    return SimpleNamespace(**{**names, **overrides})


class ArrayBackend(Backend):
    """A library whose arrays the plan reaches through `xp`: the namespace (a module with
    NumPy's names where the library has them, `overrides` where it differs, and `bound`:
    routines taking xp first, such as a sliding window built from the library's own calls).
    `module` and `imports` say how an exported module reaches the library."""

    imports: tuple[str, ...] = ()  # an exported module's import lines for the library
    library = ""  # the name the library goes by there (jnp, torch)

    def __init__(self, name: str, module: Any, overrides: Mapping[str, Any], bound: Mapping[str, Any] | None = None):
        from ..dialects import ARRAY_CODE

        self.name = name
        self.dialect = ARRAY_CODE
        self.module = module
        self.overrides = dict(overrides)
        self.bound = dict(bound or {})
        self.xp = namespace_of(module, self.overrides)
        for key, routine in self.bound.items():
            setattr(self.xp, key, functools.partial(routine, self.xp))

    def constant(self, array: np.ndarray, like: Any) -> Any:
        return self.asarray(array, array.dtype, like)

    def namespace(self, constants: Mapping[str, np.ndarray], like: Any, xp: Any = None) -> dict[str, Any]:
        """The plan's globals: `xp` (self.xp unless a device's own is given) and the routines bound to it."""
        xp = self.xp if xp is None else xp
        space = {"xp": xp, **{name: functools.partial(routine, xp) for name, routine in ROUTINES.items()}}
        for f in functions.FUNCTIONS:
            space["_fn_" + f.name.replace("'", "_prime")] = f.on(xp)
        space.update((name, self.constant(array, like)) for name, array in constants.items())
        return space
