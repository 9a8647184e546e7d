"""`indexcalc train`: train a model file (default: the built-in Fizz Buzz).

Everything that can fail is checked before the first epoch: the numbers given (by
argparse), the model file, the data, the checkpoint's and the plot's paths and the plot's
dependency. A run that ends early (a non-finite loss, Ctrl-C) prints its scores, keeps
the last good parameters (in the checkpoint and the --save file, if written) and exits
non-zero.

`--backend` (or the file's `backend` line) trains on another array library. On jax the
command turns on JAX's float64 (x64) mode, which this process owns: a model trains in
float64 as it does on NumPy, and gives NumPy's numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from ..errors import IndexCalcError


def default_model() -> str:
    """The built-in model file that `train`, `check` and `export` take when given none:
    the Fizz Buzz network of the partial-derivatives note."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "fizzbuzz.ic")


def _command_train(args) -> str:
    from ..checkpoints import check_output_path
    from ..modelfile import load
    from ..saved import save
    from ..train import train_file
    from ..training_errors import TrainingStopped

    path = args.model or default_model()
    try:
        mf = load(path)
        if args.plot:
            plt = _matplotlib()
            check_output_path(args.plot, "the plot", replaceable=_is_image)
            _check_plot_format(plt, args.plot)
        if args.save:
            _check_save(args, path, mf)
        epochs = mf.epochs if args.epochs is None else args.epochs
        if (args.backend or mf.backend) == "jax":
            _jax_float64()
        bar = _Bar(epochs, args.quiet)

        def announce(data) -> None:
            print(f"training {os.path.basename(path)}: {_describe(mf, args)}", flush=True)
            print(f"  {data.describe()}", flush=True)

        result, _, _ = train_file(
            mf, epochs=args.epochs, lr=args.lr, seed=args.seed, batch_size=args.batch_size,
            checkpoint=args.checkpoint, resume=args.resume, progress=bar.update, prepared=announce,
            backend=args.backend, monitor=args.monitor, patience=args.patience,
        )
    except KeyboardInterrupt:
        raise TrainingStopped("interrupted before the first epoch ended; nothing was trained or written") from None
    bar.close()
    for warning in result.warnings:
        print(f"indexcalc: warning: {warning}", file=sys.stderr, flush=True)
    lines = []
    if result.history:
        last = result.history[-1]
        scores = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch")
        lines.append(f"after {result.epochs} epoch{'s' * (result.epochs != 1)} ({result.seconds:.2f} s): {scores}")
        if result.stopped == "early":
            lines.append(result.message)
        if result.best_epoch is not None:
            kept = result.history[result.best_epoch - 1]
            scores = ", ".join(f"{k} {v:.4g}" for k, v in kept.items() if k != "epoch")
            lines.append(f"kept epoch {result.best_epoch}, the best by {result.monitor}: {scores}")
    if args.checkpoint:
        lines.append(f"checkpoint: {args.checkpoint} (resume with --resume {args.checkpoint})")
    if args.save and result.stopped == "interrupted" and not result.history:
        lines.append(f"nothing saved to {args.save}: no epoch finished")
    elif args.save:
        save(mf.model, args.save, result.params, model_file=mf)  # predict without the file keeps its metric
        kept = (f"the parameters of epoch {result.best_epoch}" if result.best_epoch is not None
                else "the last good parameters" if result.stopped != "done" else "the trained parameters")
        lines.append(f"saved {kept}: {args.save} (indexcalc predict {path} --weights {args.save})")
    if result.stopped not in ("done", "early"):
        print("\n".join(lines), flush=True)
        raise TrainingStopped(result.message)
    if args.plot:
        print("\n".join(lines), flush=True)  # the scores stay on screen whatever the plot does
        return _plot(result.history, args.plot)
    return "\n".join(lines)


def _check_save(args, path: str, mf) -> None:
    """The weights file can be written, and is none of the run's other files."""
    from ..checkpoints import check_output_path, is_checkpoint
    from ..training_errors import TrainingError

    check_output_path(args.save, "the weights file", replaceable=is_checkpoint)
    others = [p for p in (path, args.checkpoint, args.resume, mf.dataset and os.path.join(mf.folder, mf.dataset)) if p]
    if any(os.path.abspath(args.save) == os.path.abspath(p) or
           (os.path.exists(args.save) and os.path.exists(p) and os.path.samefile(args.save, p)) for p in others):
        raise TrainingError(f"--save {args.save} would overwrite one of the run's own files "
                            f"(the model, its data set, or the checkpoint): choose another name")


def _describe(mf, args) -> str:
    sizes = sum(int(np.prod(p.shape)) for p in mf.model.parameters.values())
    name, settings = mf.optimizer
    settings = settings if args.lr is None else {**settings, "lr": args.lr}
    opts = " ".join(f"{k}={v:g}" for k, v in settings.items())
    seed = mf.seed if args.seed is None else args.seed
    batch = mf.batch_size if args.batch_size is None else args.batch_size
    backend = args.backend or mf.backend
    return (f"{len(mf.model.parameters)} parameter tensors ({sizes} numbers), data set {mf.dataset}, "
            f"{' '.join(filter(None, [name, opts]))}, batch {batch or 'all'}, seed {seed}" + (f", on {backend}" if backend != "numpy" else ""))


