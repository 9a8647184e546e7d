"""`indexcalc train`: train a model file (default: the built-in Fizz Buzz)."""

from __future__ import annotations

import os

import numpy as np


def _default_model() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "fizzbuzz.ic")


def _command_train(args) -> str:
    from ..modelfile import load
    from ..train import train_file

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


def register(sub) -> None:
    """The `train` command's parser, on the `indexcalc` command's subparsers."""
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
