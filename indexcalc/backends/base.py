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

    def namespace(self, constants: Mapping[str, np.ndarray], like: Any) -> dict[str, Any]:
        raise NotImplementedError

    def wrap(self, plan: Callable) -> Callable:
        return plan

    def dtype_of(self, value: Any) -> np.dtype:
        """The value's element type, as NumPy names it (a backend keeps its own objects)."""
        return np.dtype(str(value.dtype).rpartition(".")[2])

    def asarray(self, value: Any, dtype: np.dtype, like: Any) -> Any:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, like: Any) -> Any:
        return self.asarray(np.zeros(shape, dtype), dtype, like)


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        from ..plan import NUMPY_CODE

        self.dialect = NUMPY_CODE


class ArrayBackend(Backend):
    """A library whose arrays the plan reaches through `xp`: the namespace (a module with
    NumPy's names where the library has them, `overrides` where it differs)."""

    def __init__(self, name: str, module: Any, overrides: Mapping[str, Any]):
        from ..plan import ARRAY_CODE

        self.name = name
        self.dialect = ARRAY_CODE
        names = {k: getattr(module, k) for k in dir(module) if not k.startswith("__")}
        self.xp = SimpleNamespace(**{**names, **overrides})

    def constant(self, array: np.ndarray, like: Any) -> Any:
        return self.asarray(array, array.dtype, like)

    def namespace(self, constants: Mapping[str, np.ndarray], like: Any) -> dict[str, Any]:
        xp = self.xp
        space = {
            "xp": xp,
            "_reduce": functools.partial(routines.reduce, xp),
            "_reduce_few": functools.partial(routines.reduce_few, xp),
            "_compare": functools.partial(routines.compare, xp),
            "_embed": functools.partial(routines.embed, xp),
            "_scatter": functools.partial(routines.scatter, xp),
            "_matrix": functools.partial(routines.matrix, xp),
            "_solve": functools.partial(routines.solve, xp),
        }
        for f in functions.FUNCTIONS:
            space["_fn_" + f.name.replace("'", "_prime")] = f.on(xp)
        space.update((name, self.constant(array, like)) for name, array in constants.items())
        return space
