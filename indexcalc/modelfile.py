"""Model files (`.ic`): the equations, and in declaration lines what to train.

    # XOR: a 2-4-1 sigmoid network (the partial-derivatives note)
    data x y                  # the data tensors, written per sample
    batch n mean              # batch index; the loss is averaged (mean) or summed (sum)
    param W1[4, 2] xavier     # shape and initialiser: zeros, ones, normal(std), uniform(a),
    param b1[4] zeros         #   xavier (glorot), he
    dataset xor               # built in (xor, fizzbuzz, relu_neuron, logistic, linear, blobs,
                              #   digits, copy, reverse, gaussian) or a .npz
    optimizer adam lr=0.1     # sgd lr=…, momentum lr=… beta=…, adam lr=… beta1=… beta2=…
    epochs 300
    batch_size 4
    seed 0
    metric accuracy yhat y    # accuracy of yhat against y (argmax; one output: split at 0.5
                              #   for σ(...), 0 for tanh(...), else threshold=0 or 0.5 given);
                              #   a third name weights each prediction (metric accuracy z y m);
                              #   or metric mse yhat y, metric mae yhat y
    schedule cosine           # the learning rate per epoch: step every=30 factor=0.5,
                              #   exponential factor=0.95, cosine floor=0 (see schedules)
    warmup 5                  # linear warm-up over the first 5 epochs, then the schedule
    weight_decay 1e-4         # decoupled (AdamW) for adam, L2 added to the gradient otherwise
    clip 1.0                  # the gradients' global norm clipped to 1 (before weight decay)
    validation 0.1            # hold out a tenth of the training data (drawn from the seed)
    monitor val_accuracy      # the best epoch by this score (loss, val_loss, test_accuracy, ...):
                              #   its parameters are the run's result
    patience 10               # stop when the monitor has not improved for 10 epochs
    backend torch             # the array library it trains on: numpy (default), jax, torch,
                              #   dask, cupy (`indexcalc train --backend` overrides it)

    h_i = σ(W1_ij x_j + b1_i)
    yhat_k = σ(W2_ki h_i + b2_k)
    loss = (yhat_k - y_k)(yhat_k - y_k)

Data sets often hold class labels (0, 1, 2, one per sample) where the equations read
one-hot rows (`y_k`): `onehot y 3` says so, and y is turned into rows of 3 (see
examples/blobs.ic). A data file's arrays are named as the data line's tensors, and its
held-out arrays `test_x`, `test_y`.

A line is a declaration when it starts with one of the words above or `onehot` (and no
`=` follows the word); every other line is notation, and one that starts with another bare
word without a `=` after it (`optimiser adam`) is refused with the declaration meant.
Errors point at the line and the character.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field

from .backends import KNOWN
from .datasets import DataSet, apply_onehot, open_dataset
from .errors import IndexCalcError
from .tokens import DECLARATION_WORDS, is_index_name, is_letter_index
from .declarations import INITIALISERS, SCALED, ModelError, Param
from .model import Model
from .optimisers import optimiser
from .metrics import METRICS
from .schedules import SCHEDULES, Schedule, schedule
from .training_errors import file_path

KEYWORDS = ("data", "batch", "param", "dataset", "optimizer", "epochs", "batch_size", "seed", "metric", "loss",
            "onehot", "backend", "schedule", "warmup", "weight_decay", "clip", "validation", "monitor", "patience")


@dataclass
class ModelFile:
    model: Model
    dataset: str | None = None
    optimizer: tuple[str, dict] = ("sgd", {"lr": 0.1})
    epochs: int = 100
    batch_size: int | None = None
    seed: int = 0
    metric: tuple[str, ...] | None = None
    backend: str = "numpy"
    folder: str = "."
    text: str = ""
    name: str = "<text>"
    declared: dict = field(default_factory=dict)
    params_at: dict[str, int] = field(default_factory=dict)
    onehot: dict[str, int] = field(default_factory=dict)
    metric_name: str = "accuracy"  # the METRICS entry `metric` names (its output, target[, weight])
    metric_threshold: float | None = None  # accuracy's, where one output's own function does not say
    schedule: Schedule | None = None
    weight_decay: float = 0.0
    clip: float | None = None
    validation: float = 0.0
    monitor: str | None = None
    patience: int | None = None

    def measure(self):
        """The declared metric as a function of (model, params, data), or None."""
        if not self.metric:
            return None
        options = {} if self.metric_threshold is None else {"threshold": self.metric_threshold}
        return METRICS[self.metric_name](*self.metric, **options)

    def load_data(self, seed: int | None = None) -> DataSet:
        """The declared data set, checked, its one-hot declarations applied; an error
        points at the dataset (or onehot) line."""
        if self.dataset is None:
            raise ModelError(f"{self.name} declares no dataset (dataset xor, ..., or dataset FILE.npz)")
        try:
            data = open_dataset(self.dataset, list(self.model.data), self.seed if seed is None else seed, self.folder)
        except IndexCalcError as err:
            raise self.locate(err, "dataset") from None
        try:
            return apply_onehot(data, self.onehot)
        except IndexCalcError as err:
            raise self.locate(err, "onehot") from None

    def position(self, about: str | None) -> int | None:
        """Where the declaration `about` ("param W1", "optimizer", ...) is written."""
        if about is None:
            return None
        word, _, name = about.partition(" ")
        if word == "param":
            return self.params_at.get(name)
        return self.declared[word][1] if word in self.declared else None

    def locate(self, err: IndexCalcError, about: str | None = None) -> IndexCalcError:
        """The error quoting the model file at the line it concerns (its own position in the
        equations, or the declaration it is `about`); one about no line is left as it is."""
        if err.text is None:
            pos = err.pos if err.pos is not None else self.position(about or getattr(err, "about", None))
            if pos is not None:
                err.with_source(self.text, pos)
        return err


def load(path: str) -> ModelFile:
    """Read a model file."""
    path = file_path(path, "the model file", ModelError)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise IndexCalcError(f"cannot read the model file {path}: {err}") from None
    return parse_model(text, folder=os.path.dirname(os.path.abspath(path)), name=path)


def parse_model(text: str, folder: str = ".", name: str = "<text>") -> ModelFile:
    """Split declarations from equations (keeping every character's position, so that
    errors in the equations point into the file), then build the model."""
    declared: dict[str, tuple[str, int]] = {}
    params: list[tuple[Param, int]] = []
    source, declarations = split_declarations(text)
    for word, after, where in declarations:
        if word == "param":
            param = _param(after, text, where)
            if any(p.name == param.name for p, _ in params):
                raise ModelError(f"parameter {param.name} is declared twice", text=text, pos=where)
            params.append((param, where))
        elif word in declared:
            raise ModelError(f"'{word}' is declared twice", text=text, pos=where)
        else:
            declared[word] = (after.strip(), where)
    if not source.strip():
        raise ModelError("the model file has no equations", text=text, pos=0)
    _refuse_unknown_declarations(source, text)

    def value(word: str, default=None):
        return declared[word][0] if word in declared else default

    def fail(word: str, message: str) -> ModelError:
        return ModelError(message, text=text, pos=declared[word][1] if word in declared else 0)

    data = [n.split("_")[0] for n in value("data", "").replace(",", " ").split()]
    if "data" in declared and not data:
        raise fail("data", "write the data tensors as: data x y (the names the equations use)")
    batch, reduce = _batch(value("batch", "n mean"), fail)
    where = {p.name: at for p, at in params}
    partial = ModelFile(model=None, text=text, name=name, declared=declared, params_at=where)  # for positions
    try:
        model = Model(
            source,
            params={p.name: p for p, _ in params},
            data=data,
            batch=batch,
            reduce=reduce,
            loss=value("loss"),
        )
    except IndexCalcError as err:
        if not params and "data" not in declared:  # equations alone, as for `indexcalc diff`
            err = ModelError(err.problem + NOTHING_DECLARED, text=err.text, pos=err.pos)
        raise partial.locate(err) from None
    if "dataset" in declared and not value("dataset"):
        raise fail("dataset", "write the data set as: dataset NAME (built in) or dataset FILE.npz")
    return ModelFile(
        model=model,
        dataset=value("dataset"),
        optimizer=_optimizer(value("optimizer", "sgd lr=0.1"), fail),
        epochs=_whole(value("epochs", "100"), "epochs", fail, least=1),
        batch_size=_whole(value("batch_size"), "batch_size", fail, least=1) if "batch_size" in declared else None,
        seed=_whole(value("seed", "0"), "seed", fail, least=0),
        metric=_metric(value("metric"), model, fail),
        metric_threshold=_metric_threshold(value("metric"), fail),
        metric_name=value("metric").split()[0] if value("metric") else "accuracy",
        schedule=_schedule(value("schedule"), value("warmup"), fail),
        weight_decay=_number(value("weight_decay", "0"), "weight_decay", fail, "a number, 0 or more", lambda v: v >= 0),
        clip=_number(value("clip"), "clip", fail, "a positive number", lambda v: v > 0) if "clip" in declared else None,
        validation=_number(value("validation", "0"), "validation", fail, "a fraction in [0, 1), e.g. 0.1",
                           lambda v: 0 <= v < 1),
        monitor=_monitor(value("monitor"), fail) if "monitor" in declared else None,
        patience=_whole(value("patience"), "patience", fail, least=1) if "patience" in declared else None,
        backend=_backend(value("backend", "numpy"), fail),
        folder=folder,
        text=text,
        name=name,
        declared=declared,
        params_at=where,
        onehot=_onehot(value("onehot"), model, fail),
    )


def split_declarations(text: str) -> tuple[str, list[tuple[str, str, int]]]:
    """The equations (declaration lines blanked, so positions stay) and the declarations
    as (word, the rest of the line, position)."""
    equations, declarations, offset = [], [], 0
    for line in text.splitlines(keepends=True):
        body = line.split("#", 1)[0]
        word = body.split(None, 1)[0] if body.strip() else ""
        after = body.strip()[len(word):].lstrip()
        if word in KEYWORDS and not after.startswith("="):
            declarations.append((word, after, offset + line.index(word)))
            line = " " * len(line.rstrip("\n")) + ("\n" if line.endswith("\n") else "")
        equations.append(line)
        offset += len(line)
    return "".join(equations), declarations


NOTHING_DECLARED = (" (the file declares no parameters and no data: a model file says what to train with lines "
                    "such as 'param W1[4, 2] xavier' and 'data x y', as examples/xor.ic does; equations alone "
                    "are for indexcalc diff, eval and show)")

_WORD_THEN_MORE = re.compile(r"[ \t]*([A-Za-z]\w*)[ \t]+(?!=)\S")


def _refuse_unknown_declarations(source: str, text: str) -> None:
    """A line that starts with a bare word and goes on without `=` (`optimiser adam`,
    `epoch 10`) is neither a declaration nor an equation (whose left-hand side is one
    tensor, then `=`): refused as an unknown declaration, with the nearest keyword, rather
    than parsed as a product and refused for its missing `=`."""
    offset = 0
    for line in source.splitlines(keepends=True):
        found = _WORD_THEN_MORE.match(line.split("#", 1)[0])
        if found and found.group(1) not in DECLARATION_WORDS:  # `index batch` is notation's own
            word = found.group(1)
            near = difflib.get_close_matches(word.lower(), KEYWORDS, n=1, cutoff=0.7)
            hint = f"did you mean {near[0]!r}?" if near else f"the declarations are {', '.join(KEYWORDS)}"
            raise ModelError(f"unknown declaration {word!r} ({hint}); an equation is written NAME_indices = ...",
                             text=text, pos=offset + found.start(1))
        offset += len(line)


_PARAM = re.compile(r"^(\w+)\s*\[([^\]]*)\]\s*(\w+)?\s*(?:\(\s*([-+0-9.eE]+)\s*\))?\s*$")


def _param(spec: str, text: str, where: int) -> Param:
    m = _PARAM.match(spec.strip())
    if not m:
        raise ModelError("write a parameter as: param NAME[size, size] INITIALISER", text=text, pos=where)
    name, dims, init, scale = m.groups()
    sizes = dims.replace(",", " ").split()
    if not all(re.fullmatch(r"[0-9]+", d) for d in sizes):
        raise ModelError(f"the shape of {name} must be whole numbers: [{dims}]", text=text, pos=where)
    shape = tuple(int(d) for d in sizes)
    if any(d < 1 for d in shape):
        raise ModelError(f"the shape of {name} must be positive: [{dims}]", text=text, pos=where)
    init = init or "normal"
    if init not in INITIALISERS:
        raise ModelError(f"unknown initialiser {init!r} (known: {', '.join(INITIALISERS)})", text=text, pos=where)
    if scale is not None and init not in SCALED:
        raise ModelError(f"{init} takes no number; only {' and '.join(f'{s}(...)' for s in SCALED)} do",
                         text=text, pos=where)
    try:
        return Param(name, shape, init, float(scale) if scale else 1.0)
    except ValueError:
        raise ModelError(f"{init}({scale}) for {name}: the number is not a number", text=text, pos=where) from None
    except IndexCalcError as err:
        raise err.with_source(text, where) from None


def _batch(spec: str, fail):
    parts = spec.split()
    if parts == ["none"]:
        return None, "mean"
    if len(parts) != 2 or parts[1] not in ("mean", "sum") or not (is_letter_index(parts[0]) or is_index_name(parts[0])):
        raise fail("batch", "write the batch as: batch INDEX mean (or sum), INDEX a letter (n) or a name (batch); "
                            "or: batch none")
    return parts[0], parts[1]


def _settings(settings: list[str], word: str, fail) -> dict[str, float]:
    """`lr=0.01 beta1=0.9`: the settings of an optimizer or schedule line, as numbers."""
    values = {}
    for setting in settings:
        key, _, number = setting.partition("=")
        if key in values:  # the first or the last? neither is chosen in silence
            raise fail(word, f"{word} setting {key} is given twice ({key}={values[key]:g} and {setting})")
        try:
            values[key] = float(number)
        except ValueError:
            raise fail(word, f"{word} settings are name=number, got {setting!r}") from None
    return values


def _optimizer(spec: str, fail) -> tuple[str, dict]:
    """`adam lr=0.01 beta1=0.9`, checked now (names and values), not after an epoch."""
    if not spec.split():
        raise fail("optimizer", "write the optimizer as: optimizer adam lr=0.01 (or sgd lr=…, momentum lr=… beta=…)")
    name, *settings = spec.split()
    values = _settings(settings, "optimizer", fail)
    try:
        optimiser(name, **values)
    except IndexCalcError as err:
        raise fail("optimizer", err.problem) from None
    return name, values


def _backend(spec: str, fail) -> str:
    """`backend jax`: a library's name, checked now; whether it is installed is asked
    when training starts (a file names its backend also for machines that have it)."""
    if spec not in KNOWN:
        raise fail("backend", f"write the backend as one of: {', '.join(f'backend {k}' for k in KNOWN)}"
                              f"{f', not {spec!r}' if spec else ''}")
    return spec


def _whole(spec: str | None, word: str, fail, least: int) -> int:
    if spec is None or not re.fullmatch(r"[0-9]+", spec) or int(spec) < least:
        at_least = "a positive whole number" if least == 1 else "a whole number (0 or more)"
        raise fail(word, f"{word} takes {at_least}, got {spec!r}")
    return int(spec)


def _metric(spec: str | None, model: Model, fail) -> tuple[str, ...] | None:
    """`accuracy OUTPUT TARGET [WEIGHT]` (or mse, mae without a weight): OUTPUT computed by
    an equation, TARGET and the optional WEIGHT (how much each prediction counts) data
    tensors."""
    if spec is None:
        return None
    parts = [part for part in spec.split() if not part.startswith("threshold=")]
    if len(parts) not in (3, 4) or parts[0] not in ("accuracy", "mse", "mae") or (len(parts) == 4 and parts[0] != "accuracy"):
        raise fail("metric", "write the metric as: metric accuracy OUTPUT TARGET (or mse, mae), or "
                             "metric accuracy OUTPUT TARGET WEIGHT")
    output, *data = parts[1:]
    computed = [eq.lhs.name for eq in model.per_sample.equations]
    if output not in computed:
        raise fail("metric", f"the metric's output {output} is not computed by any equation "
                             f"(the equations compute {', '.join(computed)})")
    for role, name in zip(("target", "weight"), data):
        if name not in model.data:
            raise fail("metric", f"the metric's {role} {name} is not a data tensor "
                                 f"(the data line names {', '.join(model.data) or 'none'})")
    return (output, *data)


def _metric_threshold(spec: str | None, fail) -> float | None:
    """`threshold=0` on an accuracy line: where one output splits its two classes."""
    given = [part.partition("=")[2] for part in (spec or "").split() if part.startswith("threshold=")]
    if not given:
        return None
    try:
        threshold = float(given[-1])
    except ValueError:
        threshold = math.nan
    if len(given) > 1 or not math.isfinite(threshold) or not spec.startswith("accuracy"):
        raise fail("metric", "an accuracy takes one threshold=NUMBER (0 for a logit, 0.5 for a score on 0/1 "
                             "labels); mse and mae take none")
    return threshold


def _onehot(spec: str | None, model: Model, fail) -> dict[str, int]:
    """`onehot y 4`: the data set's y holds class labels 0..3, the equations read y_k."""
    if spec is None:
        return {}
    parts = spec.split()
    if len(parts) != 2 or not re.fullmatch(r"[0-9]+", parts[1]):
        raise fail("onehot", "write it as: onehot TARGET CLASSES (e.g. onehot y 4: labels 0..3, read as y_k)")
    name, classes = parts[0], int(parts[1])
    if name not in model.data:
        raise fail("onehot", f"{name} is not a data tensor (the data line names {', '.join(model.data) or 'none'})")
    if classes < 2:
        raise fail("onehot", f"a one-hot target needs at least 2 classes, got {classes}")
    return {name: classes}


