"""The metrics a training run reports beside its loss, once an epoch, by the forward plan
of the output they score: classification accuracy, and the regression errors mse and mae.
A metric is `metric(output, target)` → `measure(model, params, data)`; a model file's
`metric NAME OUTPUT TARGET` line picks one from `METRICS` by name."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .expr import Call
from .model import Model, ModelError
from .training_arrays import to_numpy


def _data(data, name: str, metric: str) -> np.ndarray:
    """The array `name` a metric reads beside the model's output, on the host."""
    if name not in data:
        raise ModelError(f"the metric {metric} reads {name}, which is not among the data given "
                         f"({', '.join(map(str, data)) or 'none'})", about="metric")
    return to_numpy(data[name])


# What a single output's own function says of its scale: a probability splits its classes
# at 0.5, a tanh at 0. Any other output (a logit, a score) says nothing, and the metric asks.
SCALES = {"sigma": 0.5, "tanh": 0.0}


def accuracy(output: str, target: str, weight: str | None = None, threshold: float | None = None) -> Callable:
    """Classification accuracy: argmax over classes; for one output, which side of a
    threshold it falls: 0.5 for σ(...), 0 for tanh(...), and for any other output the
    `threshold` given (0 for a logit, 0.5 for a score on 0/1 labels: both are usual, so
    neither is guessed). Labels are 0/1 or ±1. With `weight`, a data tensor over the
    output's axes but the classes, each prediction counts as much as its weight: a
    sequence task scores only its answer positions (weights 1 there, 0 elsewhere)."""
    if threshold is not None and not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                      and math.isfinite(threshold)):
        raise ModelError(f"the accuracy's threshold is a number, got {threshold!r}", about="metric")

    def measure(model: Model, params, data) -> float:
        predicted = to_numpy(model.evaluate(output, params, data))  # once an epoch, from any backend
        wanted = _data(data, target, "accuracy")
        if predicted.ndim > 1 and predicted.shape[-1] > 1:
            if wanted.shape == predicted.shape:  # one-hot rows
                hits = predicted.argmax(-1) == wanted.argmax(-1)
            elif wanted.shape == predicted.shape[:-1]:  # class labels
                hits = predicted.argmax(-1) == wanted
            else:
                raise ModelError(f"the accuracy compares {output} {predicted.shape} with {target} {wanted.shape}: "
                                 f"{target} should be one-hot rows of the same shape or one class label per row "
                                 f"{predicted.shape[:-1]}", about="metric")
        elif predicted.size != wanted.size:
            raise ModelError(f"the accuracy compares {output} {predicted.shape} with {target} {wanted.shape}, which "
                             f"do not hold as many numbers", about="metric")
        else:
            cut = _threshold(model, output, threshold)
            labels = 0.0 if np.all(np.isin(wanted, (-1.0, 1.0))) else 0.5  # ±1 or 0/1: the same side either way
            hits = (predicted.reshape(len(wanted), -1) > cut) == (wanted.reshape(len(wanted), -1) > labels)
        if weight is None:
            return float(np.mean(hits))
        weights = _data(data, weight, "accuracy").astype(float)
        if weights.shape != hits.shape:
            raise ModelError(f"the metric's weight {weight} has shape {weights.shape}, but {output}'s predictions "
                             f"(its axes but the classes) have shape {hits.shape}")
        total = float(weights.sum())
        return float((hits * weights).sum() / total) if total else float("nan")

    return measure


def _threshold(model: Model, output: str, given: float | None) -> float:
    """Where one output splits its two classes: as given, or as its own function says.
    It used to be read off the labels (0.5 unless every label was ±1), which split a logit
    at 0.5 and, on a split whose labels were all 1, a probability at 0 (every sample a hit)."""
    if given is not None:
        return float(given)
    equations = model.per_sample.equations if isinstance(model, Model) else ()
    line = next((eq.rhs for eq in equations if eq.lhs.name == output), None)
    if isinstance(line, Call) and line.func in SCALES:
        return SCALES[line.func]
    raise ModelError(f"the accuracy of the one output {output} needs its threshold: {output} is not σ(...) "
                     f"(split at 0.5) or tanh(...) (split at 0); as a logit its classes split at 0, as a score on "
                     f"0/1 labels at 0.5. Write metric accuracy {output} ... threshold=0 (or threshold=0.5)",
                     about="metric")


def _error_metric(name: str, of: Callable[[np.ndarray], np.ndarray], meaning: str) -> Callable:
    """A regression metric: `of` the difference between the output and the target,
    averaged over every sample and component (Keras's mse and mae for one output)."""

    def metric(output: str, target: str) -> Callable:
        def measure(model: Model, params, data) -> float:
            predicted = to_numpy(model.evaluate(output, params, data))  # once an epoch, from any backend
            wanted = _data(data, target, name)
            if predicted.size != wanted.size:
                raise ModelError(f"the metric {name} compares {output} ({predicted.shape}) with {target} "
                                 f"({wanted.shape}), which do not hold as many numbers")
            return float(np.mean(of(predicted.reshape(wanted.shape) - wanted)))

        measure.name = name
        return measure

    metric.__doc__ = f"The {meaning} of `output` against `target`, over all samples and components."
    return metric


mse = _error_metric("mse", np.square, "mean squared error")
mae = _error_metric("mae", np.abs, "mean absolute error")

# The metrics by the name a model file's `metric` line gives them; each records
# `<split>_<name>` in the history. Only accuracy takes a weight.
METRICS = {"accuracy": accuracy, "mse": mse, "mae": mae}
