"""Built-in data sets: small, made here from a seed, no download.

Each returns `(train, test)`, two lists of arrays in the order features, targets; a model
file's `data` line names them. They are the examples of the source notes: XOR and Fizz
Buzz (the partial-derivatives note), a single ReLU neuron (Parr–Howard), logistic
regression with labels ±1 (the tuples note), a linear layer Y = XW (Huang), and three
clusters with integer class labels (blobs).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import IndexCalcError

Split = tuple[list[np.ndarray], list[np.ndarray]]


class DataError(IndexCalcError):
    """A data set or a file of arrays cannot be used: unreadable, damaged, empty, too big,
    or not shaped as the model reads it."""


def xor(seed: int = 0) -> Split:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    return [x, y], [x, y]


def fizzbuzz(seed: int = 0, bits: int = 10) -> Split:
    """Numbers in binary; classes: the number, fizz, buzz, fizzbuzz (one-hot).
    Trained on 101–1023, tested on 1–100, as in Grus's session."""

    def encode(numbers):
        x = np.array([[(i >> b) & 1 for b in range(bits)] for i in numbers], dtype=float)
        labels = [3 if i % 15 == 0 else 2 if i % 5 == 0 else 1 if i % 3 == 0 else 0 for i in numbers]
        return [x, np.eye(4)[labels]]

    return encode(range(101, 2**bits)), encode(range(1, 101))


def relu_neuron(seed: int = 0, n: int = 256, d: int = 3) -> Split:
    """Targets from a hidden ReLU neuron max(0, w·x + b) plus a little noise."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=d), 0.5
    x = rng.normal(size=(2 * n, d))
    y = np.maximum(0.0, x @ w + b) + 0.01 * rng.normal(size=2 * n)
    return [x[:n], y[:n]], [x[n:], y[n:]]


def logistic(seed: int = 0, n: int = 256, d: int = 2) -> Split:
    """Labels ±1 from a hidden linear separator, 5% of them flipped."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(2 * n, d))
    y = np.sign(x @ w)
    y[rng.random(2 * n) < 0.05] *= -1
    return [x[:n], y[:n]], [x[n:], y[n:]]


def linear(seed: int = 0, n: int = 128, d: int = 3, k: int = 2) -> Split:
    """Y = X W with a hidden W and a little noise."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, k))
    x = rng.normal(size=(2 * n, d))
    y = x @ w + 0.01 * rng.normal(size=(2 * n, k))
    return [x[:n], y[:n]], [x[n:], y[n:]]


def blobs(seed: int = 0, n: int = 150, classes: int = 3) -> Split:
    """Three Gaussian clusters in the plane, labelled 0, 1, 2 (integers, one per sample:
    what users' data files hold; a model declares `onehot y 3` to read them as y_k)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(classes) / classes])
    labels = rng.integers(0, classes, 2 * n)
    x = centres[labels] + rng.normal(size=(2 * n, 2))
    return [x[:n], labels[:n]], [x[n:], labels[n:]]


BUILT_IN: dict[str, Callable[..., Split]] = {
    "xor": xor,
    "fizzbuzz": fizzbuzz,
    "relu_neuron": relu_neuron,
    "logistic": logistic,
    "linear": linear,
    "blobs": blobs,
}


@dataclass
class DataSet:
    """The arrays a model trains and is tested on, and where they came from."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    source: str
    unused: list[str] = field(default_factory=list)
    onehot: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line naming every array found and what it is used for, so that an array
        the conventions do not pick up (a user's `x_test`) is not ignored in silence."""
        def listed(arrays):
            return ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in arrays.items())

        parts = [f"data set {self.source}: train {listed(self.train)}"]
        if self.test:
            parts.append(f"test {listed(self.test)}")
        else:
            parts.append("no test arrays")
        parts += [f"{k} as one-hot of {c} classes" for k, c in self.onehot.items()]
        if self.unused:
            tests = ", ".join(f"test_{k}" for k in self.train)
            parts.append(f"not used: {', '.join(self.unused)} (held-out arrays are named {tests})")
        return "; ".join(parts)


def load(name: str, names: list[str], seed: int = 0, folder: str = ".") -> tuple[dict, dict]:
    """A built-in data set, or a `.npz` file holding arrays named as the data tensors
    (and `test_<name>` for held-out data), as dicts keyed by `names`."""
    data = open_dataset(name, names, seed, folder)
    return data.train, data.test


def open_dataset(name: str, names: list[str], seed: int = 0, folder: str = ".",
                 onehot: Mapping[str, int] | None = None) -> DataSet:
    """A built-in data set or a `.npz` file, checked: every named array present and real
    numbers, with at least one sample, the same number of samples in each split, and the
    arrays declared one-hot turned from class labels into one-hot rows."""
    if name in BUILT_IN:
        train_list, test_list = BUILT_IN[name](seed)
        if len(names) != len(train_list):
            raise DataError(
                f"the data set {name} has {len(train_list)} arrays (features, targets); "
                f"the model names {len(names)}: {', '.join(names)}"
            )
        data = DataSet(dict(zip(names, train_list)), dict(zip(names, test_list)), name)
    else:
        data = _from_file(name, names, folder)
    for split, arrays in (("train", data.train), ("test", data.test)):
        if arrays:
            sample_count(arrays, f"the {split} arrays of {data.source}")
    return apply_onehot(data, onehot or {})


def apply_onehot(data: DataSet, onehot: Mapping[str, int]) -> DataSet:
    """The data set with the arrays named in `onehot` turned from class labels into
    one-hot rows of the given number of classes."""
    for split, arrays in (("train", data.train), ("test", data.test)):
        for label, classes in onehot.items():
            if label in arrays:
                arrays[label] = one_hot(arrays[label], classes, f"{split} array {label} of {data.source}")
    data.onehot = {**data.onehot, **onehot}
    return data


