"""Built-in data sets: small, made here from a seed, no download.

Each returns `(train, test)`, two lists of arrays in the order features, targets; a model
file's `data` line names them. They are the examples of the source notes: XOR and Fizz
Buzz (the partial-derivatives note), a single ReLU neuron (Parr–Howard), logistic
regression with labels ±1 (the tuples note), and a linear layer Y = XW (Huang).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .errors import IndexCalcError

Split = tuple[list[np.ndarray], list[np.ndarray]]


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


BUILT_IN: dict[str, Callable[..., Split]] = {
    "xor": xor,
    "fizzbuzz": fizzbuzz,
    "relu_neuron": relu_neuron,
    "logistic": logistic,
    "linear": linear,
}


def load(name: str, names: list[str], seed: int = 0, folder: str = ".") -> tuple[dict, dict]:
    """A built-in data set, or a `.npz` file holding arrays named as the data tensors
    (and `test_<name>` for held-out data), as dicts keyed by `names`."""
    if name in BUILT_IN:
        train, test = BUILT_IN[name](seed)
        if len(names) != len(train):
            raise IndexCalcError(
                f"the data set {name} has {len(train)} arrays (features, targets); "
                f"the model names {len(names)}: {', '.join(names)}"
            )
        return dict(zip(names, train)), dict(zip(names, test))
    path = name if os.path.isabs(name) else os.path.join(folder, name)
    try:
        with np.load(path) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except (OSError, ValueError) as err:
        known = ", ".join(BUILT_IN)
        raise IndexCalcError(f"cannot load the data set {name!r}: not built in ({known}) and {err}") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise IndexCalcError(f"{path} has no array {', '.join(missing)} (it has {', '.join(arrays)})")
    train = {n: arrays[n] for n in names}
    test = {n: arrays[f"test_{n}"] for n in names} if all(f"test_{n}" in arrays for n in names) else {}
    return train, test
