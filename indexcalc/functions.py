"""Elementwise functions: one table, one entry per function.

An entry holds everything indexcalc needs to know of a function: how it is spelled
(ASCII and Unicode aliases), how to compute it (a NumPy ufunc-like callable that is
numerically stable over the whole real line), how it looks in LaTeX, and its derivative as
an expression of the argument (`derivative(u)` returns f'(u)). A derivative that has no
closed form worth writing (σ', relu') is itself an entry, printed with a prime, so
`σ'(u)` and `relu'(u)` print and parse back. Adding a function is adding one entry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .expr import Call, Expr, Mask, Number, Power, Product, Sum


@dataclass(frozen=True)
class Function:
    name: str
    compute: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[Expr], Expr]
    latex: str
    aliases: tuple[str, ...] = ()
    unicode: str | None = None
    prime_from_value: Callable[[str, Callable[[str, str], str]], str] | None = None  # f'(u) as code from y = f(u)
    kernel: Callable[[Any], Callable] | None = None  # xp -> the function on xp's arrays (default: xp's ufunc)

    def on(self, xp) -> Callable:
        """The function on the arrays of the namespace `xp` (NumPy's, JAX's, a backend's
        shim): a plan on another backend calls this, never NumPy's compute."""
        return self.kernel(xp) if self.kernel else getattr(xp, self.compute.__name__)


def _call(name: str) -> Callable[[Expr], Expr]:
    return lambda u: Call(name, u)


def _sigmoid_on(xp):
    """σ on the arrays of `xp`: the library's own fused σ where it has one (torch.sigmoid,
    jax.nn.sigmoid, dask's override: one kernel each), else 1 / (1 + e^-x), as one writes it
    by hand: exact to an ulp or two over the whole line. Below x ≈ -709 e^-x overflows to
    inf and σ is 0 (it is under 1e-308 there): an answer, and the routes run functions
    with floating-point warnings off. Not 0.5 (1 + tanh(x / 2)), which never overflows but
    cancels below x ≈ -5: σ(-30) kept 4 digits and σ(-40) was 0, so log σ(-40) was -inf
    (it is -40) and its gradient nan (it is 1)."""
    fused = getattr(xp, "sigmoid", None)
    return fused if callable(fused) else lambda x: 1.0 / (1.0 + xp.exp(-x))


def _sigmoid_prime_on(xp):
    """σ'(x) = σ(x) (1 - σ(x)), σ computed once."""
    sigmoid = _sigmoid_on(xp)

    def sigmoid_prime(x):
        s = sigmoid(x)
        return s * (1.0 - s)
    return sigmoid_prime


_sigmoid, _sigmoid_prime = _sigmoid_on(np), _sigmoid_prime_on(np)


def _step(x):
    return (np.asarray(x) > 0).astype(np.result_type(x, np.float32))


def _zero(u: Expr) -> Expr:
    return Number(0.0)


def _neg(*factors: Expr) -> Expr:
    return Product((Number(-1.0),) + factors)


FUNCTIONS: tuple[Function, ...] = (
    Function(
        "sigma", _sigmoid, _call("sigma'"), r"\sigma", ("sigmoid", "σ"), "σ", lambda y, astype: f"{y} * (1.0 - {y})",
        _sigmoid_on,
    ),
    Function(
        "sigma'",
        _sigmoid_prime,
        lambda u: Product((Call("sigma'", u), Sum((Number(1.0), _neg(Number(2.0), Call("sigma", u)))))),
        r"\sigma'",
        ("sigmoid'", "σ'"),
        "σ'",
        kernel=_sigmoid_prime_on,
    ),
    Function("tanh", np.tanh, _call("tanh'"), r"\tanh", prime_from_value=lambda y, astype: f"1.0 - {y} * {y}"),
    Function(
        "tanh'",
        lambda x: 1.0 - np.tanh(x) ** 2,
        lambda u: _neg(Number(2.0), Call("tanh", u), Call("tanh'", u)),
        r"\tanh'",
        kernel=lambda xp: lambda x: 1.0 - xp.tanh(x) ** 2,
    ),
    Function(
        "relu",
        lambda x: np.maximum(x, 0),
        _call("relu'"),
        r"\operatorname{relu}",
        prime_from_value=lambda y, astype: astype(f"{y} > 0", f"{y}.dtype"),
        kernel=lambda xp: lambda x: xp.maximum(x, 0.0),
    ),
    Function("relu'", _step, _zero, r"\operatorname{relu}'", kernel=lambda xp: lambda x: xp.astype(x > 0, x.dtype)),
    Function("exp", np.exp, _call("exp"), r"\exp"),
    Function("log", np.log, lambda u: Power(u, Number(-1.0)), r"\log"),
    Function(
        "sqrt",
        np.sqrt,
        lambda u: Product((Number(0.5), Power(Call("sqrt", u), Number(-1.0)))),
        r"\sqrt",
    ),
    Function("sin", np.sin, _call("cos"), r"\sin"),
    Function("cos", np.cos, lambda u: _neg(Call("sin", u)), r"\cos"),
    Function("softplus", lambda x: np.logaddexp(0, x), _call("sigma"), r"\operatorname{softplus}",
             kernel=lambda xp: lambda x: xp.logaddexp(0.0, x)),
    Function("abs", np.abs, _call("abs'"), r"\operatorname{abs}"),
    Function("abs'", np.sign, _zero, r"\operatorname{abs}'"),
)


