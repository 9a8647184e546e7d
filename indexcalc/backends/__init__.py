"""Backends: the array library a compiled plan runs on.

A plan is lowered once, as straight-line code (indexcalc.plan). On NumPy it is spelled
with NumPy's cheapest calls; on any other library it is spelled as calls on one namespace,
`xp` (`ArrayDialect`), and each backend gives `xp` its library's routines under NumPy's
names and meanings (`xp.permute_dims`, `xp.pad`, `xp.windows`, `xp.index_add`, ...), plus
the few routines a plan calls by name (`_scatter`, `_reduce`, `_fn_tanh`, ...), written
once against `xp` in `routines.py`. So a new backend is one small module: a namespace and
how arrays go in.

The backend is named (`ic.compile(..., backend="jax")`) or, by default, taken from the
arrays a call is given: torch tensors run on torch, jax arrays on jax, and so on, as
opt_einsum and the array API's `array_namespace` choose.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from ..errors import IndexCalcError
from .base import Backend, NumpyBackend


class BackendError(IndexCalcError):
    """A backend that is unknown, not installed, or given arrays it cannot take."""


# name -> (module in this package, the pip extra that installs its library)
KNOWN = {
    "numpy": (None, None),
    "jax": ("jax_backend", "jax"),
    "torch": ("torch_backend", "torch"),
    "dask": ("dask_backend", "dask"),
    "cupy": ("cupy_backend", "cupy"),
}
# the top-level module of an array's type -> its backend
_BY_MODULE = {"numpy": "numpy", "builtins": "numpy", "jax": "jax", "jaxlib": "jax", "torch": "torch",
              "dask": "dask", "cupy": "cupy"}
_LOADED: dict[str, Backend] = {"numpy": NumpyBackend()}


def get_backend(name: str) -> Backend:
    """The backend called `name`, its library imported on first use."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in KNOWN:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(KNOWN)}")
    module, extra = KNOWN[name]
    try:
        backend = importlib.import_module(f"{__name__}.{module}").load()
    except ImportError as err:
        raise BackendError(
            f"the {name} backend needs {extra}, which is not installed ({err}): pip install \"indexcalc[{extra}]\""
        ) from None
    _LOADED[name] = backend
    return backend


def backend_name_of(values: Iterable[Any]) -> str:
    """The backend the arrays belong to: NumPy unless some are another library's (they
    may be mixed with NumPy arrays and numbers, which go over to it)."""
    found = set()
    for value in values:
        root = type(value).__module__.partition(".")[0]
        found.add(_BY_MODULE.get(root, "numpy"))
    found.discard("numpy")
    if len(found) > 1:
        raise BackendError(f"the arrays are of several libraries ({', '.join(sorted(found))}): pass one kind, "
                           f"or name the backend with backend=...")
    return found.pop() if found else "numpy"


__all__ = ["Backend", "BackendError", "KNOWN", "backend_name_of", "get_backend"]
