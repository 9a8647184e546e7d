"""The reference evaluator: explicit loops, one number at a time.

Written to be obviously right, not fast: for every entry of the result it assigns each
free index a value, and every product loops over the indices it sums, multiplying the
entries of its factors. It shares nothing with the einsum evaluator but the summation
rules (`indexcalc.indices`), so agreement between the two is a real check.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np

from . import functions
from .expr import Call, Delta, Equation, Expr, Number, Power, Product, Reduce, Sum, Tensor, leaf_factors
from .indices import free_indices, relabelled_index, summed_indices
from .program import Environment, run


def evaluate_loops(source, arrays: Mapping[str, Any]) -> np.ndarray:
    """Evaluate like `evaluate`, by explicit loops over every index."""
    return run(source, arrays, _loop_equation, _loop_expression)


def _loop_equation(eq: Equation, env: Environment) -> np.ndarray:
    return _fill(eq.rhs, eq.lhs.all_indices, frozenset(eq.lhs.all_indices), env)


def _loop_expression(node: Expr, env: Environment) -> np.ndarray:
    return _fill(node, free_indices(node), frozenset(), env)


def _fill(node: Expr, axes: tuple[str, ...], fixed: frozenset[str], env: Environment) -> np.ndarray:
    out = np.empty([env.size(i) for i in axes])
    for position in itertools.product(*(range(env.size(i)) for i in axes)):
        out[position] = _value(node, dict(zip(axes, position)), fixed, env)
    return out


def _value(node: Expr, at: dict[str, int], fixed: frozenset[str], env: Environment) -> float:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, (Tensor, Delta, Product)):
        factors = [node] if isinstance(node, (Tensor, Delta)) else list(leaf_factors(node))
        summed = summed_indices(node, fixed)
        total = 0.0
        for values in itertools.product(*(range(env.size(i)) for i in summed)):
            inner = {**at, **dict(zip(summed, values))}
            term = 1.0
            for factor in factors:
                term *= _factor(factor, inner, fixed, env)
            total += term
        return total
    if isinstance(node, Sum):
        return sum(_value(term, at, fixed, env) for term in node.terms)
    if isinstance(node, Power):
        with np.errstate(all="ignore"):
            return float(np.power(_value(node.base, at, fixed, env), _value(node.exponent, at, fixed, env)))
    if isinstance(node, Call):
        inner = at
        if node.relabel is not None:
            inner = {**at, relabelled_index(node, fixed): at[node.relabel]}
        with np.errstate(all="ignore"):
            return float(functions.lookup(node.func).compute(np.float64(_value(node.arg, inner, fixed, env))))
    if isinstance(node, Reduce):
        inner_fixed = fixed | set(node.indices)
        ranges = [range(env.size(i)) for i in node.indices]
        values = [
            _value(node.body, {**at, **dict(zip(node.indices, picked))}, inner_fixed, env)
            for picked in itertools.product(*ranges)
        ]
        return float(functions.reduce_array(node.op, np.array(values), (0,)))
    raise TypeError(f"cannot evaluate {type(node).__name__}")


def _factor(factor: Expr, at: dict[str, int], fixed: frozenset[str], env: Environment) -> float:
    if isinstance(factor, Tensor):
        return float(env.array(factor)[tuple(at[i] for i in factor.all_indices)])
    if isinstance(factor, Delta):
        return 1.0 if all(at[a] == at[b] for a, b in factor.pairs) else 0.0
    return _value(factor, at, fixed, env)
