"""Running a program line by line: the driver both evaluators share.

Every line's index rules are checked first. Then the lines the last one reads run, in
order (program.needed_lines), as the compiled plan runs only those: a line nothing reads
cannot change the value returned, and its arrays (missing, or of sizes that disagree)
must not make one route refuse what another computes. Each left-hand side's value joins
the named arrays for the lines after it. Before a line runs, every tensor it names must
have an array, and the size of every index is worked out from the arrays
(program.Environment).
A derivative line is first written out as the formula it stands for (diff). The
evaluators (indexcalc.evaluate, indexcalc.loops) only say how to compute one equation;
the bookkeeping and the error reporting live here.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Callable, Mapping

import numpy as np

from .diff import resolve_derivatives
from .errors import IndexCalcError, ParseError
from .expr import Equation, Expr, Program
from .indices import check_equation, free_indices
from .logs_in_range import lines_in_range, logs_in_range
from .program import Environment, check_program, needed_lines
from .wellformed import as_parsed


EquationEvaluator = Callable[[Equation, Environment], np.ndarray]
ExpressionEvaluator = Callable[[Expr, Environment], np.ndarray]

_INTERNAL = (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError, MemoryError)


def run(source, arrays: Mapping[str, Any], on_equation: EquationEvaluator, on_expression: ExpressionEvaluator) -> np.ndarray:
    """Evaluate `source` with the given per-equation evaluator; return the last value."""
    # positions in errors count in the text as parse read it (NFC), so quote that text
    text = unicodedata.normalize("NFC", source) if isinstance(source, str) else None
    try:
        node = as_parsed(source)
        env = Environment(arrays)
        if isinstance(node, Program):
            check_program(node.equations)
            equations = resolve_derivatives(node).equations
        elif isinstance(node, Equation):
            check_program((node,))
            equations = (node,)
        else:
            free_indices(node)
            node = logs_in_range(node)
            env.read_by((node,))
            env.prepare(node)
            return on_expression(node, env)
        for eq in equations:
            check_equation(eq)  # every line's index rules, whether it runs or not
        value, lines = None, lines_in_range(needed_lines(equations))
        env.read_by(lines)
        for eq in lines:
            env.prepare(eq)
            value = on_equation(eq, env)
            env.arrays[eq.lhs.key] = value
        return value
    except IndexCalcError as err:
        raise err.with_source(text, None) if text else err
    except RecursionError:
        raise ParseError("the expression is nested too deeply to evaluate") from None
    except _INTERNAL as err:
        raise IndexCalcError(f"could not evaluate: {type(err).__name__}: {err}") from err
