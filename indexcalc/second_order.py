"""Second-order training: Newton's method with the Hessian indexcalc derives, and L-BFGS
through SciPy, for full-batch problems (one epoch is one iteration over all the data).

`Newton` solves (H + λI) Δ = −g, H the Hessian of the loss by all the parameters jointly
(the blocks ∂²L/∂P∂Q, each compiled from `diff(diff(program, P), Q)` and reshaped to a
matrix), λ raised from `damping` until H + λI is positive definite (Levenberg–Marquardt),
then takes the largest step of `lr`, lr/2, lr/4, … that lowers the loss enough (Armijo's
condition): robust far from the optimum, quadratic near it. Past `dense_up_to` parameters
the Hessian is never formed: conjugate gradients solve with exact Hessian–vector products,
compiled as the gradient of g·v (the derivative lines of the program, plus one line
`g·v`, differentiated once more). A step keeps no state, so a resumed run goes on exactly.

`LBFGS` hands the compiled loss and gradient to `scipy.optimize.minimize(method="L-BFGS-B",
jac=True)`, a well-kept implementation, and records each of its iterations as an epoch.
SciPy is the optional extra `indexcalc[scipy]`. Its curvature memory is SciPy's, not
checkpointed: a resumed run starts it afresh from the saved parameters.

Both run on NumPy (the linear algebra is a small d×d system or SciPy's); the loop that
calls them keeps its promises: history and progress per epoch, a non-finite loss or
Ctrl-C ends the run with the last good parameters.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from .checkpoints import read_checkpoint
from .compile import compile as compile_program
from .datasets import refuse_if_too_big, sample_count
from .declarations import unused_name
from .diff import diff
from .errors import IndexCalcError
from .expr import Equation, Program, Tensor
from .notation import parse
from .first_order import SETTINGS as FIRST_ORDER_SETTINGS, SGD, check_settings
from .relabel import letters_in
from .training_errors import ProgressRaised, Result, TrainingError, call_progress, carrying, is_whole

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model
    from .train import Trainer

ARMIJO = 1e-4  # the fraction of the predicted decrease a step must achieve
HALVINGS = 40  # trial steps before a Newton step is given up (the parameters stay)

# What each setting means and the values that make sense for it (indexcalc.first_order's too).
SETTINGS = {
    **FIRST_ORDER_SETTINGS,
    "damping": ("the least Levenberg–Marquardt damping λ", lambda v: 0 <= v < math.inf, "0 or more"),
    "dense_up_to": ("the most parameters for which the Hessian is formed (past it, conjugate gradients)",
                    lambda v: 1 <= v < math.inf and v == int(v), "a positive whole number"),
    "memory": ("the curvature pairs L-BFGS keeps", lambda v: 1 <= v <= 1000 and v == int(v),
               "a whole number from 1 to 1000"),
    "tol": ("the gradient size at which L-BFGS stops", lambda v: 0 < v < math.inf, "a positive number"),
}


class FullBatch(SGD):
    """An optimiser that needs the whole training set at each step: the loop binds the
    model and the data to it before the first epoch (`bind`)."""

    full_batch = True
    lr = 1.0

    def __init__(self):
        super().__init__(self.lr)
        self.model: Model | None = None
        self.data: dict[str, np.ndarray] = {}

    def run_on(self, xp, wrap=None) -> None:
        if xp is not np:
            raise TrainingError(f"{self.name} runs on NumPy only; train it without a backend", about="backend")

    def bind(self, model: "Model", data: Mapping[str, np.ndarray], batch: int, samples: int) -> None:
        """Hold the model and the full training set; refuse mini-batches."""
        if batch < samples:
            raise TrainingError(f"{self.name} takes full-batch steps: leave the batch size unset (it is {batch}, "
                                f"for {samples} samples)", about="batch_size")
        self.model = model
        self.data = {k: np.asarray(data[k]) for k in model.data if k in data}


class Newton(FullBatch):
    """Damped Newton with the derived Hessian: (H + λI) Δ = −g, then a backtracking line
    search from the step `lr` (1: the full Newton step)."""

    name = "newton"

    def __init__(self, lr: float = 1.0, damping: float = 0.0, dense_up_to: float = 2000):
        super().__init__()
        check_settings(self.name, SETTINGS, lr=lr, damping=damping, dense_up_to=dense_up_to)
        self.lr, self.damping, self.dense_up_to = lr, damping, int(dense_up_to)
        self._blocks: dict[tuple[str, str], Callable] | None = None
        self._hvp: Callable | None = None
        self._vectors: dict[str, str] = {}  # the direction v's tensor name for each parameter, in the g·v line
        self.last: dict[str, float] = {}  # the last step's λ, step length and solver, for a curious caller

    def bind(self, model, data, batch, samples) -> None:
        """As `FullBatch.bind`, refusing first a dense Hessian too big for this machine."""
        count = sum(int(np.prod(p.shape, dtype=int)) for p in model.parameters.values())
        if count <= self.dense_up_to:
            try:
                refuse_if_too_big(f"newton's Hessian of {count} parameters (lower dense_up_to to use conjugate "
                                  f"gradients)", 8 * count * count)
            except IndexCalcError as err:
                raise TrainingError(err.problem, about="optimizer") from None
        if model is not self.model:  # another model: its own plans
            self._blocks = self._hvp = None
        super().bind(model, data, batch, samples)
        try:  # derived and compiled now: a model it cannot differentiate twice fails before the first epoch
            self.hessian_blocks() if count <= self.dense_up_to else self._hvp_plan()
        except IndexCalcError as err:
            raise TrainingError(f"newton cannot derive the Hessian of this model: {err.problem}",
                                about="optimizer") from None

    # --- the derived second derivatives
    def _names(self) -> list[str]:
        return list(self.model.parameters)

    def _wrt(self, name: str, avoid: set[str]) -> tuple[str, str]:
        """`name` with fresh index letters (`w_{a b}`: apart, as a program with named
        indices would read `w_ab` as the one index ab), or bare for a scalar; and the
        letters as a subscript (`{a b}`, or "" for a scalar)."""
        rank = len(self.model.parameters[name].shape)
        letters = [c for c in "abcdefghkmpqrstuvαβγδεζ" if c not in avoid][:rank]
        avoid.update(letters)
        subscript = f"{{{' '.join(letters)}}}" if letters else ""
        return (f"{name}_{subscript}" if letters else name), subscript

    def _gradients(self, used: set[str]) -> dict[str, tuple[Program, str]]:
        """Each parameter's derivative program, and the letters its derivative carries.
        A program of one line differentiates to its derivative line alone: the line goes
        before it, so that the derivative is still read as a function of the parameters
        (differentiated again, a parameter it no longer reads gives zeros, not an error)."""
        equations = self.model.program.equations
        upto = equations[: next(k for k, eq in enumerate(equations) if eq.lhs.name == self.model.loss) + 1]
        out = {}
        for p in self._names():
            wrt, letters = self._wrt(p, used)
            derivative = diff(Program(upto), wrt)
            out[p] = (derivative if isinstance(derivative, Program) else Program(upto + (derivative,))), letters
        return out

    def _letters(self) -> set[str]:
        return set().union(*(letters_in(eq) for eq in self.model.program.equations))

    def hessian_blocks(self) -> dict[tuple[str, str], Callable]:
        """The compiled ∂²L/∂P∂Q for every pair of parameters (built once)."""
        if self._blocks is None:
            used = self._letters()
            firsts = self._gradients(used)
            blocks = {}
            for p, (first, _) in firsts.items():
                for q in self._names():
                    blocks[p, q] = compile_program(diff(first, self._wrt(q, set(used))[0]))
            self._blocks = blocks
        return self._blocks

    def hessian(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """The joint Hessian as a d×d matrix, parameters in the model's order, each
        flattened in C order."""
        arrays = {**self.data, **params}
        sizes = [int(np.prod(self.model.parameters[p].shape, dtype=int)) for p in self._names()]
        rows = []
        for p, m in zip(self._names(), sizes):
            rows.append([np.reshape(np.asarray(self.hessian_blocks()[p, q](arrays)[0], dtype=float), (m, k))
                         for q, k in zip(self._names(), sizes)])
        h = np.block(rows) if rows else np.zeros((0, 0))
        return (h + h.T) / 2

    def hessian_vector(self, params: Mapping[str, np.ndarray], v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """H v, exactly: the gradient of g·v (v held fixed)."""
        plan = self._hvp_plan()
        return plan({**self.data, **params, **{self._vectors[p]: v[p] for p in self._names()}})[1]

    def _hvp_plan(self) -> Callable:
        """The compiled gradient of g·v: every parameter's derivative lines, then the line
        GV = L_{,(ab)}[w] Vw_ab + …, differentiated by the parameters (built once)."""
        if self._hvp is None:
            programs = self._gradients(self._letters())
            taken = {t for eq in self.model.program.equations for t in _names_in(eq)}
            self._vectors = {p: unused_name(f"V{p}", taken) for p in self._names()}
            equations, seen = [], set()
            terms = []
            for p, (program, letters) in programs.items():
                for eq in program.equations:
                    if str(eq.lhs) not in seen:
                        seen.add(str(eq.lhs))
                        equations.append(eq)
                gradient = program.equations[-1].lhs
                vector = f"{self._vectors[p]}_{letters}" if letters else self._vectors[p]
                terms.append(f"{gradient} {vector}")
            gv = unused_name("GV", taken)
            equations.append(parse(f"{gv} = " + " + ".join(terms)))
            self._hvp = compile_program(Program(tuple(equations)), wrt=self._names(), of=gv)
        return self._hvp

    # --- the step
    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        if self.model is None:
            raise TrainingError("newton needs the model and the full data set: train it with Trainer.fit")
        names = self._names()
        g = _flat(grads, names)
        if not g.any():  # at a stationary point already: nothing to solve
            self.last = {"damping": self.damping, "step": 0.0, "solver": "none"}
            return
        if g.size <= self.dense_up_to:
            (direction, lam), how = _damped_solve(self.hessian(params), g, self.damping), "dense"
        else:
            direction, lam, how = self._cg(params, g), self.damping, "cg"
        if not np.all(np.isfinite(direction)) or direction @ g >= 0:  # no descent: the gradient's own
            direction, how = -g, how + ", gradient"
        loss = self._loss(params)
        slope = float(direction @ g)
        t = self.lr
        for _ in range(HALVINGS):
            trial = _unflat(_flat(params, names) + t * direction, params, names)
            value = self._loss(trial)
            if value <= loss + ARMIJO * t * slope:  # False for NaN: a step into overflow is halved
                params.update(trial)
                break
            t /= 2
        else:
            t = 0.0
        self.last = {"damping": lam, "step": t, "solver": how}

    def _loss(self, params) -> float:
        value = float(self.model.evaluate(self.model.loss, params, self.data))
        return value if math.isfinite(value) else math.inf

    def _cg(self, params, g: np.ndarray) -> np.ndarray:
        """Conjugate gradients on (H + λI) Δ = −g with Hessian–vector products, stopped at
        negative curvature (the steepest descent if met at once) or a residual 1e-10·|g|."""
        names = self._names()
        x = np.zeros_like(g)
        r = -g.copy()
        d = r.copy()
        for _ in range(max(10, 2 * g.size)):
            hd = _flat(self.hessian_vector(params, _unflat(d, params, names)), names) + self.damping * d
            curvature = float(d @ hd)
            if curvature <= 0:
                return x if x.any() else -g
            alpha = float(r @ r) / curvature
            x = x + alpha * d
            r_new = r - alpha * hd
            if np.linalg.norm(r_new) <= 1e-10 * np.linalg.norm(g):
                break
            d = r_new + float(r_new @ r_new) / float(r @ r) * d
            r = r_new
        return x


def _damped_solve(h: np.ndarray, g: np.ndarray, damping: float):
    """Δ from (H + λI) Δ = −g; returns (Δ, λ). λ is `damping` where H is positive
    definite; else it mirrors H's most negative curvature (λ = −2 λ_min, so that H + λI
    curves at least as much upwards as H did downwards): a step of sensible length down
    a saddle or a ridge, where λ barely past −λ_min would throw the parameters far."""
    if not h.size:
        return -g, damping
    scale = max(float(np.max(np.abs(h))), 1e-300)
    low = float(np.linalg.eigvalsh(h)[0])
    lam = damping if low > 1e-12 * scale else max(damping, -2 * low, 1e-10 * scale)
    try:
        factor = np.linalg.cholesky(h + lam * np.eye(len(h)))
    except np.linalg.LinAlgError:  # rounding at the edge: the gradient's own direction
        return -g, math.inf
    return np.linalg.solve(factor.T, np.linalg.solve(factor, -g)), lam


class LBFGS(FullBatch):
    """L-BFGS-B from SciPy on the compiled loss and gradient; each SciPy iteration is an
    epoch of the run. `memory` is the number of curvature pairs kept (SciPy's maxcor),
    `tol` the gradient size at which it stops (its gtol)."""

    name = "lbfgs"

    def __init__(self, memory: float = 10, tol: float = 1e-10):
        super().__init__()
        check_settings(self.name, SETTINGS, memory=memory, tol=tol)
        self.memory, self.tol = int(memory), tol

    def step(self, params, grads) -> None:  # the loop hands the whole run to `fit`
        raise TrainingError("lbfgs runs its own iterations: train it with Trainer.fit")

    def fit(self, trainer: Trainer, train, epochs: int, test=None, params=None, resume=None,
            progress=None) -> Result:
        """The run: SciPy's iterations as epochs, history, progress and checkpoints as the
        loop keeps them, the last good parameters on a non-finite loss or Ctrl-C."""
        minimize = _scipy_minimize()
        model = trainer.model
        if not (is_whole(epochs) and epochs >= 0):
            raise TrainingError(f"epochs must be a whole number, 0 or more, got {epochs!r}", about="epochs")
        rng = np.random.default_rng(trainer.seed)
        history: list[dict[str, float]] = []
        start = 0
        params = {k: np.asarray(v, dtype=float) for k, v in (params or model.init_params(trainer.seed)).items()}
        if resume:
            params, start, history, rng = read_checkpoint(resume, self, model)
            if epochs < start:
                raise TrainingError(f"the checkpoint {resume} has already trained {start} epochs, more than the "
                                    f"{epochs} asked for in all", about="epochs")
        if trainer.backend != "numpy":
            self.run_on(None)
        given = {k: train[k] for k in model.data if k in train}
        if not given:
            raise TrainingError(f"no data given for {', '.join(model.data) or 'the model'}", about="data")
        n = sample_count(given, "the training data")
        self.bind(model, given, trainer.batch_size or n, n)
        trainer._preflight(params, self.data, test)
        names = list(model.parameters)
        good = dict(params)
        stopped, message, raised = "done", "", None
        begun = time.perf_counter()

        def loss_and_gradient(x):
            loss, grads = model.loss_and_grads(_unflat(x, params, names), self.data)
            loss = float(loss)
            g = _flat(grads, names)
            if not (math.isfinite(loss) and np.all(np.isfinite(g))):
                return math.inf, np.zeros_like(x)  # SciPy's line search backs off from it
            return loss, g

        def iteration(intermediate_result):
            nonlocal good
            good = _unflat(intermediate_result.x, params, names)
            epoch = start + len(history) - len(before) + 1
            record = {"epoch": epoch, "loss": float(intermediate_result.fun)}
            record.update(trainer.scores(good, self.data, "train"))
            if test:
                record.update(trainer.scores(good, test, "test"))
            history.append(record)
            if trainer.checkpoint:
                trainer._save_or_fail(good, epoch, history, rng)
            if progress:
                call_progress(progress, epoch, record)

        before = list(history)
        try:
            with np.errstate(all="ignore"):
                if epochs > start:
                    loss0, _ = loss_and_gradient(_flat(params, names))
                    if not math.isfinite(loss0):
                        raise _NonFinite
                    result = minimize(loss_and_gradient, _flat(params, names), jac=True, method="L-BFGS-B",
                                      callback=iteration,
                                      options={"maxiter": epochs - start, "maxcor": self.memory,
                                               "gtol": self.tol, "ftol": 0.0})
                    if math.isfinite(result.fun) and len(history) > len(before):
                        good = _unflat(result.x, params, names)
        except _NonFinite:
            stopped, message = "nan", "the loss is not finite at the start; the parameters are kept"
        except KeyboardInterrupt:
            stopped, message = "interrupted", "interrupted: the parameters of the last finished epoch are kept"
        except ProgressRaised as err:
            raised = err.error
            stopped, message = "progress", err.message
        done = history[-1]["epoch"] if history else start
        if stopped != "done" and trainer.checkpoint:
            trainer._save_or_fail(good, done, history, rng)
        result = Result(good, history, done, stopped, message, time.perf_counter() - begun)
        if raised is not None:
            raise carrying(raised, result)
        return result


class _NonFinite(Exception):
    pass


def _scipy_minimize():
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise TrainingError("optimizer lbfgs needs SciPy: pip install 'indexcalc[scipy]'",
                            about="optimizer") from None
    return minimize


def _flat(arrays: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(arrays[k], dtype=float)) for k in names]) if names else np.zeros(0)


def _unflat(x: np.ndarray, like: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for k in names:
        shape = np.shape(like[k])
        size = int(np.prod(shape, dtype=int))
        out[k] = np.reshape(x[at : at + size], shape).copy()
        at += size
    return out


def _names_in(eq: Equation) -> set[str]:
    return {t.name for t in eq.walk() if isinstance(t, Tensor)}
