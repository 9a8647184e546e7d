"""Built-in data sets, named on a model file's `dataset` line; no download.

Each returns `(train, test)`, two lists of arrays (features, targets, and for the
sequence tasks a weight array); a model file's `data` line names them, in that order, and
its equations read them per sample (`batch n` gives each the sample index n first).
They are the examples of the source notes: XOR and Fizz Buzz (the partial-derivatives
note), a single ReLU neuron (Parr–Howard), logistic regression with labels ±1 (the tuples
note), a linear layer Y = XW (Huang), and three clusters with integer class labels
(blobs). Made here from the seed, except `digits`, which scikit-learn ships.

The data sets of the layers people write today (issue 10):

`digits`: scikit-learn's 1,797 handwritten digits, 8×8 images (`pip install
"indexcalc[digits]"`; the core never imports scikit-learn, and without it the data set is
a one-line `DataError` naming that extra).

    data x y          # x_{r c}: an 8×8 image, pixels scaled to [0, 1] (row r, column c)
    dataset digits    # y_k: the digit, one-hot over k = 0 … 9
    train 1,437 images, test 360: a stratified split, fixed whatever the training seed

The image keeps its two axes, as a convolution reads it (`K_{c k l} x_{(i+k) (j+l)}`),
and a dense layer reads it as well without reshaping (`W_{h r c} x_{r c}`); one grey
channel needs no channel axis.

`copy` and `reverse`: a sequence task for causal self-attention. A sequence of 6 symbols
(0 … 4), the separator (token 5), then the same 6 symbols again, copied or reversed. The
model reads the tokens and predicts, at every position t, the next token (the sequence
shifted by one, as a language model is trained). In the first half the next token is
random; from the separator on it is the answer, and a causal model can give it, since
each answer token is in the first half, which every later position can look back at
(copy: position t reads position t − 6; reverse: 11 − t).

    data x y m        # x_{t v}: the token at position t = 0 … 11, one-hot over v = 0 … 5
    dataset reverse   # y_{t v}: the token at position t + 1 (what to predict), one-hot
                      # m_t: 1 at the 6 answer positions t = 6 … 11, 0 before
    train 2,000 sequences, test 500: distinct sequences, none in both

The loss scores the answer positions only, weighting each position's cross-entropy by m:

    ce_t = logsumexp_u(z_tu) - y_tv z_tv    # z_tv: the model's logits at position t
    loss = m_t ce_t / 6

`gaussian`: samples of a 3-dimensional Gaussian with a known mean and covariance, for
fitting both by maximum likelihood (examples/gaussian.ic: the log-likelihood is
`0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j`).

    data x            # x_i: one sample, i = 0 … 2
    dataset gaussian  # train 500 samples, test 200; GAUSSIAN_MEAN, GAUSSIAN_COVARIANCE
                      # (correlated, eigenvalues 0.14 to 2.3) drew them

The maximum-likelihood fit is the sample mean and the sample covariance (divided by the
count, not the count less one) of the training samples, which a test compares it with.

Position is not in the tokens: the model learns it (a parameter `P_{t d}` added to the
token embedding). `metric accuracy z y` counts every position, the first half's
unpredictable tokens too; the answer tokens' accuracy weights each position by m.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import IndexCalcError
from .memory import human_size, memory_size  # noqa: F401  human_size: `from indexcalc.datasets import`
from .training_errors import file_path

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


GAUSSIAN_MEAN = np.array([1.0, -0.5, 2.0])
GAUSSIAN_COVARIANCE = np.array([[1.0, 0.6, -0.3], [0.6, 2.0, 0.4], [-0.3, 0.4, 0.5]])


def gaussian(seed: int = 0, n: int = 500, test: int = 200) -> Split:
    """Samples of N(GAUSSIAN_MEAN, GAUSSIAN_COVARIANCE), by its Cholesky factor."""
    rng = np.random.default_rng(seed)
    x = GAUSSIAN_MEAN + rng.normal(size=(n + test, 3)) @ np.linalg.cholesky(GAUSSIAN_COVARIANCE).T
    return [x[:n]], [x[n:]]


DIGITS_EXTRA = 'pip install "indexcalc[digits]"'
DIGITS_TEST = 360  # held-out images: 20% of 1,797, 36 of each digit (give or take one)


def digits(seed: int = 0, test: int = DIGITS_TEST, split_seed: int = 0) -> Split:
    """scikit-learn's 8×8 handwritten digits: images (samples × 8 × 8) with pixels scaled
    from 0 … 16 to [0, 1], and the digit one-hot (samples × 10).

    The split is scikit-learn's stratified `train_test_split` from `split_seed`, and does
    not follow the training seed (`seed`, accepted as every built-in set accepts it): the
    held-out images stay the same, so that runs with different seeds are compared on one
    test set, as with any published data set."""
    load_digits, train_test_split = _sklearn("digits")
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target)
    train_x, test_x, train_labels, test_labels = train_test_split(
        images, labels, test_size=test, stratify=labels, random_state=split_seed)
    classes = np.eye(10)
    return [train_x, classes[train_labels]], [test_x, classes[test_labels]]


def _sklearn(dataset: str):
    """scikit-learn's `load_digits` and `train_test_split`, imported only when a data set
    that needs them is opened: the core does not depend on scikit-learn."""
    try:
        import sklearn  # noqa: F401  (first on its own: absent is one message, broken another)
    except ImportError as err:
        if err.name != "sklearn":
            raise _broken(dataset, err) from None
        raise DataError(f"the data set {dataset} needs scikit-learn, which is not installed: "
                        f"{DIGITS_EXTRA}") from None
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise _broken(dataset, err) from None
    return load_digits, train_test_split


def _broken(dataset: str, err: ImportError) -> DataError:
    """scikit-learn is there but does not import (a dependency missing, a build for
    another NumPy): the first line of the reason, and how to repair it."""
    reason = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    return DataError(f"the data set {dataset} needs scikit-learn, which is installed but cannot be imported "
                     f"({reason}); reinstall it: {DIGITS_EXTRA}")


def sequences(seed: int = 0, reverse: bool = False, n: int = 2000, test: int = 500,
              length: int = 6, symbols: int = 5) -> Split:
    """The copy (or reverse) task as next-token prediction: tokens x (samples × 2·length ×
    symbols+1, one-hot), the next tokens y (the same shape), and weights m (samples ×
    2·length) that are 1 where y is an answer token, 0 where it is not.

    Each sequence is `length` random symbols, the separator (token `symbols`), and the
    symbols again (reversed with `reverse`); x is all but its last token, y all but its
    first. The train and test sequences are distinct draws from the symbols**length
    possible ones, so that test accuracy measures copying, not remembering."""
    possible = symbols**length
    if n + test > possible:
        raise DataError(f"{n + test} distinct sequences were asked for, but {symbols} symbols make only "
                        f"{possible} of length {length}")
    rng = np.random.default_rng(seed)
    codes = rng.choice(possible, size=n + test, replace=False)
    first = codes[:, None] // symbols ** np.arange(length) % symbols  # the code's digits, base `symbols`
    answer = first[:, ::-1] if reverse else first
    separator = np.full((n + test, 1), symbols)
    whole = np.concatenate([first, separator, answer], axis=1)
    vocabulary = np.eye(symbols + 1)
    x, y = vocabulary[whole[:, :-1]], vocabulary[whole[:, 1:]]
    m = np.zeros(whole[:, 1:].shape)
    m[:, length:] = 1.0  # y at positions length … 2·length−1 is the answer
    return [x[:n], y[:n], m[:n]], [x[n:], y[n:], m[n:]]


def copy_task(seed: int = 0) -> Split:
    """The copy task: after the separator, the first half again (see `sequences`)."""
    return sequences(seed, reverse=False)


def reverse_task(seed: int = 0) -> Split:
    """The reverse task: after the separator, the first half backwards (see `sequences`)."""
    return sequences(seed, reverse=True)


BUILT_IN: dict[str, Callable[..., Split]] = {
    "xor": xor,
    "fizzbuzz": fizzbuzz,
    "relu_neuron": relu_neuron,
    "logistic": logistic,
    "linear": linear,
    "blobs": blobs,
    "digits": digits,
    "copy": copy_task,
    "reverse": reverse_task,
    "gaussian": gaussian,
}

# what each built-in set's arrays are, for a `data` line that names too few or too many
ARRAYS: dict[str, str] = {
    "copy": "tokens x_tv, next tokens y_tv, answer weights m_t",
    "reverse": "tokens x_tv, next tokens y_tv, answer weights m_t",
    "digits": "images x_rc, one-hot digits y_k",
    "gaussian": "samples x_i",
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
                f"the data set {name} has {len(train_list)} arrays ({ARRAYS.get(name, 'features, targets')}); "
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
    refuse_if_too_big(f"the one-hot rows of the {what} ({len(values):,} × {classes:,})", 8 * len(values) * classes)
    rows = np.zeros((len(values), classes))  # not np.eye(classes)[labels]: classes² numbers
    rows[np.arange(len(values)), values.astype(np.int64)] = 1.0
    return rows


def sample_count(arrays: Mapping[str, np.ndarray], what: str) -> int:
    """The common number of samples (the first axis) of the arrays."""
    if not arrays:
        return 0
    for name, value in arrays.items():
        if np.ndim(value) == 0:
            raise DataError(f"{what}: {name} is a single number, not an array with one entry per sample")
        if isinstance(value, (np.ndarray, list, tuple)) and np.asarray(value).dtype.kind not in "biuf":
            kind = {"c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes"}
            raise DataError(f"{what}: {name} holds {kind.get(np.asarray(value).dtype.kind, np.asarray(value).dtype)}"
                            f", not real numbers")
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
    path = file_path(path, what, DataError)
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


def refuse_if_too_big(what: str, nbytes: int) -> None:
    """Fail at once, naming the array and its size, rather than with a MemoryError (or
    minutes of swapping) after the allocation has begun."""
    limit = memory_size()
    if limit is not None and nbytes > limit:
        raise DataError(f"{what} would take {human_size(nbytes)}, more than this machine's memory "
                        f"({human_size(limit)})")
