"""JAX: the plan is a pure function of its arrays, so it runs under `jax.jit`, traced
once per shape signature. float64 needs JAX's x64 mode, which is JAX's own switch."""

from __future__ import annotations

import weakref

import numpy as np

from . import routines
from .base import ArrayBackend
from ..compile import _checked


def materialize(x):
    """A copy where NumPy's plan needs one: JAX's arrays are values, never written in place."""
    return x


def index_add(out, index, values):
    """out[index] += values, as JAX spells it: a new array."""
    return out.at[index].add(values)


class JaxBackend(ArrayBackend):
    imports = ("import jax", "import jax.numpy as jnp")
    library = "jnp"

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        # jax.nn.sigmoid is one XLA op (logistic), where σ through tanh is four
        super().__init__("jax", jnp, {"materialize": materialize, "index_add": index_add, "sigmoid": jax.nn.sigmoid},
                         bound={"windows": routines.window_by_take})

    def wrap(self, plan):
        return self.jax.jit(plan)

    def own_route(self, compiled, arrays):
        """Inputs all jax arrays: one jitted function per program, which picks the plan for
        the traced shapes and float types while it is traced (Compiled.run_plan, each
        signature's plan as the other route makes it). JAX's own dispatch, in C++, then
        tells one signature from another, as it does for a hand-written jax.jit; the next
        call only checks that its inputs are still jax arrays, and a new shape is traced
        once, not refused. Anything else (NumPy arrays or numbers among the inputs, which
        go over by the full path's rules; arrays sizing a derivative) takes the plan's steps."""
        if compiled.sizing:
            return None
        try:
            inputs = {k: arrays[k] for k in compiled.inputs}
        except (KeyError, TypeError):
            return None
        if not all(isinstance(v, self.jax.Array) for v in inputs.values()):
            return None
        route = _DISPATCH.get(compiled)
        if route is None:
            route = _DISPATCH[compiled] = _Dispatch(self._dispatch(weakref.ref(compiled)))
        return route.dispatch(inputs), route.fast(list(inputs), type(next(iter(inputs.values()), None)))

    def _dispatch(self, compiled):
        """The jitted function of one program (held by a weak reference: the table below
        must not keep the program alive)."""
        def traced(inputs):
            return compiled().run_plan(self, inputs, list(inputs.values()), remember=False)

        return self.jax.jit(traced)

    def dtype_of(self, value) -> np.dtype:
        """A jax array's element type is NumPy's own dtype already (every call asks, once
        per input: reading it from its printed name cost microseconds each)."""
        dtype = value.dtype
        return dtype if isinstance(dtype, np.dtype) else super().dtype_of(value)

    def placement(self, like):
        """None on a machine with one device (asking an array for its device costs about a
        microsecond, a tenth of a tiny call's overhead)."""
        jax = self.jax
        return None if jax.default_backend() == "cpu" and jax.device_count() == 1 else super().placement(like)

    def asarray(self, value, dtype, like):
        from . import BackendError

        if dtype == np.float64 and not self.jax.config.jax_enable_x64:
            raise BackendError("float64 arrays on the jax backend need JAX's x64 mode: "
                               "jax.config.update('jax_enable_x64', True) before any array is made, or pass float32")
        if isinstance(value, self.jax.Array) and value.dtype == dtype:
            return value  # already the backend's: no copy, no dispatch (most of a tiny call's cost)
        return self.xp.asarray(value, dtype=dtype)


class _Dispatch:
    """One program's jitted function, and the first-try checks made for it (one per list
    of input names and array type: a call reaches own_route again whenever its inputs
    change kind, and the check is code made with exec)."""

    def __init__(self, dispatch):
        self.dispatch, self._fast = dispatch, {}

    def fast(self, keys: list[str], array_type: type):
        key = (tuple(keys), array_type)
        if key not in self._fast:
            self._fast[key] = _checked(self.dispatch, keys, None, None, array_type)
        return self._fast[key]


_DISPATCH: "weakref.WeakKeyDictionary[object, _Dispatch]" = weakref.WeakKeyDictionary()


def load() -> JaxBackend:
    return JaxBackend()