def _jax_float64() -> None:
    """JAX's x64 mode, before any jax array is made; without jax installed, nothing (the
    Trainer refuses the backend with the extra to install)."""
    try:
        import jax
    except ImportError:
        return
    jax.config.update("jax_enable_x64", True)


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


def _matplotlib():
    """pyplot on a file-only backend, or an error saying how to install it (asked before
    training, so that a missing plot dependency costs no run)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise IndexCalcError("--plot needs matplotlib, which is not installed: "
                             "pip install 'indexcalc[plot]' (or pip install matplotlib)") from None
    return plt


# The image formats --plot writes, by extension, with the first bytes of such a file:
# the plot may replace an image, never a model file or anything else at the path.
# (matplotlib's raw, rgba and pgf are left out: nothing marks a file as one of theirs.)
PLOT_FORMATS = {
    "png": (b"\x89PNG",), "pdf": (b"%PDF",), "svg": (b"<?xml", b"<svg"), "svgz": (b"\x1f\x8b",),
    "eps": (b"%!PS",), "ps": (b"%!PS",), "jpg": (b"\xff\xd8",), "jpeg": (b"\xff\xd8",), "gif": (b"GIF8",),
    "tif": (b"II*\x00", b"MM\x00*"), "tiff": (b"II*\x00", b"MM\x00*"), "webp": (b"RIFF",),
}


def _is_image(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return any(head.startswith(magic) for magics in PLOT_FORMATS.values() for magic in magics)


def _check_plot_format(plt, path: str) -> None:
    """The file name's format, before training: matplotlib picks it by the extension."""
    figure = plt.figure()
    formats = sorted(set(figure.canvas.get_supported_filetypes()) & set(PLOT_FORMATS))
    plt.close(figure)
    if os.path.splitext(path)[1].lstrip(".").lower() not in formats:
        raise IndexCalcError(f"--plot {path}: the plot is written as {', '.join(formats)}, chosen by the "
                             f"file name's extension (e.g. loss.png)")


def _plot(history: list[dict], path: str) -> str:
    plt = _matplotlib()
    epochs = [r["epoch"] for r in history]
    figure, axes = plt.subplots(figsize=(6, 4))
    for key in [k for k in history[0] if k.endswith("loss")] if history else []:
        axes.plot(epochs, [r[key] for r in history], label=key)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except Exception as err:  # noqa: BLE001 - matplotlib's writers raise their own kinds; the run is over
        raise IndexCalcError(f"could not draw the plot into {path}: {err}; the scores above are final") from None
    finally:
        plt.close(figure)
    return f"loss curves: {path}"


def _whole(least: int):
    """An argparse type: a whole number of at least `least` (one line if not)."""
    def parse(text: str) -> int:
        if not text.strip().isascii() or not text.strip().isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"must be a whole number, {least} or more, got {text!r}")
        return int(text)

    return parse


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def register(sub) -> None:
    """The `train` command's parser, on the `indexcalc` command's subparsers."""
    tr = sub.add_parser(
        "train", help="train a model file (default: the built-in Fizz Buzz)",
        description="Train a model file. A non-finite loss or Ctrl-C stops the run with the last good "
        "parameters (written to --checkpoint, if given) and a non-zero exit.",
    )
    tr.add_argument("model", nargs="?", help="a model file (.ic); see examples/")
    tr.add_argument("--epochs", type=_whole(1), help="epochs in all, counting a resumed checkpoint's (default: the file's)")
    tr.add_argument("--lr", type=_learning_rate, help="learning rate, a positive number (default: the file's)")
    tr.add_argument("--seed", type=_whole(0), help="seed of initialisation and shuffling (default: the file's)")
    tr.add_argument("--batch-size", type=_whole(1), help="mini-batch size (default: the file's)")
    tr.add_argument("--checkpoint", help="write the state to this .npz after every epoch (atomically)")
    tr.add_argument("--resume", help="continue from a checkpoint of the same model file")
    tr.add_argument("--save", metavar="WEIGHTS", help="write the trained parameters and the model to this .npz "
                    "(the last good ones, if the run stops early); see indexcalc predict")
    tr.add_argument("--plot", help="draw the loss curves into this .png (needs matplotlib)")
    tr.add_argument("--backend", help="the array library to train on: numpy, jax, torch, dask or cupy "
                    "(default: the file's backend line, else numpy)")
    tr.add_argument("--monitor", help="keep the epoch best by this score (loss, val_loss, test_accuracy, ...; "
                    "default: the file's monitor line)")
    tr.add_argument("--patience", type=_whole(1), help="stop when the monitor has not improved for this many "
                    "epochs (default: the file's; without a monitor, val_loss or loss)")
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    tr.set_defaults(run=_command_train)
