"""The formula commands: `demo`, `show`, `eval` and `diff`.

    indexcalc demo                        the built-in example, end to end
    indexcalc show "y_i = w_ij x_j"       canonical form, Unicode, LaTeX, einsum specs
    indexcalc show model.ic               the same for a file of equations
    indexcalc eval "y_i = w_ij x_j" --size i=2 j=3 [--npz arrays.npz] [--seed 0] [--entries N] [--no-loops]
    indexcalc diff "PROGRAM" --wrt w_gh [--wrt w_kl] [--of NAME] [--raw] [--inline] [--latex] [--unicode] [--all]

Every failure is an IndexCalcError, which the `indexcalc` command prints in one line.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import unicodedata
from typing import Sequence

import numpy as np

from ..datasets import human_size, read_npz
from ..errors import IndexCalcError
from ..diff import diff
from ..evaluate import evaluate
from .. import shifts
from ..expr import Equation, Expr, Shift, Tensor
from ..indices import free_indices, infer_sizes
from ..loops import evaluate_loops, evaluate_loops_at
from ..notation import parse, written_letters
from ..tokens import is_index_name, is_letter_index
from ..printing import STYLES, plain, quoted
from ..simplify import simplify
from .check import entry_count, progress_bars


DEMO = """\
# The index-notation note: one sigmoid layer and its squared loss.
yhat_i = σ(w_ij x_j + b_i)
loss = (yhat_j - y_j)(yhat_j - y_j)
"""
DEMO_SIZES = {"i": 3, "j": 4}
DEMO_WRT = "w_gh"


MAX_SOURCE_BYTES = 10_000_000  # a file of equations larger than this is not one


def read_source(text_or_path: str) -> str:
    """A file's equations if the argument names a file (a model file's declaration lines
    left out), else the argument itself. An argument that looks like a path but names no
    file is refused as such, not parsed as notation."""
    from ..modelfile import split_declarations

    path = text_or_path
    if os.path.isfile(path):
        try:
            if os.path.getsize(path) > MAX_SOURCE_BYTES:
                raise IndexCalcError(f"{path} is larger than {human_size(MAX_SOURCE_BYTES)}: not a file of equations")
            with open(path, encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not notation
                return split_declarations(handle.read())[0]
        except (OSError, UnicodeDecodeError) as err:
            raise IndexCalcError(f"cannot read {path}: {err}") from None
    looks_like_a_path = path.endswith(".ic") or os.sep in path and os.path.exists(path)
    if looks_like_a_path and "\n" not in path:
        what = "is a folder, not a file" if os.path.isdir(path) else "is not a file"
        raise IndexCalcError(f"{path} {what} (give a file of equations, or the notation itself in quotes)")
    return text_or_path


MAX_SIZE = 10**15  # of one index: beyond any array
MAX_RANDOM_NUMBERS = 125_000_000  # float64 numbers: 1 GB; beyond it eval refuses at once


def random_arrays(
    node: Expr, sizes: dict[str, int], seed: int = 0, given: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Normal random arrays for every tensor a program reads but neither defines nor finds
    in `given`.

    Index letters are local to an equation, so a tensor's shape is taken first from the
    arrays already shaped in that equation (an earlier result, a given array, through δ
    and relabelling ties too), and only then from `sizes`, which maps index letters to
    sizes, which must then agree with every use of the array (`x_i x_j` with i=3, j=2 is
    refused). Each equation is looked at three times, whatever its length: set-up is linear.
    Arrays are sized before any is made, so that a request too large fails at once.
    """
    shapes = {key: np.shape(value) for key, value in (given or {}).items()}
    defined = {eq.lhs.name for eq in node.lines if isinstance(eq, Equation)}
    wanted: dict[str, tuple[Tensor, tuple[int, ...]]] = {}
    for eq in node.lines:
        rhs, fixed = (eq.rhs, frozenset(eq.lhs.all_indices)) if isinstance(eq, Equation) else (eq, frozenset())
        known = infer_sizes(rhs, shapes, fixed)
        letters = {i for t in eq.walk() for i in getattr(t, "all_indices", ())}
        preset = {i: (sizes[i], f"--size {i}={sizes[i]}") for i in letters if i in sizes and i not in known}
        known = infer_sizes(rhs, shapes, fixed, preset)
        extents = _shifted_extents(rhs, known)
        if extents:
            preset.update(extents)
            known = infer_sizes(rhs, shapes, fixed, preset)
        for tensor in _inputs(rhs, shapes, defined):
            missing = [i for i in tensor.all_indices if i not in known]
            hidden = next((n for n in rhs.walk() if isinstance(n, Shift) and n.index in missing), None)
            if hidden is not None:
                letters = [letter for _, letter in hidden.terms if letter not in known]
                raise IndexCalcError(
                    f"give a size for index {', '.join(letters)} of the shifted index in {quoted(hidden)} "
                    f"(e.g. --size {letters[0]}=3), or the array of {tensor.name} with --npz"
                )
            if missing:
                raise IndexCalcError(
                    f"give a size for index {', '.join(missing)} of {quoted(tensor)} "
                    f"(e.g. --size {missing[0]}=3), or its array with --npz"
                )
            shapes[tensor.key] = tuple(known[i] for i in tensor.all_indices)
            wanted[tensor.key] = (tensor, shapes[tensor.key])
        infer_sizes(rhs, shapes, fixed, preset)  # x_i x_j with i=3 j=2: one array, two sizes
        if isinstance(eq, Equation):
            missing = [i for i in eq.lhs.all_indices if i not in known]
            if missing:
                raise IndexCalcError(f"give a size for index {', '.join(missing)} of {quoted(eq.lhs)} (e.g. --size {missing[0]}=3)")
            shapes[eq.lhs.key] = tuple(known[i] for i in eq.lhs.all_indices)
            wanted[eq.lhs.key] = (eq.lhs, shapes[eq.lhs.key])  # sized, not made: evaluation makes it
    _refuse_huge(wanted.values())
    rng = np.random.default_rng(seed)
    return {key: rng.normal(size=shape) for key, (tensor, shape) in wanted.items() if tensor.name not in defined}


