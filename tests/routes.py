"""Every route from a program to its numbers, compared (issue 8: one route, one answer).

`check(case)` runs one `RouteCase` (tests/strategies.py) through every route the toolkit
offers and returns what went wrong, as a list of `Problem`s (empty: all routes agree).
Both tests/test_routes.py and scripts/soak.py call it, so the property the soak runs a
hundred thousand times is exactly the one CI runs a hundred times.

The routes, for the value of the program:
    evaluate, evaluate_loops, compile (no wrt), evaluate(simplify), evaluate(parse(str)),
    evaluate(parse(pretty)) (the Unicode form: σ, δ, Σ, ŷ)
for its derivative d = diff(p, wrt):
    evaluate(d), evaluate(simplify(d)), evaluate(diff inline), evaluate_loops(d),
    compile(d), compile(p, wrt) (a scalar target), evaluate(parse(str(x))) for every
    derivative x, evaluate(parse(pretty(simplify(d)))) (with ∂C/∂b), and central finite differences of evaluate(p): the ground truth
and for the Hessian h = diff(d, wrt2):
    evaluate(h), compile(h), evaluate(parse(str(h))), and finite differences of a
    first-derivative route that agreed with fd: the compiled gradient, else compile(d)
    or evaluate(d), so that one broken route is not blamed on the Hessian.

Every route is compared with the finite differences (loosely: they are approximate) and,
where evaluate(d) agrees with them, with evaluate(d) tightly: a disagreement too small for
finite differences to see is still a disagreement. Both tolerances are relative to the
values' magnitude and, for a derivative, to the function's: a derivative's roundoff grows
with the function's terms (a saturated causal softmax, whose Hessian is zero up to 1e-8,
has Hessian routes that differ by 1e-8: the soak's one flag on seed 10600). Any exception
is a problem: the programs are valid, so even an `IndexCalcError` is one (`crash` marks
the others).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal
import time
import traceback

import numpy as np

import indexcalc as ic
from indexcalc.wrt import written_through

EXACT_RTOL = 1e-6
EXACT_ATOL = 1e-9  # times the magnitude of the values compared (and of the function, for a derivative)
FD_STEP = 1e-6
FD_RTOL = 1e-4
FD_ATOL = 1e-6  # times the magnitude of the function and of its derivative
LOOPS_LIMIT = 100  # the largest loops_cost(case) the explicit loops are run for


class RouteTimeout(Exception):
    """A route ran past its time limit (the soak's --timeout): a hang is a finding too."""


def _trace(err: Exception) -> str:
    """The last frames of `err`'s traceback; its message alone where Python 3.11 gave a
    frame no line number (an exception raised by a signal handler can have one), on which
    the traceback module fails."""
    try:
        return "".join(traceback.format_exception(err, limit=-3))
    except Exception:  # noqa: BLE001 - the report must not crash on its own formatting
        return f"{type(err).__name__}: {err}"


def _alarm(signum, frame):
    raise RouteTimeout("the route ran past its time limit")


@dataclasses.dataclass(frozen=True)
class Problem:
    """`route` disagreed with `against` by `detail` (max difference), or raised
    (`against` is "raised", `detail` the traceback; `crash` if not an IndexCalcError)."""

    route: str
    against: str
    detail: str
    crash: bool = False
    error: str = ""  # the exception's type and the first line of its message

    def __str__(self) -> str:
        if self.against == "raised":
            kind = "CRASH" if self.crash else "error"
            return f"{self.route}: {kind}\n{self.detail}"
        return f"{self.route} vs {self.against}: {self.detail}"

    def signature(self) -> str:
        """What makes two problems the same class: the routes, or the exception's type."""
        if self.against == "raised":
            return f"{self.route} raises {self.error.split(':')[0]}"
        return f"{self.route} vs {self.against}"


def finite_difference(f, arrays: dict, name: str) -> np.ndarray:
    """Central differences of f(arrays) by every entry of arrays[name]; axes: f's, then
    the array's. A Python scalar is perturbed as a Python float, as a user would pass it."""
    base = np.array(arrays[name], dtype=np.float64)
    python_scalar = not isinstance(arrays[name], np.ndarray)
    columns = []
    for idx in np.ndindex(base.shape):
        values = []
        for sign in (1, -1):
            moved = base.copy()
            moved[idx] += sign * FD_STEP
            values.append(np.asarray(f({**arrays, name: float(moved) if python_scalar else moved}), dtype=np.float64))
        columns.append((values[0] - values[1]) / (2 * FD_STEP))
    return np.moveaxis(np.array(columns), 0, -1).reshape(columns[0].shape + base.shape)


def wrt_name(wrt: str) -> str:
    """`"T0_ab"` → `"T0"`; a bare name as it is (names may contain `_`: `w_new_gh`)."""
    node = ic.parse(wrt)
    return node.name if isinstance(node, ic.Tensor) else wrt


class _Runner:
    """Runs the routes, keeping each value (or the problem it raised) under its name."""

    def __init__(self, timeout: float | None = None):
        self.values: dict[str, np.ndarray] = {}
        self.problems: list[Problem] = []
        self.seconds: dict[str, float] = {}
        self.timeout = timeout

    def run(self, route: str, compute):
        # CPU seconds, as the timeout counts them: a soak starved by other work (a wall-clock
        # 120 s for a Hessian that compiles in 1.2) reports no slow route that is not
        start = time.process_time()
        if self.timeout:  # repeated every half second: a garbage-collector callback may swallow one
            signal.setitimer(signal.ITIMER_PROF, self.timeout, 0.5)
        try:
            value = compute()
        except Exception as err:  # noqa: BLE001 - every exception is a finding here
            crash = not isinstance(err, ic.IndexCalcError)
            error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            self.problems.append(Problem(route, "raised", _trace(err), crash, error))
            return None
        finally:
            if self.timeout:
                signal.setitimer(signal.ITIMER_PROF, 0)
            self.seconds[route] = time.process_time() - start
        self.values[route] = value
        return value

    def compare(self, route: str, against: str, rtol: float, atol: float, scale: float = 1.0):
        """Record a problem unless the two values agree; a missing value (its route raised,
        or did not run) is no disagreement."""
        if route not in self.values or against not in self.values:
            return True
        got, want = np.asarray(self.values[route]), np.asarray(self.values[against])
        if got.shape != want.shape:
            self.problems.append(Problem(route, against, f"shape {got.shape}, expected {want.shape}"))
            return False
        if np.iscomplexobj(got) or np.iscomplexobj(want):
            self.problems.append(Problem(route, against, f"complex values: {got!r} vs {want!r}"))
            return False
        got, want = got.astype(np.float64), want.astype(np.float64)
        magnitude = max(scale, float(np.max(np.abs(want), initial=0.0)))
        bad = ~np.isclose(got, want, rtol=rtol, atol=atol * magnitude, equal_nan=False)
        if np.any(bad):
            worst = float(np.max(np.abs(got - want)[bad]))  # nan where either is not finite
            self.problems.append(Problem(route, against, f"max |difference| {worst:.3g}, values up to {magnitude:.3g}"))
            return False
        return True

    def excuse_if_zero(self, route: str, fd: str, scale: float) -> bool:
        """Forgive `route` an IndexCalcError when the derivative it refused is zero: DESIGN
        refuses a wrt the formula does not depend on ("a typo is far likelier than a wish
        for zero"), so the Hessian of a function linear in the wrt is an error, not 0."""
        zero = fd in self.values and np.allclose(self.values[fd], 0.0, rtol=0, atol=FD_ATOL * scale)
        refused = [p for p in self.problems if p.route == route and p.against == "raised" and not p.crash]
        if zero and refused:
            self.problems = [p for p in self.problems if p not in refused]
        return zero and bool(refused)

    def excuse_too_large(self, route: str) -> None:
        """Forgive `route` an InlineTooLargeError: inlining a chain of derivative lines
        multiplies their terms, and past inline.INLINE_LIMIT nodes it refuses, most often before
        the work, what would take minutes to build and simplify; the chain form's routes give
        the numbers (a soak of chained MAML steps timed out here before the limit)."""
        from indexcalc.errors import InlineTooLargeError

        self.problems = [p for p in self.problems
                         if not (p.route == route and p.against == "raised" and InlineTooLargeError.__name__ in p.error)]

    def magnitude(self, *routes) -> float:
        return max([1.0] + [float(np.max(np.abs(self.values[r]), initial=0.0)) for r in routes if r in self.values])


def loops_cost(case) -> int:
    """A rough measure of the explicit loops' work on the derivative: the largest input
    times the wrt's size, once more the largest input for a program with derivative lines
    (the loops work those out too). Measured: 100 is about a quarter of a second."""
    biggest = max([math.prod(shape) for shape, _ in case.specs.values()] or [1])
    wrt_size = math.prod(case.specs[wrt_name(case.wrt)][0]) if case.wrt else 1
    return biggest * wrt_size * (biggest if "[" in case.text else 1)


def assert_routes_agree(case, timeout: float | None = None) -> None:
    """`check(case)` as a test asserts it: no problem, or the case and every problem shown."""
    problems = check(case, timeout=timeout)
    assert not problems, f"{case}\n\n" + "\n\n".join(map(str, problems))


def check(case, seconds: dict | None = None, timeout: float | None = None) -> list[Problem]:
    """All routes of `case`, compared; the problems found (none when all agree). The time
    each route took (CPU seconds) goes into `seconds`, if given (the soak reports the slow ones); with a
    `timeout`, a route is stopped after that many seconds of the process's CPU time (by
    SIGPROF: main thread only). CPU time, not the clock's: a soak paused (SIGSTOP, to run a
    benchmark beside it) or starved by other jobs is not a hang."""
    r = _Runner(timeout)
    if timeout:
        previous = signal.signal(signal.SIGPROF, _alarm)
    try:
        return _check(case, r)
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
        if seconds is not None:
            seconds.update(r.seconds)


def _check(case, r: _Runner) -> list[Problem]:
    arrays = case.arrays()
    small = loops_cost(case) <= LOOPS_LIMIT
    _value(case.text, arrays, r, small)
    if case.wrt is not None:
        first = _first_derivative(case, arrays, r, small)
        if first is not None and case.wrt2 is not None:
            _second_derivative(case, arrays, r, *first)
    return r.problems


def _value(text, arrays, r: _Runner, small: bool):
    r.run("evaluate", lambda: ic.evaluate(text, arrays))
    if small:
        r.run("evaluate_loops", lambda: ic.evaluate_loops(text, arrays))
    r.run("compile", lambda: ic.compile(text)(arrays)[0])
    r.run("evaluate(simplify)", lambda: ic.evaluate(ic.simplify(ic.parse(text)), arrays))
    r.run("evaluate(parse(str))", lambda: ic.evaluate(ic.parse(str(ic.parse(text))), arrays))
    r.run("evaluate(parse(pretty))", lambda: ic.evaluate(ic.parse(ic.parse(text).pretty()), arrays))
    if "evaluate" in r.values and not np.all(np.isfinite(r.values["evaluate"])):
        r.problems.append(Problem("evaluate", "finite", "not finite: the generator left the safe domain"))
    for route in ("evaluate_loops", "compile", "evaluate(simplify)", "evaluate(parse(str))", "evaluate(parse(pretty))"):
        r.compare(route, "evaluate", EXACT_RTOL, EXACT_ATOL)


def _first_derivative(case, arrays, r: _Runner, small: bool):
    """The derivative by every route; returns (d, a first-derivative function of the
    arrays, its name) for the Hessian, the function one that agreed with fd if any did."""
    text, wrt, name = case.text, case.wrt, wrt_name(case.wrt)
    d = r.run("diff", lambda: ic.diff(text, wrt))
    r.run("fd", lambda: finite_difference(lambda a: ic.evaluate(text, a), arrays, name))
    functions = {}  # route → the same route as a function of the arrays
    if case.scalar:
        gradient = r.run("compile(wrt)", lambda: ic.compile(text, wrt=[wrt]))
        if gradient is not None:
            functions["compile(wrt) gradient"] = lambda a: gradient(a)[1][name]
            r.run("compile(wrt) value", lambda: gradient(arrays)[0])
            r.compare("compile(wrt) value", "evaluate", EXACT_RTOL, EXACT_ATOL)
    if d is not None:
        functions["evaluate(diff)"] = lambda a: ic.evaluate(d, a)
        compiled = r.run("compile(diff) plan", lambda: ic.compile(d))
        if compiled is not None:
            functions["compile(diff)"] = lambda a: compiled(a)[0]
        s = r.run("simplify(diff)", lambda: ic.simplify(d))
        inline = r.run("diff inline", lambda: ic.diff(text, wrt, inline=True))
        r.excuse_too_large("diff inline")
        derivatives = {"diff": d, "simplify(diff)": s, "diff inline": inline}
        for label, x in derivatives.items():
            if x is not None and label != "diff":
                r.run(f"evaluate({label})", lambda: ic.evaluate(x, arrays))
        if small:
            r.run("evaluate_loops(diff)", lambda: ic.evaluate_loops(d, arrays))
        for label, x in derivatives.items():
            if x is not None:
                r.run(f"evaluate(parse(str({label})))", lambda: ic.evaluate(ic.parse(str(x)), arrays))
        if s is not None:  # what `--unicode` shows: σ, δ, Σ, ŷ, ∂C/∂b
            r.run("evaluate(parse(pretty(simplify(diff))))", lambda: ic.evaluate(ic.parse(s.pretty()), arrays))
    for route, f in functions.items():
        r.run(route, lambda: f(arrays))
    routes = ["evaluate(diff)", "evaluate(simplify(diff))", "evaluate(diff inline)", "evaluate_loops(diff)",
              "compile(diff)", "compile(wrt) gradient", "evaluate(parse(str(diff)))",
              "evaluate(parse(str(simplify(diff))))", "evaluate(parse(str(diff inline)))",
              "evaluate(parse(pretty(simplify(diff))))"]
    scale = r.magnitude("evaluate", "fd")
    r.excuse_if_zero("diff", "fd", scale)
    r.excuse_if_zero("compile(wrt)", "fd", scale)
    right = [route for route in routes if route in r.values and r.compare(route, "fd", FD_RTOL, FD_ATOL, scale)]
    if "evaluate(diff)" in right:
        for route in right[1:]:
            r.compare(route, "evaluate(diff)", EXACT_RTOL, EXACT_ATOL, scale)
    if d is None or not functions:
        return None
    label = next((route for route in functions if route in right), next(iter(functions)))
    return d, functions[label], label


def _second_derivative(case, arrays, r: _Runner, d, first, label):
    """The Hessian by every route, against finite differences of a first derivative
    (the compiled gradient when it is right)."""
    wrt2, name2 = case.wrt2, wrt_name(case.wrt2)
    h = r.run("diff(diff)", lambda: ic.diff(d, wrt2))
    reference = f"fd({label})"
    r.run(reference, lambda: finite_difference(first, arrays, name2))
    scale = r.magnitude("evaluate", "fd", label, reference)
    if h is None:
        # DESIGN's refusal of a wrt written nowhere on the way; where the first derivative
        # is written through it (`L_{,g}[w] = x_g` by w), the answer is zeros, not a refusal
        lines = [line for line in d.lines if isinstance(line, ic.Equation)]
        if not (lines and written_through(lines, name2)):
            r.excuse_if_zero("diff(diff)", reference, scale)
        return
    r.run("evaluate(hessian)", lambda: ic.evaluate(h, arrays))
    r.run("compile(hessian)", lambda: ic.compile(h)(arrays)[0])
    r.run("evaluate(parse(str(hessian)))", lambda: ic.evaluate(ic.parse(str(h)), arrays))
    routes = ["evaluate(hessian)", "compile(hessian)", "evaluate(parse(str(hessian)))"]
    right = [route for route in routes if route in r.values and r.compare(route, reference, FD_RTOL, FD_ATOL, scale)]
    if "evaluate(hessian)" in right:
        for route in right[1:]:
            r.compare(route, "evaluate(hessian)", EXACT_RTOL, EXACT_ATOL, scale)


def gradient_routes(source, wrt, arrays) -> dict:
    """Every first-derivative route of `source` by `wrt`, by name, each a function that
    computes it: the hand-picked regression tests compare each with finite differences."""
    d = ic.diff(source, wrt)
    inline = functools.cache(lambda: ic.diff(source, wrt, inline=True))  # two routes read it: worked out once
    routes = {
        "evaluate(diff)": lambda: ic.evaluate(d, arrays),
        "evaluate(simplify(diff))": lambda: ic.evaluate(ic.simplify(d), arrays),
        "evaluate(diff inline)": lambda: ic.evaluate(inline(), arrays),
        "evaluate_loops(diff)": lambda: ic.evaluate_loops(d, arrays),
        "compile(diff)": lambda: ic.compile(d)(arrays)[0],
        "evaluate(parse(str(diff)))": lambda: ic.evaluate(ic.parse(str(d)), arrays),
        "evaluate(parse(str(diff inline)))": lambda: ic.evaluate(ic.parse(str(inline())), arrays),
    }
    target = d.lines[-1]
    if isinstance(target, ic.Equation) and not target.lhs.indices:
        name = wrt.split("_")[0]
        routes["compile(wrt)"] = lambda: ic.compile(source, wrt=[name])(arrays)[1][name]
    return routes



def compiled_routes(case) -> list[tuple]:
    """The (program, wrt) pairs of a case that compile: the gradient of a scalar target
    and the Hessian program; a Hessian diff refuses is left out (refused on every route
    alike, which `check` covers)."""
    routes = []
    if case.wrt and case.scalar:
        routes.append((case.text, [case.wrt.split("_")[0]]))
    if case.wrt and case.wrt2:
        try:
            routes.append((ic.diff(ic.diff(case.text, case.wrt), case.wrt2), []))
        except ic.IndexCalcError:
            pass
    return routes


def to_numpy(value) -> np.ndarray:
    """A result of any backend as a NumPy array: dask computed, torch detached to the CPU."""
    if hasattr(value, "compute"):
        value = value.compute()
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
