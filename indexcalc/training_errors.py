"""The errors of training and the `Result` a run ends with (which an error that stops a
run carries), in a module of their own so that the optimisers, the checkpoints and the
loop can all raise and return them without importing one another in a circle.

`is_whole`, `file_path` and `require_named_arrays` live here too: the loop's settings, a checkpoint's
epoch, the paths and the arrays handed to fit, predict and save are checked the same way everywhere."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .errors import IndexCalcError


@dataclass
class Result:
    """What a run ended with: its parameters and per-epoch scores, and how and why it
    stopped, so that a caller can report a run cut short rather than mistake it for done."""

    params: dict[str, np.ndarray]  # the backend's arrays, for a run on one
    history: list[dict[str, float]]
    epochs: int
    stopped: str  # "done", "early" (patience ran out), "nan", "interrupted", "progress" (it raised)
    message: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    monitor: str | None = None  # the score that chose the best epoch
    best_epoch: int | None = None  # the epoch whose parameters `params` are (with keep_best)


class TrainingError(IndexCalcError):
    """Training could not go on (a non-finite loss, a checkpoint that does not fit).

    `about` names the model-file declaration it concerns ("param W1", "optimizer"), so
    that a model file can point at the line."""

    def __init__(self, message: str, *, text: str | None = None, pos: int | None = None,
                 about: str | None = None):
        super().__init__(message, text=text, pos=pos)
        self.about = about


class TrainingStopped(TrainingError):
    """The run ended before its last epoch (a non-finite loss, Ctrl-C); the parameters of
    the last good step are kept (and checkpointed, if asked)."""


class ProgressRaised(Exception):
    """The user's `progress` function raised after an epoch. The loop ends the run there,
    as Ctrl-C would, and raises the user's own exception again (theirs to see: a typo in a
    print is not ours to hide) with the run's `Result` on it, so the epochs are not lost."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error
        self.message = (f"the progress function raised {type(error).__name__}: the parameters of the last "
                        "finished epoch are kept")


def call_progress(progress, epoch: int, record: dict) -> None:
    try:
        progress(epoch, record)
    except Exception as err:  # noqa: BLE001 - whatever the user's function raises
        raise ProgressRaised(err) from err


def carrying(error: Exception, result) -> Exception:
    """The user's exception with the run's Result as `error.result`, and a note saying so."""
    error.result = result
    if hasattr(error, "add_note"):  # Python 3.11+: shown under the traceback
        error.add_note(f"indexcalc: training stopped after epoch {result.epochs}; its parameters are this "
                       "exception's .result.params (in a notebook: sys.last_value.result)")
    return error


def is_whole(value: object) -> bool:
    """An int or NumPy integer, but not a bool (True is not an epoch count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def file_path(path: object, what: str, error: type[IndexCalcError] = TrainingError) -> str:
    """`path` as a str, if it is one or a `pathlib.Path`: an int would be taken by `open`
    as a file descriptor (and closed), None or a list fail inside `os` with a TypeError."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise error(f"{what} is a file path (a str or a pathlib.Path), got {path!r}")
    if "\0" in path:
        raise error(f"{what} {path!r} holds a NUL character, which no file name can")
    return path


def require_named_arrays(arrays: object, what: str, example: str = "{'x': X, 'y': Y}",
                         error: type[IndexCalcError] = TrainingError) -> None:
    """Refuse anything but a mapping of names to arrays (a list of arrays would otherwise
    fail deep inside, comparing an array with a name)."""
    if not isinstance(arrays, Mapping):
        raise error(f"the {what} are a dict of arrays by name, as {example}; got {type(arrays).__name__}")