def reduce_array(op: str, values: np.ndarray, axes: tuple[int, ...], total=None) -> np.ndarray:
    """sum, mean, max, min, or logsumexp (log Σ exp, shifted by the maximum so it never
    overflows: the stable way to write the log of a softmax's denominator). The max of
    nothing is -inf and the min +inf, as the sum of nothing is 0: the identities that
    let a reduction be split into parts and combined (the explicit loops do).

    `total`, for a logsumexp, is Σ exp(values) as a forward pass computed it: its log is
    the answer wherever every entry is a normal float, with no exps computed again."""
    if total is not None:
        total = np.asarray(total)
        normal = np.finfo(total.dtype)
        if total.min(initial=np.inf) >= normal.tiny and total.max(initial=0.0) <= normal.max:  # NaN: neither
            return np.log(total)
    if op == "sum":
        return np.sum(values, axis=axes)
    if op == "mean":
        return np.mean(values, axis=axes)
    if op == "max":
        return np.max(values, axis=axes, initial=-np.inf)
    if op == "min":
        return np.min(values, axis=axes, initial=np.inf)
    top = np.max(values, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis=axes) + np.log(np.sum(np.exp(values - top), axis=axes))


# the Iverson brackets' comparisons (expr.COMPARISONS), as NumPy computes them
COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal,
}


def compare_values(op: str, left, right, dtype) -> np.ndarray:
    """`[left op right]` elementwise: 1.0 where it holds, else 0.0, in the float type `dtype`."""
    return np.asarray(COMPARE[op](left, right)).astype(dtype)


def mask_operand(mask: Mask, size: Callable[[str], int], dtype) -> tuple[np.ndarray, tuple[str, ...]]:
    """The mask `[a op b + offset]` as an array over its distinct letters, of 1.0 and 0.0
    in the float type `dtype` (`size` gives a letter's size). `[j <= i]` is a (j, i)
    matrix; `[i >= 1]` and `[i <= i + 2]` are vectors over i. Built once per shape and
    type and shared (so read-only): a plan and evaluate contract it as an operand."""
    if mask.right is None or mask.right == mask.left:
        return _mask_array(mask.op, size(mask.left), None, mask.offset, np.dtype(dtype).name,
                           mask.right is not None), (mask.left,)
    return _mask_array(mask.op, size(mask.left), size(mask.right), mask.offset, np.dtype(dtype).name,
                       False), (mask.left, mask.right)


@functools.lru_cache(maxsize=256)
def _mask_array(op: str, left: int, right: int | None, offset: int, dtype: str, same: bool) -> np.ndarray:
    a = np.arange(left)
    if right is not None:
        a, b = a[:, None], np.arange(right)[None, :] + offset
    else:
        b = a + offset if same else offset
    out = compare_values(op, a, b, np.dtype(dtype))
    out.flags.writeable = False
    return out


BY_NAME: dict[str, Function] = {}
for _f in FUNCTIONS:
    for _spelling in (_f.name,) + _f.aliases:
        BY_NAME[_spelling] = _f


def lookup(name: str) -> Function | None:
    """The function spelled `name` (any alias), or None."""
    return BY_NAME.get(name)


def canonical_name(name: str) -> str:
    return BY_NAME[name].name
