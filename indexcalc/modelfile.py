"""Model files (`.ic`): the equations, and in declaration lines what to train.

    # XOR: a 2-4-1 sigmoid network (the partial-derivatives note)
    data x y                  # the data tensors, written per sample
    batch n mean              # batch index; the loss is averaged (mean) or summed (sum)
    param W1[4, 2] xavier     # shape and initialiser: zeros, ones, normal(std), uniform(a),
    param b1[4] zeros         #   xavier (glorot), he
    dataset xor               # built in (xor, fizzbuzz, relu_neuron, logistic, linear) or a .npz
    optimizer adam lr=0.1     # sgd lr=…, momentum lr=… beta=…, adam lr=… beta1=… beta2=…
    epochs 300
    batch_size 4
    seed 0
    metric accuracy yhat y    # accuracy of yhat against y (argmax, or the side of 0.5 / 0)

    h_i = σ(W1_ij x_j + b1_i)
    yhat_k = σ(W2_ki h_i + b2_k)
    loss = (yhat_k - y_k)(yhat_k - y_k)

A line is a declaration when it starts with one of the words above (and no `=` follows
the word); every other line is notation. Errors point at the line and the character.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .errors import IndexCalcError
from .model import INITIALISERS, Model, ModelError, Param

KEYWORDS = ("data", "batch", "param", "dataset", "optimizer", "epochs", "batch_size", "seed", "metric", "loss")


@dataclass
class ModelFile:
    model: Model
    dataset: str | None = None
    optimizer: tuple[str, dict] = ("sgd", {"lr": 0.1})
    epochs: int = 100
    batch_size: int | None = None
    seed: int = 0
    metric: tuple[str, str] | None = None
    folder: str = "."
    text: str = ""
    name: str = "<text>"
    declared: dict = field(default_factory=dict)


def load(path: str) -> ModelFile:
    """Read a model file."""
    try:
        with open(path, encoding="utf-8") as handle:
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

    def value(word: str, default=None):
        return declared[word][0] if word in declared else default

    def fail(word: str, message: str) -> ModelError:
        return ModelError(message, text=text, pos=declared[word][1] if word in declared else 0)

    data = [n.split("_")[0] for n in value("data", "").replace(",", " ").split()]
    batch, reduce = _batch(value("batch", "n mean"), fail)
    metric = value("metric")
    if metric is not None:
        parts = metric.split()
        if len(parts) != 3 or parts[0] != "accuracy":
            raise fail("metric", "write the metric as: metric accuracy OUTPUT TARGET")
        metric = (parts[1], parts[2])
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
        if err.text is None and err.pos is None and params:
            for p, where in params:
                if re.search(rf"\b{re.escape(p.name)}\b", err.problem):
                    raise err.with_source(text, where) from None
        raise err.with_source(text, None) if err.pos is not None else err.with_source(text, 0)
    return ModelFile(
        model=model,
        dataset=value("dataset"),
        optimizer=_optimizer(value("optimizer", "sgd lr=0.1"), fail),
        epochs=_whole(value("epochs", "100"), "epochs", fail),
        batch_size=_whole(value("batch_size"), "batch_size", fail) if "batch_size" in declared else None,
        seed=_whole(value("seed", "0"), "seed", fail),
        metric=metric,
        folder=folder,
        text=text,
        name=name,
        declared=declared,
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


_PARAM = re.compile(r"^(\w+)\s*\[([^\]]*)\]\s*(\w+)?\s*(?:\(\s*([-+0-9.eE]+)\s*\))?\s*$")


def _param(spec: str, text: str, where: int) -> Param:
    m = _PARAM.match(spec.strip())
    if not m:
        raise ModelError("write a parameter as: param NAME[size, size] INITIALISER", text=text, pos=where)
    name, dims, init, scale = m.groups()
    try:
        shape = tuple(int(d) for d in dims.replace(",", " ").split())
    except ValueError:
        raise ModelError(f"the shape of {name} must be whole numbers: [{dims}]", text=text, pos=where) from None
    if any(d < 1 for d in shape):
        raise ModelError(f"the shape of {name} must be positive: [{dims}]", text=text, pos=where)
    init = init or "normal"
    if init not in INITIALISERS:
        raise ModelError(f"unknown initialiser {init!r} (known: {', '.join(INITIALISERS)})", text=text, pos=where)
    return Param(name, shape, init, float(scale) if scale else 1.0)


def _batch(spec: str, fail):
    parts = spec.split()
    if parts == ["none"]:
        return None, "mean"
    if len(parts) != 2 or parts[1] not in ("mean", "sum") or not re.fullmatch(r"[^\W\d_]\d*", parts[0]):
        raise fail("batch", "write the batch as: batch INDEX mean (or sum), or: batch none")
    return parts[0], parts[1]


def _optimizer(spec: str, fail) -> tuple[str, dict]:
    name, *settings = spec.split()
    values = {}
    for setting in settings:
        key, _, number = setting.partition("=")
        try:
            values[key] = float(number)
        except ValueError:
            raise fail("optimizer", f"optimizer settings are name=number, got {setting!r}") from None
    return name, values


def _whole(spec: str | None, word: str, fail) -> int:
    if spec is None or not spec.isdigit():
        raise fail(word, f"{word} takes a whole number, got {spec!r}")
    return int(spec)
