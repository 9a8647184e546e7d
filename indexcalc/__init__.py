"""indexcalc: tensor calculus in Einstein index notation.

    import indexcalc as ic
    eq = ic.parse("yhat_i = sigma(w_ij x_j + b_i)")
    ic.evaluate(eq, {"w": W, "x": x, "b": b})       # einsum, axes = left-hand side's
    ic.evaluate_loops(eq, {"w": W, "x": x, "b": b}) # explicit loops, the same numbers
    str(eq), eq.latex(), eq.einsum()
    d = ic.diff("yhat_i = sigma(w_ij x_j + b_i)", "w_gh")   # comma notation, with δ
    f = ic.compile(program, wrt=["w"])                       # value and gradients, by einsum
    ic.Trainer(ic.Model(...), ic.Adam(0.01)).fit(data, epochs=100)
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ArgumentError, IndexCalcError, IndexNotationError, InlineTooLargeError, MissingArrayError, ParseError, ShapeError,
)
from .expr import (  # noqa: E402
    Call, Compare, Delta, Deriv, Equation, Expr, Mask, MatrixCall, Number, Power, Product, Program, Reduce, Shift,
    Sum, Tensor,
)
from . import printing  # noqa: E402,F401 - gives every node its printers (expr.PRINTERS) before any stage runs
from .matrices import SingularMatrixError  # noqa: E402
from .notation import parse  # noqa: E402
from .indices import free_indices, summed_indices  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .loops import Entries, evaluate_loops, evaluate_loops_at  # noqa: E402
from .diff import DiffError, diff  # noqa: E402
from .simplify import simplify  # noqa: E402
from .compile import Compiled, compile  # noqa: E402,A001
from . import export  # noqa: E402,F401 - gives Compiled.source its writer (compile.WRITERS)
from .model import Model  # noqa: E402
from .optimisers import SGD, Adam, Momentum  # noqa: E402
from .second_order import LBFGS, Newton  # noqa: E402
from .train import Trainer  # noqa: E402

__all__ = [
    "parse", "evaluate", "evaluate_loops", "evaluate_loops_at", "Entries", "diff", "simplify",
    "compile", "Compiled", "Model", "Trainer", "SGD", "Momentum", "Adam", "Newton", "LBFGS", "free_indices", "summed_indices",
    "IndexCalcError", "ArgumentError", "ParseError", "IndexNotationError", "ShapeError", "MissingArrayError", "DiffError",
    "InlineTooLargeError", "SingularMatrixError",
    "Expr", "Number", "Tensor", "Deriv", "Delta", "Mask", "Shift", "Compare", "Product", "Sum", "Power", "Call",
    "MatrixCall", "Reduce", "Equation", "Program",
]
