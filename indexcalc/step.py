"""One generated training step on NumPy: the plan's loss and gradients, a finiteness
check, and the optimiser's update written into the parameters and its state in place,
as one Python function per batch shape.

Why: on a small model the step's own arithmetic is a few microseconds, and what a step
cost was everything around it (the compiled call's wrapper, a dict of new arrays per
update, Adam's temporaries, a finiteness check per gradient). Here the plan's lines
(`compile.lower`, `plan.body_lines`) and the update are one function, the update's
temporaries are preallocated buffers, and the check is one comparison.

The optimisers' rule that a step never writes into old arrays kept the last good
parameters on NaN; in place, the step keeps them another way: it checks the loss and
every gradient (one `vdot` with zeros each: NaN for any non-finite entry, never an
overflow) before it writes anything, and skips the update when one is not finite. The
loop copies the parameters and state once an epoch, for Ctrl-C.

The update's arithmetic is the optimisers' own, operation for operation, so a fused run
gives bit for bit the numbers of the unfused one (same seed, same batches).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .compile import lower
from .model import Model
from .optimisers import SGD, Adam, Momentum
from .plan import NAMESPACE, body_lines

# The new value goes into the parameter's spare array, which then swaps with it: the
# values before the step stay intact (the last good ones, should the next step be NaN).
WRITE = "_new = spare[{n!r}]; subtract({w}, {b}, out=_new); spare[{n!r}] = {w}; params[{n!r}] = _new"

# Each optimiser's update, per parameter, in three phases so that no parameter is written
# before every gradient has been read (a gradient may be another parameter's array):
# (moments, step, write). `{g}` the gradient, `{w}` the parameter, `{m}`/`{v}` the moments,
# `{b}` the step buffer. The same operations, in the same order, as optimisers.py's.
UPDATES: dict[type, tuple[str, str, str]] = {
    SGD: ("", "multiply({g}, lr, out={b})", WRITE),
    Momentum: ("multiply({v}, beta, out={v}); add({v}, {g}, out={v})",
               "multiply({v}, lr, out={b})", WRITE),
    Adam: ("multiply({m}, beta1, out={m}); multiply({g}, 1 - beta1, out={b}); add({m}, {b}, out={m}); "
           "multiply({g}, 1 - beta2, out={b}); multiply({b}, {g}, out={b}); multiply({v}, beta2, out={v}); "
           "add({v}, {b}, out={v})",
           "divide({v}, second, out={c}); sqrt({c}, out={c}); add({c}, eps, out={c}); "
           "divide({m}, first, out={b}); multiply({b}, lr, out={b}); divide({b}, {c}, out={b})",
           WRITE),
}


def fusable(model: Model, optimizer, params: Mapping) -> bool:
    """Whether a run can take the fused step: one of the built-in optimisers (not a
    subclass with its own update), float64 NumPy parameters, and the model's own loss
    and gradients (a `loss_and_grads` replaced on the model, a wrapper of one's own, is
    called as it is)."""
    return type(optimizer) in UPDATES and "loss_and_grads" not in vars(model) and all(
        type(p) is np.ndarray and p.dtype == np.float64 for p in params.values())


class FusedStep:
    """`step(params, batch)`: one training step in place, returning the loss and whether
    the update was made (False: a non-finite loss or gradient, nothing written).

    `params` must be this step's own arrays (`own`), updated in place, and the optimiser's
    `state` is kept as preallocated arrays in `optimizer.state`. The learning rate and
    the optimiser's settings are read at every call, so a schedule may change them.
    Call it under `np.errstate(all="ignore")`, as Trainer.fit's loop does: a NaN is an
    answer here, reported by the loop, not a warning."""

    def __init__(self, model: Model, optimizer: SGD):
        self.model, self.optimizer = model, optimizer
        self.compiled = model.gradient
        self._steps: dict[int, object] = {}  # by batch length
        self.spare: dict[str, np.ndarray] = {}  # each parameter's other array (see WRITE)
        self._moved = False  # whether a step has updated the parameters (the spares hold values)

    def own(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copies of the parameters and the optimiser's moments that the step may write
        into: a caller's arrays are never changed."""
        params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self._steps.clear()  # a new run: its own data, its own batch shapes
        self.spare.clear()  # in place: the generated steps hold this dict
        self.spare.update({k: np.empty_like(v) for k, v in params.items()})
        self._moved = False
        state = self.optimizer.state
        for name in self.model.parameters:
            for moment in type(self.optimizer).moments:
                key = f"{moment}.{name}"
                state[key] = np.array(state[key], dtype=np.float64) if key in state else np.zeros_like(params[name])
        return params

    @staticmethod
    def data(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The data as the compiled call reads it (floats), converted once, not per batch."""
        return {k: v if v.dtype.kind == "f" else v.astype(np.float64) for k, v in
                ((k, np.asarray(v)) for k, v in arrays.items())}

    def __call__(self, params: dict[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> tuple[float, bool]:
        key = len(next(iter(batch.values())))  # a run's batches differ only in their length
        run = self._steps.get(key)
        if run is None:
            run = self._steps[key] = self._generate(params, batch)
        opt = self.optimizer
        if type(opt) is Adam:  # the count on the host, as Adam.scalars keeps it
            t = int(opt.state.get("t", np.zeros(())) + 1)
            settings = (opt.lr, opt.beta1, opt.beta2, opt.eps, 1 - opt.beta1**t, 1 - opt.beta2**t)
            loss, done = run(params, batch, opt.state, settings)
            if done:
                opt.state["t"] = np.asarray(t)
        else:
            loss, done = run(params, batch, opt.state, (opt.lr, getattr(opt, "beta", 0.0)))
        self._moved = self._moved or done
        return loss, done

    def before(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parameters before the last update (those whose loss and gradients were
        finite when `params`' are not), as the unfused loop keeps them."""
        return dict(self.spare) if self._moved else params

    def source(self, params, batch) -> str:
        """The generated function's text, for a batch of these shapes."""
        return self._generate(params, batch).source

    def _generate(self, params, batch):
        compiled = self.compiled
        arrays = {**batch, **params}
        compiled(arrays)  # plans this signature (and checks the arrays as a call does)
        plan = compiled._last
        lowering, value, grads = lower(compiled, plan.shapes, plan.types, plan.known)
        namespace = {"spare": self.spare, **NAMESPACE, **lowering.constants, "vdot": np.vdot, "isfinite": np.isfinite}
        for name in ("multiply", "add", "subtract", "divide", "sqrt"):
            namespace[name] = getattr(np, name)
        opt = type(self.optimizer)
        moments, stepping, writing = UPDATES[opt]
        settings = "lr, beta1, beta2, eps, first, second" if opt is Adam else "lr, beta"
        lines = [f"def step(params, batch, state, settings):", f"    {settings} = settings"]
        lines.append("    arrays = {**batch, **params}")
        lines += body_lines(lowering.steps, ", ".join([value, *grads.values()]))
        names = list(self.model.parameters)
        check = ["float(" + value + ")"]
        fields = {}
        for i, name in enumerate(names):
            g = grads.get(name)
            if g is None:  # a parameter the lines no longer read: a zero gradient, as a call gives
                g = f"_zero{i}"
                namespace[g] = np.zeros_like(params[name])
            namespace[f"_z{i}"] = np.zeros(np.shape(params[name]))
            check.append(f"vdot({g}, _z{i})")
            for buf in ("b", "c"):
                namespace[f"_{buf}{i}"] = np.empty_like(params[name])
            fields[name] = dict(n=name, g=g, w=f"arrays[{name!r}]", b=f"_b{i}", c=f"_c{i}",
                                m=f"state['m.{name}']", v=f"state['v.{name}']")
        lines.append(f"    loss = {check[0]}")
        lines.append(f"    if not isfinite(loss + {' + '.join(check[1:]) or '0.0'}):")
        lines.append("        return loss, False")
        for phase in (moments, stepping, writing):
            if phase:
                lines += [f"    {phase.format(**fields[name])}" for name in names]
        lines.append("    return loss, True")
        source = "\n".join(lines) + "\n"
        exec(compile(source, "<indexcalc step>", "exec"), namespace)
        run = namespace["step"]  # no errstate of its own (µs a call): Trainer.fit's loop sets it
        run.source = source
        return run
