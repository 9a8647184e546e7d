"""PyTorch: tensors stay on their device, and the plan runs under `torch.no_grad()`,
since the gradient is already derived and an autograd graph would only cost."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend


def _namespace(torch, device):
    """NumPy's names and meanings on torch's routines, new arrays made on `device`."""
    import torch.nn.functional as F

    def bound(a, b, pick, clamp):
        if isinstance(b, (int, float)):
            return clamp(a, b)
        if isinstance(a, (int, float)):
            return clamp(b, a)
        return pick(a, b)

    def scalar_first(f):
        return lambda a, b: f(torch.as_tensor(a, dtype=b.dtype, device=b.device) if isinstance(a, (int, float)) else a, b)

    def reduction(f):
        return lambda x, axis=None, keepdims=False: x if axis == () else f(x, dim=axis, keepdim=keepdims)

    def windows(x, lengths, axes):
        for length, axis in zip(lengths, axes):
            x = x.unfold(axis, length, 1)
        return x

    def index_add(out, index, values):
        out[index] += values
        return out

    return {
        "permute_dims": torch.permute,
        "sum": reduction(torch.sum), "mean": reduction(torch.mean), "max": reduction(torch.amax),
        "min": reduction(torch.amin),
        "materialize": lambda x: x.contiguous(),
        "astype": lambda x, dtype: x.to(dtype),
        "full": lambda shape, value, dtype=None: torch.full(shape, value, dtype=dtype, device=device),
        "zeros": lambda shape, dtype=None: torch.zeros(shape, dtype=dtype, device=device),
        "eye": lambda n, dtype=None: torch.eye(n, dtype=dtype, device=device),
        "maximum": lambda a, b: bound(a, b, torch.maximum, torch.clamp_min),
        "minimum": lambda a, b: bound(a, b, torch.minimum, torch.clamp_max),
        "logaddexp": scalar_first(torch.logaddexp),
        "pad": lambda x, pads: F.pad(x, [n for pair in reversed(pads) for n in pair]),
        "repeat": lambda x, n, axis: torch.repeat_interleave(x, n, dim=axis),
        "expand_dims": torch.unsqueeze,
        "flip": lambda x, axis: torch.flip(x, dims=tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)),
        "squeeze": lambda x, axis: torch.squeeze(x, dim=axis),
        "windows": windows,
        "index_add": index_add,
    }


class TorchBackend(ArrayBackend):
    def __init__(self):
        import torch

        self.torch = torch
        super().__init__("torch", torch, _namespace(torch, None))
        self._by_device = {}

    def namespace(self, constants, like):
        device = getattr(like, "device", None)
        if device is not None and device.type != "cpu":
            if device not in self._by_device:
                self._by_device[device] = ArrayBackend("torch", self.torch, _namespace(self.torch, device)).xp
            self.xp = self._by_device[device]
        return super().namespace(constants, like)

    def wrap(self, plan):
        return self.torch.no_grad()(plan)

    def asarray(self, value, dtype, like):
        torch_dtype = getattr(self.torch, np.dtype(dtype).name)
        return self.torch.as_tensor(value, dtype=torch_dtype, device=getattr(like, "device", None))


def load() -> TorchBackend:
    return TorchBackend()
