"""The weight-update loop: `w ← w − η loss_{,(gh)}`, with momentum and Adam.

Training never loses work. A loss that turns NaN or infinite stops the run with a clear
message and the parameters of the last good step; Ctrl-C ends the run cleanly with them;
checkpoints (parameters, optimiser state, epoch, history, the generator's state) are
written atomically, and a run resumed from one continues exactly as if it had never
stopped, since the shuffling generator is part of the state.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import IndexCalcError
from .model import Model


class TrainingError(IndexCalcError):
    """Training could not go on (a non-finite loss, a checkpoint that does not fit)."""


# ---------------------------------------------------------------- optimisers


class SGD:
    """w ← w − η g: the index-notation note's update rule.

    A step puts new arrays in `params` and never writes into the old ones, so the loop
    keeps the last good parameters by holding on to the old dict, without copying."""

    name = "sgd"

    def __init__(self, lr: float = 0.1):
        self.lr = lr
        self.state: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for name, g in grads.items():
            params[name] = params[name] - self.lr * g


class Momentum(SGD):
    """v ← β v + g; w ← w − η v."""

    name = "momentum"

    def __init__(self, lr: float = 0.1, beta: float = 0.9):
        super().__init__(lr)
        self.beta = beta

    def step(self, params, grads) -> None:
        for name, g in grads.items():
            v = self.state.get(f"v.{name}")
            v = g if v is None else self.beta * v + g
            self.state[f"v.{name}"] = v
            params[name] = params[name] - self.lr * v


class Adam(SGD):
    """Adam (Kingma & Ba): moment estimates with bias correction."""

    name = "adam"

    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, params, grads) -> None:
        t = int(self.state.get("t", np.zeros(())) + 1)
        self.state["t"] = np.asarray(t)
        for name, g in grads.items():
            m = self.beta1 * self.state.get(f"m.{name}", 0.0) + (1 - self.beta1) * g
            v = self.beta2 * self.state.get(f"v.{name}", 0.0) + (1 - self.beta2) * g * g
            self.state[f"m.{name}"], self.state[f"v.{name}"] = m, v
            m_hat = m / (1 - self.beta1**t)
            v_hat = v / (1 - self.beta2**t)
            params[name] = params[name] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMISERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def optimiser(name: str, **settings) -> SGD:
    try:
        return OPTIMISERS[name](**settings)
    except KeyError:
        raise TrainingError(f"unknown optimiser {name!r} (known: {', '.join(OPTIMISERS)})") from None
    except TypeError as err:
        raise TrainingError(f"bad settings for {name}: {err}") from None


# ---------------------------------------------------------------- the loop


@dataclass
class Result:
    params: dict[str, np.ndarray]
    history: list[dict[str, float]]
    epochs: int
    stopped: str  # "done", "nan", "interrupted"
    message: str = ""
    seconds: float = 0.0


@dataclass
class Trainer:
    """Trains a model on named data arrays, batch by batch, from a seed."""

    model: Model
    optimizer: SGD = field(default_factory=SGD)
    batch_size: int | None = None
    seed: int = 0
    metric: Callable | None = None
    checkpoint: str | None = None

    def fit(
        self,
        train: Mapping[str, np.ndarray],
        epochs: int,
        test: Mapping[str, np.ndarray] | None = None,
        params: dict[str, np.ndarray] | None = None,
        resume: str | None = None,
        progress: Callable[[int, dict], None] | None = None,
    ) -> Result:
        """Run `epochs` epochs (in total, counting those of a resumed checkpoint)."""
        rng = np.random.default_rng(self.seed)
        history: list[dict[str, float]] = []
        start = 0
        params = dict(params) if params is not None else self.model.init_params(self.seed)
        if resume:
            params, start, history, rng = self._load(resume)
        n = _batch_count(train, self.model.data)
        size = self.batch_size or n
        begun = time.perf_counter()
        good = {k: v.copy() for k, v in params.items()}
        last, kept = good, (dict(self.optimizer.state), rng.bit_generator.state)
        stopped, message = "done", ""
        try:
            for epoch in range(start, epochs):
                order = rng.permutation(n)
                total = 0.0
                for lo in range(0, n, size):
                    picked = order[lo : lo + size]
                    batch = {k: np.asarray(v)[picked] for k, v in train.items()}
                    loss, grads = self.model.loss_and_grads(params, batch)
                    if not np.isfinite(loss) or not all(np.all(np.isfinite(g)) for g in grads.values()):
                        stopped = "nan"
                        message = (
                            f"the loss became {float(loss)} at epoch {epoch + 1}; training stopped and "
                            f"the parameters of the last good step are kept (try a smaller learning rate)"
                        )
                        break
                    last = dict(params)  # the optimisers make new arrays, never write in place
                    self.optimizer.step(params, grads)
                    total += float(loss) * len(picked)
                if stopped == "nan":
                    params = last
                    break
                record = {"epoch": epoch + 1, "loss": total / n}
                record.update(self.scores(params, train, "train"))
                if test is not None:
                    record.update(self.scores(params, test, "test"))
                history.append(record)
                good = dict(params)
                kept = (dict(self.optimizer.state), rng.bit_generator.state)
                if self.checkpoint:
                    self.save(self.checkpoint, params, epoch + 1, history, rng)
                if progress:
                    progress(epoch + 1, record)
        except KeyboardInterrupt:
            stopped, message = "interrupted", "interrupted: the parameters of the last finished epoch are kept"
            params = good
            self.optimizer.state, rng.bit_generator.state = dict(kept[0]), kept[1]
        done = history[-1]["epoch"] if history else start
        if stopped != "done" and self.checkpoint:
            self.save(self.checkpoint, params, done, history, rng)
        return Result(params, history, done, stopped, message, time.perf_counter() - begun)

    def scores(self, params, data: Mapping[str, np.ndarray], prefix: str) -> dict[str, float]:
        """The loss on all of `data`, and the metric if the model has one."""
        loss, _ = self.model.loss_and_grads(params, data)
        out = {f"{prefix}_loss": float(loss)} if prefix != "train" else {}
        if self.metric is not None:
            out[f"{prefix}_accuracy"] = float(self.metric(self.model, params, data))
        return out

    # --- checkpoints
    def save(self, path: str, params, epoch: int, history, rng: np.random.Generator) -> None:
        """Write the whole state to a temporary file, then rename it over `path`."""
        arrays = {f"param.{k}": v for k, v in params.items()}
        arrays.update({f"opt.{k}": np.asarray(v) for k, v in self.optimizer.state.items()})
        meta = {"epoch": epoch, "history": history, "rng": rng.bit_generator.state,
                "optimizer": self.optimizer.name}
        arrays["meta"] = np.asarray(json.dumps(meta))
        folder = os.path.dirname(os.path.abspath(path))
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    def _load(self, path: str):
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                params = {k[6:]: data[k] for k in data.files if k.startswith("param.")}
                state = {k[4:]: data[k] for k in data.files if k.startswith("opt.")}
        except (OSError, ValueError, KeyError) as err:
            raise TrainingError(f"cannot resume from {path}: {err}") from None
        missing = set(self.model.parameters) - set(params)
        if missing:
            raise TrainingError(f"the checkpoint {path} lacks parameters {', '.join(sorted(missing))}")
        if meta.get("optimizer") != self.optimizer.name:
            raise TrainingError(f"the checkpoint was made with {meta.get('optimizer')}, not {self.optimizer.name}")
        self.optimizer.state = state
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        return params, int(meta["epoch"]), list(meta["history"]), rng


def _batch_count(data: Mapping[str, np.ndarray], names) -> int:
    counts = {k: len(np.asarray(data[k])) for k in names if k in data}
    if not counts:
        raise TrainingError(f"no data given for {', '.join(names)}")
    if len(set(counts.values())) > 1:
        raise TrainingError(f"the data tensors have different numbers of samples: {counts}")
    return counts.popitem()[1]


def accuracy(output: str, target: str) -> Callable:
    """Classification accuracy: argmax over classes, or the side of 0.5 for one output."""

    def measure(model: Model, params, data) -> float:
        predicted = np.asarray(model.evaluate(output, params, data))
        wanted = np.asarray(data[target])
        if predicted.ndim > 1 and predicted.shape[-1] > 1:
            return float(np.mean(predicted.argmax(-1) == wanted.argmax(-1)))
        threshold = 0.0 if np.all(np.isin(wanted, (-1.0, 1.0))) else 0.5
        side = predicted.reshape(len(wanted), -1) > threshold
        return float(np.mean(side == (wanted.reshape(len(wanted), -1) > threshold)))

    return measure


def train_file(model_file, *, epochs: int | None = None, lr: float | None = None, seed: int | None = None,
               batch_size: int | None = None, checkpoint: str | None = None, resume: str | None = None,
               progress: Callable[[int, dict], None] | None = None) -> tuple[Result, dict, dict]:
    """Train what a model file declares (settings given here override its own)."""
    from . import datasets

    mf = model_file
    seed = mf.seed if seed is None else seed
    if mf.dataset is None:
        raise TrainingError(f"{mf.name} declares no dataset (dataset xor, ..., or dataset FILE.npz)")
    def at(word: str) -> int | None:  # errors about a declaration point at its line
        return mf.declared[word][1] if word in mf.declared else None

    try:
        train, test = datasets.load(mf.dataset, list(mf.model.data), seed, mf.folder)
    except IndexCalcError as err:
        raise err.with_source(mf.text, at("dataset")) from None
    name, settings = mf.optimizer
    if lr is not None:
        settings = {**settings, "lr": lr}
    try:
        chosen = optimiser(name, **settings)
    except TrainingError as err:
        raise err.with_source(mf.text, at("optimizer")) from None
    trainer = Trainer(
        mf.model,
        chosen,
        batch_size=batch_size or mf.batch_size,
        seed=seed,
        metric=accuracy(*mf.metric) if mf.metric else None,
        checkpoint=checkpoint,
    )
    result = trainer.fit(train, epochs or mf.epochs, test=test or None, resume=resume, progress=progress)
    return result, train, test
