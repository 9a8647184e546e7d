"""Where a training run's arrays live: NumPy (today's), or a backend's (jax, torch, dask,
cupy) for the whole run.

The loop in `train` asks this module for the few things that depend on the library: the
data set placed once, a batch taken from it by the host's shuffled order (so every backend
sees NumPy's batches), whether a step's loss and gradients are finite (one answer, the
only value a step brings back to the host besides its loss), how the optimiser's update
is run (under jax.jit; on dask as one task), and the settling of a lazy library's arrays
between steps. Checkpoints are NumPy's: `to_numpy` on the way out,
`place` on the way in, so a checkpoint written on one backend resumes on any other.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np

from .backends import get_backend


def to_numpy(value: Any) -> np.ndarray:
    """Any library's array as a NumPy array: a dask graph computed, a tensor or a CuPy
    array copied to the host (np.asarray alone refuses a GPU's)."""
    if isinstance(value, np.ndarray):
        return value
    library = type(value).__module__.partition(".")[0]
    if library == "dask":
        value = value.compute()
    elif library == "torch":
        value = value.detach().cpu().numpy()
    elif library == "cupy":
        value = value.get()
    return np.asarray(value)


class NumpyArrays:
    """Today's run: NumPy arrays as given, NumPy's arithmetic."""

    name = "numpy"
    xp = np
    wrap = None  # how the optimiser's update is wrapped: NumPy's runs as it is
    update_xp = None  # the namespace the update runs with, where it is not `xp`

    def place(self, value: Any, dtype: np.dtype) -> Any:
        return value

    def data(self, arrays: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
        return {k: np.asarray(v) for k, v in arrays.items()}

    def take(self, arrays: Mapping[str, Any], picked: np.ndarray) -> dict[str, Any]:
        return {k: v[picked] for k, v in arrays.items()}

    def finite(self, loss, grads: Mapping[str, Any]) -> bool:
        return _finite(loss, grads)

    def out_of_memory(self, err: Exception) -> bool:
        return isinstance(err, MemoryError)

    def computed(self, loss, grads):
        """A step's loss and gradients, computed (NumPy's are, as they are made)."""
        return loss, grads

    def hold(self, *states: dict) -> None:
        """The parameters and optimiser state after a step, computed (NumPy's are)."""


class BackendArrays(NumpyArrays):
    """A backend's run: the data set, the parameters and the optimiser's state on the
    backend's arrays (on the device of `like`, the parameters given, where it has one)."""

    def __init__(self, name: str, like: Any = None):
        self.backend = get_backend(name)
        self.name, self.xp, self.like = name, self.backend.xp, like
        self._take, self._flag = _routines(name)

    def wrap(self, update: Callable) -> Callable:
        """The optimiser's update, as the backend runs a plan (jax.jit, torch.no_grad)."""
        return self.backend.wrap(update)

    def place(self, value: Any, dtype: np.dtype) -> Any:
        """`value` as the backend's array of `dtype`."""
        return self.backend.asarray(value, np.dtype(dtype), self.like)

    def data(self, arrays: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
        """The whole data set over to the backend once, in the run's float type (the
        parameters'), labels included: the plan reads every input as floats."""
        return {k: self.place(v, dtype) for k, v in arrays.items()}

    def take(self, arrays: Mapping[str, Any], picked: np.ndarray) -> dict[str, Any]:
        """A batch by the host's shuffled positions: the same samples as on NumPy."""
        if self.name == "torch":
            picked = self.backend.torch.as_tensor(picked, device=getattr(self.like, "device", None))
        return self._take(dict(arrays), picked)

    def finite(self, loss, grads: Mapping[str, Any]) -> bool:
        """Whether the loss and every gradient are finite: one flag made on the backend,
        one value brought back."""
        return bool(self._flag(loss, dict(grads)))

    def out_of_memory(self, err: Exception) -> bool:
        """MemoryError, or a library's own: torch's OutOfMemoryError and its CPU
        allocator's RuntimeError, XLA's RESOURCE_EXHAUSTED, CuPy's OutOfMemoryError."""
        text = str(err)
        return isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or (
            isinstance(err, RuntimeError) and any(
                s in text for s in ("out of memory", "can't allocate memory", "RESOURCE_EXHAUSTED")))


class DaskArrays(BackendArrays):
    """dask's arrays are lazy, and each operation on one costs a graph node (a millisecond
    or more), whatever the arrays' size. So the data and the plan stay dask's (a batch may
    be chunked over many machines), but what concerns the parameters — small arrays — is a
    task each: the finiteness flag, and the optimiser's update, run by NumPy on the
    chunks, wherever the scheduler keeps them. Each step's results are persisted (as a
    dask user would), so that no step's graph holds the steps before it."""

    update_xp = np  # the update runs on the parameters' chunks, NumPy arrays

    def __init__(self, name: str, like: Any = None):
        super().__init__(name, like)
        import dask
        import dask.array as da

        self.dask, self.da = dask, da

    def finite(self, loss, grads: Mapping[str, Any]) -> bool:
        return bool(self.dask.delayed(_finite)(loss, dict(grads)).compute())

    def wrap(self, update: Callable) -> Callable:
        """The optimiser's update (its bound `update`) as one task: new parameters, and
        moments shaped as their parameters, as dask arrays of that task's results."""
        moments = update.__self__.moments

        def run(params: dict, grads: dict, state: dict, scalars: tuple) -> tuple[dict, dict]:
            new, moved = self.dask.delayed(update, nout=2, pure=False)(params, grads, state, scalars)

            def array(part, key, name):
                return self.da.from_delayed(part[key], params[name].shape, dtype=params[name].dtype)

            return ({name: array(new, name, name) for name in grads},
                    {f"{m}.{name}": array(moved, f"{m}.{name}", name) for m in moments for name in grads})

        return run

    def computed(self, loss, grads):
        """The loss and gradients persisted: computed once, for the check and the update."""
        return self.dask.persist(loss, grads)

    def hold(self, *states: dict) -> None:
        """The new parameters and optimiser state persisted, in place."""
        for state, persisted in zip(states, self.dask.persist(*states)):
            state.update(persisted)


def _finite(loss, grads: Mapping[str, Any]) -> bool:
    """NumPy's check: the loss and every gradient finite."""
    return bool(np.isfinite(loss)) and all(np.all(np.isfinite(g)) for g in grads.values())


@functools.lru_cache(maxsize=None)
def _routines(name: str):
    """A batch's gather and the finiteness flag, wrapped once per backend as it runs a
    plan: under jax.jit each is one dispatch (and traced once), not one per array."""
    backend = get_backend(name)
    xp = backend.xp

    def take(arrays: dict[str, Any], picked) -> dict[str, Any]:
        return {k: v[picked] for k, v in arrays.items()}

    def flag(loss, grads: dict[str, Any]):
        ok = xp.all(xp.isfinite(loss))
        for g in grads.values():
            ok = ok & xp.all(xp.isfinite(g))
        return ok

    return backend.wrap(take), backend.wrap(flag)


def arrays_for(backend: str, like: Any = None) -> NumpyArrays:
    """The run's arrays on `backend`; an unknown or missing library is a BackendError
    naming the extra to install."""
    if backend == "numpy":
        return NumpyArrays()
    return (DaskArrays if backend == "dask" else BackendArrays)(backend, like)
