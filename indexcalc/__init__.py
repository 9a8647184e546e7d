"""indexcalc: tensor calculus in Einstein index notation.

    import indexcalc as ic
    eq = ic.parse("yhat_i = sigma(w_ij x_j + b_i)")
    ic.evaluate(eq, {"w": W, "x": x, "b": b})       # einsum, axes = left-hand side's
    ic.evaluate_loops(eq, {"w": W, "x": x, "b": b}) # explicit loops, the same numbers
    str(eq), eq.latex(), eq.einsum()
"""

from .errors import IndexCalcError, IndexNotationError, MissingArrayError, ParseError, ShapeError
from .evaluate import evaluate
from .expr import Call, Delta, Deriv, Equation, Expr, Number, Power, Product, Program, Reduce, Sum, Tensor
from .indices import free_indices, summed_indices
from .loops import evaluate_loops
from .notation import parse

__version__ = "0.1.0"

__all__ = [
    "parse", "evaluate", "evaluate_loops", "free_indices", "summed_indices",
    "IndexCalcError", "ParseError", "IndexNotationError", "ShapeError", "MissingArrayError",
    "Expr", "Number", "Tensor", "Deriv", "Delta", "Product", "Sum", "Power", "Call", "Reduce",
    "Equation", "Program",
]

from .diff import DiffError, diff  # noqa: E402

__all__ += ["diff", "DiffError"]
from .simplify import simplify  # noqa: E402

__all__ += ["simplify"]
from .compile import Compiled, compile  # noqa: E402,A001

__all__ += ["compile", "Compiled"]
from .model import Model  # noqa: E402

__all__ += ["Model"]