def _shifted_extents(rhs: Expr, known: dict[str, int]) -> dict[str, tuple[int, str]]:
    """A random array read at a shifted index, `x_{nd(i+k)}` with i and k sized: its axis
    as long as the farthest position the form reaches (x_ndp's p, which the text does not
    show), so every i is a valid position."""
    out = {}
    for shift in (n for n in rhs.walk() if isinstance(n, Shift)):
        if shift.index not in known and all(letter in known for _, letter in shift.terms):
            extent = max(1, shifts.largest(shift.terms, known) + shift.offset + 1)
            out[shift.index] = (extent, f"the farthest position of {shift}")
    return out


def _inputs(rhs: Expr, shapes: dict, defined: set[str]):
    """The tensors of `rhs` not shaped yet, each once: neither given, nor made earlier,
    nor a derivative of a defined name (evaluation works that out)."""
    seen = set(shapes)
    for tensor in rhs.walk():
        if isinstance(tensor, Tensor) and tensor.key not in seen and not (tensor.derivs and tensor.name in defined):
            seen.add(tensor.key)
            yield tensor


def _refuse_huge(arrays) -> None:
    """Refuse, naming the array, a request that could not fit in memory."""
    total = 0
    for tensor, shape in arrays:
        numbers = math.prod(shape)
        total += numbers
        if total > MAX_RANDOM_NUMBERS:
            what = f"the array of {quoted(tensor)} would have shape {shape}, {_amount(numbers)}"
            if numbers <= MAX_RANDOM_NUMBERS:
                what += f", bringing the arrays of eval to {_amount(total)}"
            raise IndexCalcError(
                f"{what}: more than eval's limit of {human_size(8 * MAX_RANDOM_NUMBERS)}; give smaller sizes"
            )


