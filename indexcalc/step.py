"""One generated training step on NumPy: the plan's loss and gradients, a finiteness
check, and the optimiser's update written into preallocated arrays, as one Python
function per batch length.

Why: on a small model the step's own arithmetic is a few microseconds, and what a step
cost was everything around it: the compiled call's wrapper, a dict of new arrays per
update, one ufunc call per parameter per operation of the update, a finiteness check per
gradient. Here the plan's lines (`compile.lower`, `emit.body_lines`) and the update are
one function; the parameters, gradients and moments live end to end in flat arrays, so
that the update is a dozen ufunc calls whatever the number of parameters; the plan's
constant steps are computed once (`hoisted`), and its elementwise operators and σ write
into an operand no later step reads (`emit.in_place`, as the compiled call's plan does).

The optimisers' rule that a step never writes into old arrays kept the last good
parameters on NaN. The step keeps them another way: it checks the loss and every
gradient first (one `vdot` of the flat gradients with zeros: NaN for any entry not
finite, never an overflow) and writes nothing when one is not finite; and the new values
go into a second parameter array, the two swapping each step, so that the values before
the last update stay intact (`before`), as the unfused loop keeps them.

The update's arithmetic is the optimisers' own, operation for operation, so a fused run
gives bit for bit the numbers of the unfused one (same seed, same batches).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from .compile import lower
from .model import Model
from .first_order import SGD, Adam, Momentum
from .emit import NAMESPACE, body_lines, in_place, variables

# Each optimiser's update on the flat arrays (every parameter's values end to end, so
# that a step is a dozen ufunc calls however many parameters there are): `_G` the
# gradients, `_W` the parameters, `_M`/`_V` the moments, `_B`/`_C` scratch; the new values
# go into `_N`, the other parameter array, so that those before the step stay intact (the
# last good ones, should the next step be NaN). The same operations, in the same order,
# as first_order.py's: the same numbers, bit for bit.
UPDATES: dict[type, str] = {
    SGD: "multiply(_G, lr, out=_B)",
    Momentum: "multiply(_V, beta, out=_V); add(_V, _G, out=_V); multiply(_V, lr, out=_B)",
    Adam: "multiply(_M, beta1, out=_M); multiply(_G, 1 - beta1, out=_B); add(_M, _B, out=_M); "
          "multiply(_G, 1 - beta2, out=_B); multiply(_B, _G, out=_B); multiply(_V, beta2, out=_V); "
          "add(_V, _B, out=_V); divide(_V, second, out=_C); sqrt(_C, out=_C); add(_C, eps, out=_C); "
          "divide(_M, first, out=_B); multiply(_B, lr, out=_B); divide(_B, _C, out=_B)",
}


def hoisted(steps, namespace: dict) -> list:
    """The plan's steps for a step function run many times: a step that reads no variable
    and no input (`np.full(...)`) computed once, into `namespace`, its step reading the
    value by name (a name, not a new array: `emit.in_place` never writes into it)."""
    out = []
    for k, st in enumerate(steps):
        if not variables(st.code) and "arrays[" not in st.code and st.code.startswith("np.full("):
            name = f"_k{k}"
            namespace[name] = eval(st.code, namespace)
            st = dataclasses.replace(st, code=name)
        out.append(st)
    return out


def fusable(model: Model, optimizer, params: Mapping) -> bool:
    """Whether a run can take the fused step: one of the built-in optimisers (not a
    subclass with its own update), float64 NumPy parameters, and the model's own loss
    and gradients (a `loss_and_grads` replaced on the model or overridden by a subclass,
    a wrapper of one's own, is called as it is)."""
    own = "loss_and_grads" not in vars(model) and type(model).loss_and_grads is Model.loss_and_grads
    return type(optimizer) in UPDATES and own and all(
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
        self._moved = False  # whether a step has updated the parameters

    def own(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parameters and the optimiser's moments copied into the step's flat arrays
        (the dict returned and `optimizer.state` hold views of them): a caller's arrays
        are never changed."""
        self._steps.clear()  # a new run: its own data, its own batch shapes
        self._moved = False
        names = list(params)
        shapes = [np.shape(params[k]) for k in names]
        ends = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

        def views(flat):
            return {k: flat[a:b].reshape(s) for k, s, a, b in zip(names, shapes, ends, ends[1:])}

        total = int(ends[-1])
        self._views_of = views
        self.flats = [np.empty(total), np.empty(total)]  # the parameters, now and next
        self.views = [views(f) for f in self.flats]
        self.current = 0
        for k in names:
            np.copyto(self.views[0][k], params[k])
        self.grads = np.zeros(total)  # a parameter the lines no longer read keeps its zeros
        self.grad_views = views(self.grads)
        self.scratch = {"_G": self.grads, "_B": np.empty(total), "_C": np.empty(total), "_Z": np.zeros(total)}
        state = self.optimizer.state
        for moment in type(self.optimizer).moments:
            flat = self.scratch[f"_{moment.upper()}"] = np.zeros(total)
            for k, view in views(flat).items():
                if f"{moment}.{k}" in state:
                    np.copyto(view, state[f"{moment}.{k}"])
                state[f"{moment}.{k}"] = view
        return dict(self.views[0])

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
        now, new = self.flats[self.current], self.flats[1 - self.current]
        if type(opt) is Adam:  # the count on the host, as Adam.scalars keeps it
            t = int(opt.state.get("t", np.zeros(())) + 1)
            settings = (opt.lr, opt.beta1, opt.beta2, opt.eps, 1 - opt.beta1**t, 1 - opt.beta2**t)
            loss, done = run(params, batch, now, new, settings)
            if done:
                opt.state["t"] = np.asarray(t)
        else:
            loss, done = run(params, batch, now, new, (opt.lr, getattr(opt, "beta", 0.0)))
        if done:
            self.current = 1 - self.current
            params.update(self.views[self.current])
            self._moved = True
        return loss, done

    def before(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parameters before the last update (those whose loss and gradients were
        finite when `params`' are not), as the unfused loop keeps them."""
        return dict(self.views[1 - self.current]) if self._moved else params

    def snapshot(self) -> tuple:
        """The parameters and moments as they are now, one flat copy each (an epoch's end
        keeps one for Ctrl-C: a copy per parameter and moment cost a tenth of an XOR step)."""
        moments = [self.scratch[f"_{m.upper()}"].copy() for m in type(self.optimizer).moments]
        return self.flats[self.current].copy(), moments, self.optimizer.state.get("t")

    def unpack(self, snapshot: tuple) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """A snapshot as the parameters and the optimiser state (copies, the run's own
        arrays untouched)."""
        flat, moments, t = snapshot
        state = {f"{m}.{k}": v for m, f in zip(type(self.optimizer).moments, moments)
                 for k, v in self._views_of(f.copy()).items()}
        if t is not None:
            state["t"] = np.array(t)
        return self._views_of(flat.copy()), state

    def source(self, params, batch) -> str:
        """The generated function's text, for a batch of these shapes."""
        return self._generate(params, batch).source

    def _generate(self, params, batch):
        compiled = self.compiled
        arrays = {**batch, **params}
        compiled(arrays)  # plans this signature (and checks the arrays as a call does)
        plan = compiled._last
        lowering, value, grads = lower(compiled, plan.shapes, plan.types, plan.known)
        namespace = {**NAMESPACE, **lowering.constants, **self.scratch, "vdot": np.vdot, "isfinite": np.isfinite}
        for name in ("multiply", "add", "subtract", "divide", "sqrt", "copyto"):
            namespace[name] = getattr(np, name)
        opt = type(self.optimizer)
        settings = "lr, beta1, beta2, eps, first, second" if opt is Adam else "lr, beta"
        lines = ["def step(params, batch, _W, _N, settings):", f"    {settings} = settings"]
        lines.append("    arrays = {**batch, **params}")
        outputs = {value, *grads.values()}
        steps = lowering.steps
        steps = hoisted(steps, namespace)
        if all(np.dtype(t) == np.float64 for t in plan.types):  # in place keeps the operand's type
            steps = in_place(steps, ", ".join(outputs))
        lines += body_lines(steps, ", ".join(outputs))
        for i, (name, g) in enumerate(grads.items()):
            namespace[f"_g{i}"] = self.grad_views[name]
            lines.append(f"    copyto(_g{i}, {g})")
        lines.append(f"    loss = float({value})")
        lines.append("    if not isfinite(loss + vdot(_G, _Z)):  # NaN for any entry not finite")
        lines.append("        return loss, False")
        lines.append(f"    {UPDATES[opt]}")
        lines.append("    subtract(_W, _B, out=_N)")
        lines.append("    return loss, True")
        source = "\n".join(lines) + "\n"
        exec(compile(source, "<indexcalc step>", "exec"), namespace)
        run = namespace["step"]  # no errstate of its own (µs a call): Trainer.fit's loop sets it
        run.source = source
        return run
