"""How a plan's steps are spelled: for NumPy, or for an array namespace `xp`.

A plan is the same operations on every backend; only their spelling differs. NumPy's
methods on arrays are its cheapest calls (a small network's step is a few microseconds);
JAX, PyTorch, dask and CuPy share a smaller vocabulary, given to the plan as `xp`
(indexcalc.backends). The lowering (indexcalc.plan) asks its dialect for each step's text.
"""

from __future__ import annotations


class Dialect:
    """How a plan step is spelled for NumPy: methods on arrays (`x.T`, `x.sum(axis=...)`),
    the cheapest calls NumPy has, since a small network's step is a few microseconds.
    `ArrayDialect` spells the same steps as calls on a namespace `xp` alone, which the
    other backends provide (indexcalc.backends)."""

    ns = "np"

    def transpose(self, code: str, perm: tuple[int, ...]) -> str:
        return f"{code}.T" if perm == (1, 0) else f"{code}.transpose({perm})"

    def sum(self, code: str, axes: tuple[int, ...]) -> str:
        return f"{code}.sum(axis={axes})"

    def reshape(self, code: str, shape: tuple[int, ...]) -> str:
        return f"{code}.reshape({shape})"

    def copy(self, code: str) -> str:
        return f"np.array({code})"

    def astype(self, code: str, dtype: str) -> str:
        return f"({code}).astype({dtype})"

    def full(self, shape: tuple[int, ...], value: str, dtype: str) -> str:
        return f"{self.ns}.full({shape}, {value}, dtype={self.ns}.{dtype})"

    def windows(self, code: str, lengths: tuple[int, ...], axes: tuple[int, ...]) -> str:
        return f"sliding_window_view({code}, {lengths}, axis={axes})"

    def index(self, code: str, index: list[str]) -> str:
        return f"{code}[{', '.join(index)}]"


class ArrayDialect(Dialect):
    """Every step a call on `xp` (or an operator, or a slice with a positive step): what
    JAX, PyTorch, dask and CuPy arrays all accept, given the backend's namespace."""

    ns = "xp"

    def transpose(self, code: str, perm: tuple[int, ...]) -> str:
        return f"xp.permute_dims({code}, {perm})"

    def sum(self, code: str, axes: tuple[int, ...]) -> str:
        return f"xp.sum({code}, axis={axes})"

    def reshape(self, code: str, shape: tuple[int, ...]) -> str:
        return f"xp.reshape({code}, {shape})"

    def copy(self, code: str) -> str:
        return f"xp.materialize({code})"

    def astype(self, code: str, dtype: str) -> str:
        return f"xp.astype({code}, {dtype})"

    def windows(self, code: str, lengths: tuple[int, ...], axes: tuple[int, ...]) -> str:
        return f"xp.windows({code}, {lengths}, {axes})"

    def index(self, code: str, index: list[str]) -> str:
        """A slice with a negative step (a reversed letter) is the positive slice of the
        same positions, flipped: PyTorch refuses negative steps."""
        flips = []
        for axis, text in enumerate(index):
            parts = text.split(":")
            if len(parts) == 3 and parts[2].startswith("-"):
                last, start, step = int(parts[0]), int(parts[1]) + 1 if parts[1] else 0, -int(parts[2])
                index[axis] = f"{start or ''}:{last + 1}" + (f":{step}" if step != 1 else "")
                flips.append(axis)
        code = f"{code}[{', '.join(index)}]"
        return f"xp.flip({code}, axis={tuple(flips)})" if flips else code


NUMPY_CODE, ARRAY_CODE = Dialect(), ArrayDialect()
