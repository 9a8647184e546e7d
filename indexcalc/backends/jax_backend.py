"""JAX: the plan is a pure function of its arrays, so it runs under `jax.jit`, traced
once per shape signature. float64 needs JAX's x64 mode, which is JAX's own switch."""

from __future__ import annotations

import numpy as np

from . import routines
from .base import ArrayBackend


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


def load() -> JaxBackend:
    return JaxBackend()