def _amount(numbers: int) -> str:
    if numbers >= 10**18:  # past what a float (and human_size) writes plainly
        return f"about 10^{len(str(numbers)) - 1} numbers"
    return f"{numbers:,} numbers ({human_size(8 * numbers)})"


def show(node: Expr, style: str = "default") -> str:
    """Every printed form of a checked formula: what it parses to, how it reads (in
    `style`), what einsum computes for it (in the left-hand side's axis order)."""
    specs = node.einsum() or "(no contraction)"
    return (
        f"canonical:\n{_indent(str(node))}\n"
        f"unicode:\n{_indent(node.pretty(style=style))}\n"
        f"latex:\n{_indent(node.latex(style=style))}\n"
        f"einsum:\n{_indent(specs)}"
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _result_name(node: Expr) -> str:
    last = node.lines[-1]
    if isinstance(last, Equation):
        return quoted(last.lhs)
    free = free_indices(last)
    return "value" + (f" (axes {_axes(free)})" if free else "")


def _axes(indices) -> str:
    """`ij`, or `batch out` where a name is among them: as they are written."""
    return "".join(indices) if all(is_letter_index(i) for i in indices) else " ".join(indices)


def evaluate_report(
    node: Expr, arrays: dict[str, np.ndarray], loops: bool = True, entries: int | None = None, seed: int = 0
) -> str:
    """The value by einsum, and whether the explicit loops agree: on every entry, on
    `entries` random ones (drawn with `seed`), or not run (`loops` false)."""
    by_einsum = np.asarray(evaluate(node, arrays))
    with np.printoptions(precision=6, suppress=True):
        lines = [f"{_result_name(node)} =", _indent(str(by_einsum))]
    progress = progress_bars("explicit loops")
    if not loops:
        lines.append("explicit loops: not run (--no-loops)")
    elif entries is None:
        lines.append(_agreement("explicit loops agree", by_einsum, evaluate_loops(node, arrays, progress=progress)))
    else:
        sample = evaluate_loops_at(node, arrays, entries, seed=seed, progress=progress)
        lines.append(_agreement(
            f"explicit loops at {len(sample.values):,} random entries of {sample.total:,} (seed {seed}) agree",
            by_einsum[tuple(sample.positions.T)], sample.values,
        ))
    return "\n".join(lines)


def _agreement(what: str, by_einsum: np.ndarray, by_loops: np.ndarray) -> str:
    """Agreement entry by entry; a nan or an infinity agrees with the same one (`(-2)^a` is
    nan by both at a random a), and the count of such entries is said, not hidden in a nan
    largest difference."""
    by_einsum, by_loops = np.asarray(by_einsum), np.asarray(by_loops)
    agree = np.allclose(by_einsum, by_loops, rtol=1e-10, atol=1e-12, equal_nan=True)
    finite = np.isfinite(by_einsum) & np.isfinite(by_loops)
    with np.errstate(invalid="ignore"):  # inf - inf, masked out below
        largest = np.max(np.abs(by_einsum - by_loops), where=finite, initial=0.0)
    report = f"{what}: {'yes' if agree else 'NO'} (largest difference {largest:.1e}"
    not_finite = by_einsum.size - int(np.count_nonzero(finite))
    if not_finite:
        report += f"; not finite at {not_finite:,} of {by_einsum.size:,} entries"
    return report + ")"


_SIZE = re.compile(r"(?P<index>\w+)=(?P<base>[0-9]{1,30})(?:(?P<op>\^|\*\*|e)(?P<power>[0-9]{1,3}))?")


def parse_sizes(pairs: Sequence[str]) -> dict[str, int]:
    """`i=3 j=10^4 k=1e6` as {index: size}; an index given twice or a size below 1 is refused."""
    sizes: dict[str, int] = {}
    for pair in pairs:
        m = _SIZE.fullmatch(unicodedata.normalize("NFC", pair.strip()))
        index = m["index"] if m else ""
        if not (is_letter_index(index) or is_index_name(index)):
            raise IndexCalcError(
                f"--size takes INDEX=N: an index (one letter, optionally digits 0-9, or a name such as "
                f"batch) and a positive "
                f"whole number (3, 10^6 or 1e6, digits 0-9), got {pair!r}"
            )
        base, power = int(m["base"]), int(m["power"] or 0)
        size = base * 10**power if m["op"] == "e" else base**power if m["op"] else base
        if not 1 <= size <= MAX_SIZE:
            raise IndexCalcError(f"--size {pair}: a size is at least 1 and at most 10^15")
        if index in sizes:
            raise IndexCalcError(f"--size gives index {index} twice")
        sizes[index] = size
    return sizes


def _command_demo(args) -> str:
    node = parse(DEMO)
    arrays = random_arrays(node, DEMO_SIZES, seed=args.seed)
    sizes = ", ".join(f"{i}={n}" for i, n in DEMO_SIZES.items())
    derivative = simplify(diff(node, DEMO_WRT))
    inline = diff(node, DEMO_WRT, inline=True)
    return (
        f"{DEMO}\n{show(node)}\n\n"
        f"evaluated on random arrays ({sizes}, seed {args.seed}):\n{evaluate_report(node, arrays)}\n\n"
        f"the derivative by {DEMO_WRT} (indexcalc diff --wrt {DEMO_WRT}), through the program:\n"
        f"{_indent(_derivative_lines(derivative, unicode=True))}\n"
        f"and in one formula (--inline):\n{_indent(_derivative_lines(inline, unicode=True))}"
    )


def _command_show(args) -> str:
    return show(parse(read_source(args.source)), args.style)


def _command_eval(args) -> str:
    source = read_source(args.source)
    node = parse(source)
    sizes = _held_sizes(parse_sizes(args.size), written_letters(source))
    letters = {i for t in node.walk() for i in getattr(t, "all_indices", ())}
    unused = [i for i in sizes if i not in letters]
    if unused:
        raise IndexCalcError(
            f"--size gives index {', '.join(unused)}, which the formula does not use "
            f"(its indices: {', '.join(sorted(letters)) or 'none'})"
        )
    given = read_npz(args.npz, "the arrays file") if args.npz else {}
    arrays = {**random_arrays(node, sizes, seed=args.seed, given=given), **given}
    return evaluate_report(node, arrays, loops=args.loops, entries=args.entries, seed=args.seed)


def _held_sizes(sizes: dict[str, int], written: dict[str, set[str]]) -> dict[str, int]:
    """Sizes by the letters the text writes, given to the letters it is held under too
    (`inv_ij(A_kl)` is held as `inv_ij(A_ij)`: --size k=3 sizes i), so a user sizes what
    they wrote; letters the text does not write are left for the caller to refuse."""
    held = {i: n for i, n in sizes.items() if i not in written}
    for letter, size in sizes.items():
        for target in written.get(letter, ()):
            if held.setdefault(target, size) != size:
                raise IndexCalcError(
                    f"--size gives {letter}={size}, but {letter} is held as {target} (a matrix function names its "
                    f"pair by its subscript: inv_ij(A_kl) reads A_ij), whose size is {held[target]}"
                )
    return held


def _command_diff(args) -> str:
    node = parse(read_source(args.source))
    result = diff(node, args.wrt[0], of=args.of, inline=args.inline)
    for wrt in args.wrt[1:]:  # the Hessian and beyond: differentiate the derivative again
        result = diff(result, wrt, inline=args.inline)
    if not args.raw:
        result = simplify(result)
    order = len(args.wrt) if args.inline else 1  # inlined, the Hessian refers to no lower derivative
    if args.latex:
        return "\n".join(eq.latex(style=args.style) for eq in _shown(result, args.all, order))
    return _derivative_lines(result, args.unicode, args.all, order, args.style)


def _shown(result: Expr, everything: bool = False, order: int = 1) -> list[Expr]:
    """The lines of derivatives of at least `order` (all lines with `everything`)."""
    lines = result.lines
    return [eq for eq in lines if everything or not isinstance(eq, Equation) or len(eq.lhs.derivs) >= order]


def _derivative_lines(
    result: Expr, unicode: bool = False, everything: bool = False, order: int = 1, style: str = "default"
) -> str:
    """The derivative lines of what `diff` returned (all lines with `everything`)."""
    return "\n".join(plain(eq, unicode, style) for eq in _shown(result, everything, order))


def seed_value(text: str) -> int:
    """A --seed: a whole number from 0 (what NumPy's generators take)."""
    if not re.fullmatch(r"[0-9]{1,30}", text.strip()):
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0, written with 0-9; got {text!r}")
    return int(text)


def register(sub) -> None:
    """The formula commands' parsers, on the `indexcalc` command's subparsers."""
    demo = sub.add_parser("demo", help="parse, print and evaluate the built-in example")
    demo.add_argument("--seed", type=seed_value, default=0, help="seed of the random arrays (default 0)")
    demo.set_defaults(run=_command_demo)
    show_cmd = sub.add_parser("show", help="print a formula in plain, Unicode and LaTeX notation with its einsum specs")
    show_cmd.add_argument("source", help="the notation, or a file holding it")
    _style_option(show_cmd)
    show_cmd.set_defaults(run=_command_show)
    ev = sub.add_parser("eval", help="evaluate a formula by einsum and check it by explicit loops")
    ev.add_argument("source", help="the notation, or a file holding it")
    ev.add_argument("--size", nargs="*", default=[], metavar="INDEX=N",
                    help="sizes of the indices, as written: letters or named indices (batch=32), a matrix pair's own letters "
                         "(N: 3, 10^4 or 1e4), for random normal arrays of the tensors not in --npz")
    ev.add_argument("--npz", help="a .npz file of named arrays (np.savez); tensors not in it get random ones")
    ev.add_argument("--seed", type=seed_value, default=0, help="seed of the random arrays (default 0)")
    ev.add_argument("--entries", type=entry_count, default=None, metavar="N",
                    help="compare N random entries with the explicit loops, or 'all' (default: all)")
    ev.add_argument("--no-loops", dest="loops", action="store_false", help="skip the explicit-loop reference")
    ev.set_defaults(run=_command_eval)
    df = sub.add_parser("diff", help="differentiate a formula or program in comma notation")
    df.add_argument("source", help="the notation, or a file holding it")
    df.add_argument("--wrt", required=True, action="append", metavar="TENSOR",
                    help="the tensor to differentiate by, with fresh indices (w_gh) or bare (b); "
                    "given again, differentiate again (--wrt w_gh --wrt w_kl: the Hessian)")
    df.add_argument("--of", metavar="NAME", help="the equation to differentiate, by its left-hand side's name (default: the last)")
    df.add_argument("--raw", action="store_true", help="the derivative as derived, with its δ tensors, not simplified")
    df.add_argument("--inline", action="store_true", help="one formula: named derivatives of intermediates substituted, simplified")
    df.add_argument("--latex", action="store_true", help="print LaTeX")
    df.add_argument("--unicode", action="store_true", help="print σ, δ, ŷ")
    df.add_argument("--all", action="store_true", help="also print the forward equations the derivative refers to")
    _style_option(df)
    df.set_defaults(run=_command_diff)


def _style_option(parser) -> None:
    parser.add_argument(
        "--style", choices=STYLES, default="default",
        help="notes: write σ'(u_i) δ_im as the notes' Jacobian σ_{i,m}(u) (default: as derived)",
    )
