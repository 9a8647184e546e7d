"""The formula commands: `demo`, `show`, `eval` and `diff`.

    indexcalc demo                        the built-in example, end to end
    indexcalc show "y_i = w_ij x_j"       canonical form, Unicode, LaTeX, einsum specs
    indexcalc show model.ic               the same for a file of equations
    indexcalc eval "y_i = w_ij x_j" --size i=2 j=3 [--npz arrays.npz] [--seed 0]
    indexcalc diff "PROGRAM" --wrt w_gh [--raw] [--inline] [--latex] [--of NAME]
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import IndexCalcError
from ..diff import diff
from ..evaluate import evaluate
from ..expr import Equation, Expr, Program, Tensor
from ..indices import free_indices, infer_sizes
from ..loops import evaluate_loops
from ..notation import parse
from ..simplify import simplify


DEMO = """\
# The index-notation note: one sigmoid layer and its squared loss.
yhat_i = σ(w_ij x_j + b_i)
loss = (yhat_j - y_j)(yhat_j - y_j)
"""
DEMO_SIZES = {"i": 3, "j": 4}


def read_source(text_or_path: str) -> str:
    """A file's equations if the argument names a file (a model file's declaration lines
    left out), else the argument itself."""
    from ..modelfile import split_declarations

    if os.path.isfile(text_or_path):
        try:
            with open(text_or_path, encoding="utf-8") as handle:
                return split_declarations(handle.read())[0]
        except (OSError, UnicodeDecodeError) as err:
            raise IndexCalcError(f"cannot read {text_or_path}: {err}") from None
    return text_or_path


def random_arrays(node: Expr, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Normal random arrays for every tensor a program reads but does not define.

    Index letters are local to an equation, so a tensor's shape is taken first from the
    arrays already shaped in that equation (an earlier result, another input), and only
    then from `sizes`, which maps index letters to sizes.
    """
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {}
    arrays: dict[str, np.ndarray] = {}
    equations = node.equations if isinstance(node, Program) else (node,)
    for eq in equations:
        rhs = eq.rhs if isinstance(eq, Equation) else eq
        for tensor in (t for t in rhs.walk() if isinstance(t, Tensor)):
            if tensor.key in shapes:
                continue
            known = infer_sizes(rhs, shapes)
            missing = [i for i in tensor.all_indices if i not in known and i not in sizes]
            if missing:
                raise IndexCalcError(
                    f"give a size for index {', '.join(missing)} of {tensor} (e.g. --size {missing[0]}=3)"
                )
            shape = tuple(known.get(i, sizes.get(i)) for i in tensor.all_indices)
            shapes[tensor.key] = shape
            arrays[tensor.key] = rng.normal(size=shape)
        if isinstance(eq, Equation):
            known = infer_sizes(rhs, shapes)
            shapes[eq.lhs.key] = tuple(known[i] for i in eq.lhs.all_indices)
    return arrays


def show(node: Expr) -> str:
    specs = node.einsum() or "(no contraction)"
    return (
        f"canonical:\n{_indent(str(node))}\n"
        f"unicode:\n{_indent(node.pretty())}\n"
        f"latex:\n{_indent(node.latex())}\n"
        f"einsum:\n{_indent(specs)}"
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _result_name(node: Expr) -> str:
    last = node.equations[-1] if isinstance(node, Program) else node
    if isinstance(last, Equation):
        return str(last.lhs)
    free = free_indices(last)
    return "value" + (f" (axes {''.join(free)})" if free else "")


def evaluate_report(node: Expr, arrays: dict[str, np.ndarray]) -> str:
    by_einsum = evaluate(node, arrays)
    by_loops = evaluate_loops(node, arrays)
    agree = np.allclose(by_einsum, by_loops, rtol=1e-10, atol=1e-12)
    with np.printoptions(precision=6, suppress=True):
        lines = [f"{_result_name(node)} =", _indent(str(np.asarray(by_einsum)))]
    lines.append(
        f"explicit loops agree: {'yes' if agree else 'NO'} "
        f"(largest difference {np.max(np.abs(np.asarray(by_einsum) - by_loops), initial=0.0):.1e})"
    )
    return "\n".join(lines)


def _parse_sizes(pairs: Sequence[str]) -> dict[str, int]:
    sizes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise IndexCalcError(f"--size takes INDEX=N with N a positive whole number, got {pair!r}")
        sizes[name] = int(value)
    return sizes


def _command_demo(args) -> str:
    node = parse(DEMO)
    arrays = random_arrays(node, DEMO_SIZES, seed=args.seed)
    sizes = ", ".join(f"{i}={n}" for i, n in DEMO_SIZES.items())
    return (
        f"{DEMO}\n{show(node)}\n\n"
        f"evaluated on random arrays ({sizes}, seed {args.seed}):\n{evaluate_report(node, arrays)}"
    )


def _command_show(args) -> str:
    return show(parse(read_source(args.source)))


def _command_eval(args) -> str:
    node = parse(read_source(args.source))
    arrays = random_arrays(node, _parse_sizes(args.size), seed=args.seed) if args.size else {}
    if args.npz:
        try:
            with np.load(args.npz) as data:
                arrays.update({k: data[k] for k in data.files})
        except (OSError, ValueError) as err:
            raise IndexCalcError(f"cannot read arrays from {args.npz}: {err}") from None
    return evaluate_report(node, arrays)


def _command_diff(args) -> str:
    node = parse(read_source(args.source))
    result = diff(node, args.wrt, of=args.of, inline=args.inline)
    if not args.raw:
        result = simplify(result)
    lines = result.equations if isinstance(result, Program) else (result,)
    shown = [eq for eq in lines if eq.lhs.derivs or args.all]
    if args.latex:
        return "\n".join(eq.latex() for eq in shown)
    return "\n".join(eq.pretty() if args.unicode else str(eq) for eq in shown)


def register(sub) -> None:
    """The formula commands' parsers, on the `indexcalc` command's subparsers."""
    demo = sub.add_parser("demo", help="parse, print and evaluate the built-in example")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random arrays (default 0)")
    demo.set_defaults(run=_command_demo)
    show_cmd = sub.add_parser("show", help="print a formula in plain, Unicode and LaTeX notation with its einsum specs")
    show_cmd.add_argument("source", help="the notation, or a file holding it")
    show_cmd.set_defaults(run=_command_show)
    ev = sub.add_parser("eval", help="evaluate a formula by einsum and by explicit loops")
    ev.add_argument("source", help="the notation, or a file holding it")
    ev.add_argument("--size", nargs="*", default=[], metavar="INDEX=N", help="random normal arrays with these index sizes")
    ev.add_argument("--npz", help="a .npz file of named arrays (overrides random ones)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the random arrays (default 0)")
    ev.set_defaults(run=_command_eval)
    df = sub.add_parser("diff", help="differentiate a formula or program in comma notation")
    df.add_argument("source", help="the notation, or a file holding it")
    df.add_argument("--wrt", required=True, help="the tensor to differentiate by, with fresh indices (w_gh) or bare (b)")
    df.add_argument("--of", help="the equation to differentiate (default: the last)")
    df.add_argument("--raw", action="store_true", help="the derivative as derived, with its δ tensors, not simplified")
    df.add_argument("--inline", action="store_true", help="one formula: named derivatives of intermediates substituted, simplified")
    df.add_argument("--latex", action="store_true", help="print LaTeX")
    df.add_argument("--unicode", action="store_true", help="print σ, δ, ŷ")
    df.add_argument("--all", action="store_true", help="also print the forward equations the derivative refers to")
    df.set_defaults(run=_command_diff)