def _number(spec: str | None, word: str, fail, wanted: str, fits) -> float:
    """A declaration's one number (`weight_decay 1e-4`), checked now."""
    try:
        number = float(spec or "")
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or not fits(number):
        raise fail(word, f"{word} takes {wanted}, got {spec!r}")
    return number


def _schedule(spec: str | None, warmup: str | None, fail) -> Schedule | None:
    """`schedule step every=30 factor=0.5` (settings as the optimizer line's, name=number)
    and `warmup 5`, checked now."""
    if spec is None and warmup is None:
        return None
    name, *settings = (spec or "constant").split() or [""]
    values = _settings(settings, "schedule", fail)
    if not name:
        raise fail("schedule", f"write the schedule as: schedule NAME setting=number (known: {', '.join(SCHEDULES)})")
    epochs = _whole(warmup, "warmup", fail, least=1) if warmup is not None else 0
    try:
        return schedule(name, epochs, **values)
    except IndexCalcError as err:
        raise fail(getattr(err, "about", None) or "schedule", err.problem) from None


def _monitor(spec: str | None, fail) -> str:
    """`monitor val_accuracy`: one history key; whether the run records it is checked when
    the run starts (it depends on the data and the validation split)."""
    parts = (spec or "").split()
    if len(parts) != 1:
        raise fail("monitor", "write the monitor as: monitor NAME (loss, val_loss, val_accuracy, test_accuracy, ...)")
    return parts[0]
