"""The `indexcalc` command: show a formula in every notation, evaluate it, run the demo.

    indexcalc demo                        the built-in example, end to end
    indexcalc show "y_i = w_ij x_j"       canonical form, Unicode, LaTeX, einsum specs
    indexcalc show model.ic               the same for a file of equations
    indexcalc eval "y_i = w_ij x_j" --size i=2 j=3 [--npz arrays.npz] [--seed 0]
    indexcalc diff "PROGRAM" --wrt w_gh [--raw] [--inline] [--latex] [--of NAME]

argparse (standard library) is enough for four subcommands; a dependency would not earn
its place here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

from .errors import IndexCalcError
from .diff import diff
from .evaluate import evaluate
from .expr import Equation, Expr, Program, Tensor
from .indices import free_indices, infer_sizes
from .loops import evaluate_loops
from .notation import parse
from .simplify import simplify

DEMO = """\
# The index-notation note: one sigmoid layer and its squared loss.
yhat_i = σ(w_ij x_j + b_i)
loss = (yhat_j - y_j)(yhat_j - y_j)
"""
DEMO_SIZES = {"i": 3, "j": 4}


def read_source(text_or_path: str) -> str:
    """A file's equations if the argument names a file (a model file's declaration lines
    left out), else the argument itself."""
    from .modelfile import split_declarations

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


def _default_model() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", "fizzbuzz.ic")


def _command_train(args) -> str:
    from .modelfile import load
    from .train import train_file

    path = args.model or _default_model()
    mf = load(path)
    epochs = args.epochs or mf.epochs
    print(f"training {os.path.basename(path)}: {_describe(mf, args)}", flush=True)
    bar = _Bar(epochs, args.quiet)
    result, train, test = train_file(
        mf, epochs=args.epochs, lr=args.lr, seed=args.seed, batch_size=args.batch_size,
        checkpoint=args.checkpoint, resume=args.resume, progress=bar.update,
    )
    bar.close()
    lines = [result.message] if result.message else []
    if result.history:
        last = result.history[-1]
        scores = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch")
        lines.append(f"after {result.epochs} epochs ({result.seconds:.2f} s): {scores}")
    if args.checkpoint:
        lines.append(f"checkpoint: {args.checkpoint} (resume with --resume {args.checkpoint})")
    if args.plot:
        lines.append(_plot(result.history, args.plot))
    return "\n".join(lines)


def _describe(mf, args) -> str:
    sizes = sum(int(np.prod(p.shape)) for p in mf.model.parameters.values())
    name, settings = mf.optimizer
    settings = settings if args.lr is None else {**settings, "lr": args.lr}
    opts = " ".join(f"{k}={v:g}" for k, v in settings.items())
    seed = mf.seed if args.seed is None else args.seed
    return (f"{len(mf.model.parameters)} parameter tensors ({sizes} numbers), data set {mf.dataset}, "
            f"{name} {opts}, batch {args.batch_size or mf.batch_size or 'all'}, seed {seed}")


class _Bar:
    """A progress bar by tqdm when it is installed; else a line every tenth of the run."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.tqdm = total, quiet, None
        if not quiet:
            try:
                from tqdm import tqdm

                self.tqdm = tqdm(total=total, unit="epoch", leave=False)
            except ImportError:
                pass

    def update(self, epoch: int, record: dict) -> None:
        scores = {k: f"{v:.4g}" for k, v in record.items() if k != "epoch"}
        if self.tqdm is not None:
            self.tqdm.update(epoch - self.tqdm.n)
            self.tqdm.set_postfix(scores, refresh=False)
        elif not self.quiet and (epoch % max(1, self.total // 10) == 0 or epoch == self.total):
            print(f"  epoch {epoch:>5}: " + ", ".join(f"{k} {v}" for k, v in scores.items()), flush=True)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def _plot(history: list[dict], path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "--plot needs matplotlib: pip install 'indexcalc[plot]' (or pip install matplotlib)"
    epochs = [r["epoch"] for r in history]
    figure, axes = plt.subplots(figsize=(6, 4))
    for key in [k for k in history[0] if k.endswith("loss")] if history else []:
        axes.plot(epochs, [r[key] for r in history], label=key)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return f"loss curves: {path}"


def _command_check(args) -> str:
    from .modelfile import load
    from .datasets import load as load_data
    from .loops import evaluate_loops

    mf = load(args.model)
    train, _ = load_data(mf.dataset, list(mf.model.data), mf.seed, mf.folder) if mf.dataset else ({}, {})
    if not train:
        raise IndexCalcError(f"{args.model} declares no dataset to check on")
    batch = {k: np.asarray(v)[: args.batch] for k, v in train.items()}
    params = mf.model.init_params(mf.seed)
    value, grads = mf.model.loss_and_grads(params, batch)
    rows = [f"checked on {len(next(iter(batch.values())))} samples; largest absolute differences:",
            f"  {'parameter':<12}{'loops':>12}{'finite diff':>14}"]
    for name, g in grads.items():
        by_loops = evaluate_loops(diff(mf.model.program, name, of=mf.model.loss), {**batch, **params})
        numeric = _finite_difference(mf.model, params, batch, name)
        rows.append(f"  {name:<12}{np.max(np.abs(g - by_loops)):>12.2e}{np.max(np.abs(g - numeric)):>14.2e}")
    return "\n".join(rows)


def _finite_difference(model, params, batch, name, eps=1e-6):
    out = np.zeros_like(params[name], dtype=float)
    for index in np.ndindex(*np.shape(params[name])):
        values = []
        for sign in (1, -1):
            moved = {**params, name: np.array(params[name], dtype=float)}
            moved[name][index] += sign * eps
            values.append(model.loss_and_grads(moved, batch)[0])
        out[index] = (values[0] - values[1]) / (2 * eps)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indexcalc",
        description="Tensor calculus in Einstein index notation.",
        epilog="Notation: w_ij x_j sums j; sigma(...) acts elementwise; sum_j(...), mean_n(...), "
        "delta_ij, loss_{,(gh)}[w]. One equation per line, '#' comments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    tr = sub.add_parser("train", help="train a model file (default: the built-in Fizz Buzz)")
    tr.add_argument("model", nargs="?", help="a model file (.ic); see examples/")
    tr.add_argument("--epochs", type=int, help="epochs in all (default: the file's)")
    tr.add_argument("--lr", type=float, help="learning rate (default: the file's)")
    tr.add_argument("--seed", type=int, help="seed of initialisation and shuffling (default: the file's)")
    tr.add_argument("--batch-size", type=int, help="mini-batch size (default: the file's)")
    tr.add_argument("--checkpoint", help="write the state to this .npz after every epoch (atomically)")
    tr.add_argument("--resume", help="continue from a checkpoint")
    tr.add_argument("--plot", help="draw the loss curves into this .png (needs matplotlib)")
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    tr.set_defaults(run=_command_train)
    ck = sub.add_parser("check", help="compare a model's compiled gradients with explicit loops and finite differences")
    ck.add_argument("model", help="a model file (.ic)")
    ck.add_argument("--batch", type=int, default=3, help="samples to check on (default 3)")
    ck.set_defaults(run=_command_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        print(args.run(args))
    except IndexCalcError as err:
        print(f"indexcalc: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