def _from_file(name: str, names: list[str], folder: str) -> DataSet:
    path = name if os.path.isabs(name) else os.path.join(folder, name)
    if not os.path.exists(path):
        raise DataError(f"the data set {name!r} is neither built in ({', '.join(BUILT_IN)}) "
                        f"nor a file ({path} does not exist)")
    arrays = read_npz(path, "the data file")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{path} has no array {', '.join(missing)} (it has {', '.join(arrays) or 'none'}); "
                        f"the model's data line names {', '.join(names)}")
    train = {n: arrays[n] for n in names}
    held_out = [n for n in names if f"test_{n}" in arrays]
    if held_out and len(held_out) < len(names):
        lacking = ", ".join(f"test_{n}" for n in names if n not in held_out)
        raise DataError(f"{path} has {', '.join(f'test_{n}' for n in held_out)} but not {lacking}: "
                        f"a test set needs every data array")
    test = {n: arrays[f"test_{n}"] for n in held_out}
    used = set(names) | {f"test_{n}" for n in held_out}
    return DataSet(train, test, name, unused=[k for k in arrays if k not in used])


def one_hot(labels: np.ndarray, classes: int, what: str) -> np.ndarray:
    """Class labels 0 … classes-1, one per sample, as one-hot rows (samples × classes)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"the {what} is declared one-hot, so it should hold one class label per sample, "
                        f"but has shape {labels.shape}")
    values = labels.astype(float)
    valid = np.isfinite(values) & (values == np.round(values)) & (values >= 0) & (values < classes)
    if not valid.all():
        raise DataError(f"the {what} holds {values[~valid][0]:g}, not a class label 0 … {classes - 1} "
                        f"(the one-hot declaration says {classes} classes)")
    return np.eye(classes)[values.astype(np.int64)]


def sample_count(arrays: Mapping[str, np.ndarray], what: str) -> int:
    """The common number of samples (the first axis) of the arrays."""
    if not arrays:
        return 0
    for name, value in arrays.items():
        if np.ndim(value) == 0:
            raise DataError(f"{what}: {name} is a single number, not an array with one entry per sample")
    counts = {name: len(value) for name, value in arrays.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise DataError(f"{what} have different numbers of samples: {listed}")
    count = next(iter(counts.values()))
    if count == 0:
        raise DataError(f"{what} have no samples (shapes {', '.join(str(np.shape(v)) for v in arrays.values())})")
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise DataError(f"{what}: {name} holds NaN or infinite values")
    return count


# ---------------------------------------------------------------- files of arrays


NPY_MAGIC = b"\x93NUMPY"
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, zlib.error,
            NotImplementedError, RuntimeError, KeyError, UnicodeDecodeError, SyntaxError, OverflowError)


def read_npz(path: str, what: str, kinds: str = "biuf") -> dict[str, np.ndarray]:
    """The named arrays of an `.npz` file (NumPy's `np.savez`), or a `DataError` in the
    user's words. Each array's header is read before its data, so that a damaged or
    crafted file (a header claiming 80 GB, a truncated archive, pickled objects) is
    refused rather than allocated; pickles are never loaded. `kinds` are the dtype kinds
    accepted (numpy's letters: b, i, u, f real numbers; U text)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if head.startswith(NPY_MAGIC):
        raise DataError(f"{what} {path} is a single .npy array, not an .npz archive of named arrays "
                        f"(np.savez('{os.path.splitext(os.path.basename(path))[0]}.npz', x=..., y=...) writes one)")
    if not head.startswith(b"PK"):
        raise DataError(f"{what} {path} is not an .npz file (the archive np.savez writes)")
    try:
        with zipfile.ZipFile(path) as archive:
            return {member.filename[:-4]: _read_member(archive, member, path, what, kinds)
                    for member in archive.infolist()}
    except MemoryError:
        raise DataError(f"{what} {path} is too big for this machine's memory") from None
    except _DAMAGED as err:
        raise DataError(f"{what} {path} is damaged or truncated ({type(err).__name__}: {err})") from None


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: str, what: str, kinds: str) -> np.ndarray:
    if not member.filename.endswith(".npy"):
        raise DataError(f"{what} {path} holds {member.filename!r}, which is not a NumPy array")
    name = member.filename[:-4]
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
    if dtype.hasobject or dtype.kind not in kinds:
        raise DataError(f"{what} {path}: {name} is not an array of real numbers (dtype {dtype}); "
                        f"Python objects are never loaded")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > member.file_size:
        raise DataError(f"{what} {path}: {name} claims shape {shape} ({human_size(claimed)}) but holds only "
                        f"{human_size(member.file_size)}: the file is damaged")
    refuse_if_too_big(f"{name} in {path}", claimed)
    with archive.open(member) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


# ---------------------------------------------------------------- memory


def human_size(nbytes: int) -> str:
    """Bytes as a person reads them: 512 B, 3.1 MB, 80.0 GB (powers of 1000)."""
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{nbytes} B"


def memory_size() -> int | None:
    """This machine's physical memory in bytes, where the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def refuse_if_too_big(what: str, nbytes: int) -> None:
    """Fail at once, naming the array and its size, rather than with a MemoryError (or
    minutes of swapping) after the allocation has begun."""
    limit = memory_size()
    if limit is not None and nbytes > limit:
        raise DataError(f"{what} would take {human_size(nbytes)}, more than this machine's memory "
                        f"({human_size(limit)})")
