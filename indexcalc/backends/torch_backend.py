"""PyTorch: tensors stay on their device, and the plan runs under `torch.no_grad()`,
since the gradient is already derived and an autograd graph would only cost.

`xp` is torch with NumPy's names and meanings where torch differs: the module-level
functions here (so that an exported plan, indexcalc.export, writes them out as they are).
New arrays are made on the inputs' device (`device`, bound per device)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .base import ArrayBackend, namespace_of


def _bounded(a, b, pick, clamp):
    """np.maximum/np.minimum: a number on either side is a clamp."""
    if isinstance(b, (int, float)):
        return clamp(a, b)
    if isinstance(a, (int, float)):
        return clamp(b, a)
    return pick(a, b)


def maximum(a, b):
    return _bounded(a, b, torch.maximum, torch.clamp_min)


def minimum(a, b):
    return _bounded(a, b, torch.minimum, torch.clamp_max)


def logaddexp(a, b):
    if isinstance(a, (int, float)):
        a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
    return torch.logaddexp(a, b)


def _reduced(f, x, axis, keepdims):
    """A reduction over `axis` as NumPy's: over no axis, the array itself."""
    return x if axis == () else f(x, dim=axis, keepdim=keepdims)


def reduce_sum(x, axis=None, keepdims=False):
    return _reduced(torch.sum, x, axis, keepdims)


def reduce_mean(x, axis=None, keepdims=False):
    return _reduced(torch.mean, x, axis, keepdims)


def reduce_max(x, axis=None, keepdims=False):
    return _reduced(torch.amax, x, axis, keepdims)


def reduce_min(x, axis=None, keepdims=False):
    return _reduced(torch.amin, x, axis, keepdims)


def windows(x, lengths, axes):
    """NumPy's sliding_window_view: torch's unfold, one window axis at a time."""
    for length, axis in zip(lengths, axes):
        x = x.unfold(axis, length, 1)
    return x


def index_add(out, index, values):
    out[index] += values
    return out


def materialize(x):
    return x.contiguous()


def astype(x, dtype):
    return x.to(dtype)


def full(shape, value, dtype=None, device=None):
    return torch.full(shape, value, dtype=dtype, device=device)


def zeros(shape, dtype=None, device=None):
    return torch.zeros(shape, dtype=dtype, device=device)


def eye(n, dtype=None, device=None):
    return torch.eye(n, dtype=dtype, device=device)


def pad(x, pads):
    return F.pad(x, [n for pair in reversed(pads) for n in pair])


def repeat(x, n, axis):
    return torch.repeat_interleave(x, n, dim=axis)


def flip(x, axis):
    return torch.flip(x, dims=tuple(axis) if isinstance(axis, (tuple, list)) else (axis,))


def squeeze(x, axis):
    return torch.squeeze(x, dim=axis)


OVERRIDES = {
    "permute_dims": torch.permute, "expand_dims": torch.unsqueeze,
    "sum": reduce_sum, "mean": reduce_mean, "max": reduce_max, "min": reduce_min,
    "maximum": maximum, "minimum": minimum, "logaddexp": logaddexp, "materialize": materialize, "astype": astype,
    "full": full, "zeros": zeros, "eye": eye, "pad": pad, "repeat": repeat, "flip": flip, "squeeze": squeeze,
    "windows": windows, "index_add": index_add,
}
ON_DEVICE = ("full", "zeros", "eye")  # the overrides that make new arrays


def _overrides(device) -> dict:
    """The overrides, new arrays made on `device` (None: torch's default device)."""
    if device is None:
        return OVERRIDES
    return {**OVERRIDES, **{k: functools.partial(OVERRIDES[k], device=device) for k in ON_DEVICE}}


class TorchBackend(ArrayBackend):
    imports = ("import torch",)
    library = "torch"

    def __init__(self):
        self.torch = torch
        super().__init__("torch", torch, OVERRIDES)
        self._by_device = {}

    def namespace(self, constants, like):
        device = getattr(like, "device", None)
        if device is None or device.type == "cpu":
            return super().namespace(constants, like)
        if device not in self._by_device:  # new arrays (full, zeros, eye) made on the tensors' device
            self._by_device[device] = namespace_of(torch, _overrides(device))
        return super().namespace(constants, like, self._by_device[device])

    def wrap(self, plan):
        return torch.no_grad()(plan)

    def dtype_of(self, value) -> np.dtype:
        """A tensor's element type as NumPy names it, from a table (every call asks, once
        per input: reading it from the type's printed name cost microseconds each)."""
        known = _NUMPY_DTYPES.get(value.dtype)
        return known if known is not None else super().dtype_of(value)

    def asarray(self, value, dtype, like):
        torch_dtype = _TORCH_DTYPES.get(dtype) or getattr(torch, np.dtype(dtype).name)
        if type(value) is torch.Tensor and value.dtype is torch_dtype and (like is None or value.device == like.device):
            return value
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            value = value.copy()  # torch shares a NumPy array's memory and would warn that it cannot keep it read-only
        return torch.as_tensor(value, dtype=torch_dtype, device=getattr(like, "device", None))


_TORCH_DTYPES = {np.dtype("float64"): torch.float64, np.dtype("float32"): torch.float32,
                 np.dtype("float16"): torch.float16}
_NUMPY_DTYPES = {t: d for d, t in _TORCH_DTYPES.items()}


def load() -> TorchBackend:
    return TorchBackend()
