#!/usr/bin/env python
"""indexcalc against hand-written NumPy (and optional peers): one run, one table.

    python benchmarks/bench_gradients.py            # full run, a few minutes
    python benchmarks/bench_gradients.py --quick    # under a minute: fewer rounds, no large MLP
    python benchmarks/bench_gradients.py --threads 2 --plans

What it measures (see benchmarks/README.md):
  1. MLP loss + gradients (sigmoid layers, mean squared error), float64 and float32:
     hand-written NumPy backprop (the baseline), `ic.compile(...)` calls, and PyTorch
     eager / jax.jit / HIPS autograd when they are installed (never installed by this).
  2. Build time of a 20-layer tanh chain: compile + first call (planning), diff + simplify.
  3. Logistic-regression Hessian: compiled `ic.diff(ic.diff(prog, "w_g"), "w_h")` against
     the closed form X^T diag(p(1-p)) X / n.
  4. Peak memory (tracemalloc) of one gradient call, medium MLP float64.
  5. Per-call overhead on the tiny MLP, in microseconds.
  6. Training loop overhead: wall time per epoch of `Trainer.fit` on the XOR and Fizz Buzz
     model files (indexcalc/examples/*.ic), the time inside its compiled gradient calls
     (`model.loss_and_grads` wrapped), and the difference, absolute and as a fraction.
  7. Softmax regression gradient with the softmax as written (`exp(z) / sum(exp(z))`, a
     named denominator, logsumexp) against NumPy by hand and jax.jit when installed.

Timing: every contender of a case is timed in the same rounds, the order rotating from
round to round; a round times a batch of calls of each contender; the table reports the
median over rounds of the time per call, and the ratio to the case's baseline.
"""

from __future__ import annotations

import argparse
import os
import sys

from blas_env import BLAS_ENV  # noqa: E402  (imports no NumPy)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds, skip the large MLP (< 60 s; about 10 s here)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (default 1: single-threaded timings are the stable ones here)")
    p.add_argument("--plans", action="store_true",
                   help="after the table, print indexcalc's plan (print(f)) for every timed case")
    return p.parse_args(argv)


# BLAS reads its thread count when it is loaded: the variables must be set before NumPy is
# imported, which is why argument parsing comes first in this file.
_NUMPY_WAS_LOADED = "numpy" in sys.modules
if __name__ == "__main__":
    ARGS = parse_args()
    for _name in BLAS_ENV:
        os.environ[_name] = str(ARGS.threads)
else:  # imported (e.g. to reuse a function): defaults, environment untouched
    ARGS = parse_args([])

import gc  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import opt_einsum  # noqa: E402

import indexcalc as ic  # noqa: E402


_THREADPOOL_LIMITS = None  # kept alive for the whole run when threadpoolctl is used


# ============================================================================ environment


def limit_threads(n: int) -> str:
    """Limit BLAS threads (threadpoolctl if installed; the environment is set anyway) and
    say how, with the number the BLAS library itself reports."""
    global _THREADPOOL_LIMITS
    how = []
    if importlib.util.find_spec("threadpoolctl") is not None:
        import threadpoolctl

        _THREADPOOL_LIMITS = threadpoolctl.threadpool_limits(limits=n)
        info = threadpoolctl.threadpool_info()
        reported = ", ".join(f"{d.get('internal_api')}={d.get('num_threads')}" for d in info) or "no pools found"
        how.append(f"threadpoolctl.threadpool_limits({n}) ({reported})")
    else:
        how.append("threadpoolctl: not installed")
    if __name__ == "__main__":
        where = "before NumPy was imported" if not _NUMPY_WAS_LOADED else "AFTER NumPy was imported (no effect!)"
        how.append(f"{'/'.join(BLAS_ENV[:3])}={n} set {where}")
    blas = openblas_threads()
    if blas is not None:
        how.append(f"OpenBLAS reports {blas}")
    return "; ".join(how)


def openblas_threads() -> int | None:
    """The thread count the loaded OpenBLAS reports, read through ctypes."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libs = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and ".so" in line})
    names = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
             "openblas_get_num_threads64_", "openblas_get_num_threads")
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in names:
            fn = getattr(handle, name, None)
            if fn is not None:
                return int(fn())
    return None


def blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode
        return "unknown BLAS"


def git_revision() -> str:
    root = Path(ic.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "indexcalc"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"git {rev}{' + uncommitted changes in indexcalc/' if dirty else ''}" if rev else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        return "git unknown"


def source_hash() -> str:
    """A digest of indexcalc's .py files: which code was measured, committed or not."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted(Path(ic.__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


SOURCE_HASH = source_hash()  # now, before anyone edits the files while this runs


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ============================================================================ peers


@dataclass
class Peer:
    label: str
    module: object | None
    status: str


def find_peers(threads: int) -> dict[str, Peer]:
    """Import each optional peer if it is installed; never install anything."""
    peers = {}
    spec = [("torch", "PyTorch eager", "torch"), ("jax", "jax.jit(jax.value_and_grad)", "jax"),
            ("autograd", "HIPS autograd", "autograd")]
    for key, label, module_name in spec:
        if importlib.util.find_spec(module_name) is None:
            peers[key] = Peer(label, None, "skipped: not installed")
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # installed but broken
            peers[key] = Peer(label, None, f"skipped: import failed ({type(err).__name__}: {err})")
            continue
        version = getattr(module, "__version__", "?")
        status = f"found {version}"
        if key == "torch":
            module.set_num_threads(threads)
            try:
                module.set_num_interop_threads(1)
            except RuntimeError:
                pass
            status += f", torch.set_num_threads({threads})"
        elif key == "jax":
            module.config.update("jax_enable_x64", True)  # float64 cases need it; float32 stays float32
            status += ", x64 enabled, XLA threads NOT limited (no stable flag)"
        elif key == "autograd":
            status += ", runs on NumPy (same BLAS limit)"
        peers[key] = Peer(label, module, status)
    return peers


# ============================================================================ timing


@dataclass
class Contender:
    name: str
    fn: Callable[[], object]
    baseline: bool = False
    times: list[float] = field(default_factory=list)
    inner: int = 1
    per_call: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def spread(self) -> float:
        """Interquartile range over rounds, relative to the median."""
        if len(self.times) < 4:
            return float("nan")
        q = statistics.quantiles(self.times, n=4)
        return (q[2] - q[0]) / self.median


def time_interleaved(contenders: list[Contender], rounds: int, batch_seconds: float, budget: float) -> int:
    """Warm up, size a batch per contender, then time the contenders in alternating rounds
    (fewer rounds, at least 9, when `rounds` of them would take longer than `budget`)."""
    for c in contenders:
        c.fn()
        c.fn()  # the first call may plan, compile or allocate caches
        start = time.perf_counter()
        calls = 0
        while True:
            c.fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed > batch_seconds / 2 or calls >= 1000:
                break
        c.per_call = elapsed / calls
        c.inner = max(1, round(batch_seconds / c.per_call))
    per_round = sum(c.inner * c.per_call for c in contenders)
    rounds = max(min(9, rounds), min(rounds, int(budget / per_round)))
    k = len(contenders)
    for r in range(rounds):
        order = contenders[r % k:] + contenders[: r % k]
        for c in order:
            fn, inner = c.fn, c.inner
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                for _ in range(inner):
                    fn()
                c.times.append((time.perf_counter() - start) / inner)
            finally:
                gc.enable()
    return rounds


# ============================================================================ results table


@dataclass
class Row:
    group: str
    case: str
    dtype: str
    contender: str
    value: str
    ratio: str
    spread: str
    note: str = ""
    best: str = ""


ROWS: list[Row] = []
FLAGS: list[str] = []
PLANS: list[tuple[str, object]] = []


def plan_steps(f) -> str:
    """How many steps the compiled callable's last plan has (as `print(f)` lists them)."""
    try:
        return str(len(f._last.lowering.steps))
    except AttributeError:
        return "?"


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


def add_timed(group: str, case: str, dtype: str, contenders: list[Contender], notes: dict[str, str] | None = None,
              flag_over: float | None = None) -> None:
    base = next(c for c in contenders if c.baseline)
    for c in contenders:
        ratio = c.median / base.median
        note = (notes or {}).get(c.name, "")
        if c.baseline:
            note = ("baseline; " + note) if note else "baseline"
        elif flag_over is not None and c.name.startswith("indexcalc") and ratio > flag_over:
            note = (note + "; " if note else "") + f"SLOWER than {flag_over}x"
            FLAGS.append(f"{case} {dtype}: {c.name} {ratio:.2f}x {base.name} "
                         f"({fmt_time(c.median).strip()} vs {fmt_time(base.median).strip()})")
        ROWS.append(Row(group, case, dtype, c.name, fmt_time(c.median), f"{ratio:6.2f}x",
                        f"{100 * c.spread:5.1f}%" if c.spread == c.spread else "", note,
                        f"{fmt_time(c.best)} {c.best / base.best:5.2f}x"))


def print_table() -> None:
    head = Row("#", "case", "dtype", "contender", "median/call", "ratio", "IQR", "note", "best round, its ratio")
    fields = ("group", "case", "dtype", "contender", "value", "ratio", "spread", "best")
    cols = [[getattr(r, f) for r in [head] + ROWS] for f in fields]
    widths = [max(len(x) for x in col) for col in cols]

    def line(r: Row) -> str:
        cells = [getattr(r, f) for f in fields]
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + "  " + r.note

    print(line(head))
    print("-" * (sum(widths) + 2 * len(widths) + 40))
    previous = None
    for r in ROWS:
        if previous is not None and (r.group, r.case, r.dtype) != previous:
            print()
        previous = (r.group, r.case, r.dtype)
        print(line(r).rstrip())


# ============================================================================ 1, 4, 5: MLPs


def mlp_program(sizes: list[int]) -> str:
    lines = []
    for l in range(1, len(sizes)):
        prev = "x" if l == 1 else f"h{l - 1}"
        lines.append(f"h{l}_ni = sigma(W{l}_ij {prev}_nj + b{l}_i)")
    last = f"h{len(sizes) - 1}"
    lines.append(f"loss = mean_n(({last}_nk - y_nk)({last}_nk - y_nk))")
    return "\n".join(lines)


def mlp_arrays(sizes: list[int], batch: int, dtype, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.standard_normal((batch, sizes[0])), "y": rng.random((batch, sizes[-1]))}
    for l in range(1, len(sizes)):
        arrays[f"W{l}"] = rng.standard_normal((sizes[l], sizes[l - 1])) / np.sqrt(sizes[l - 1])
        arrays[f"b{l}"] = 0.1 * rng.standard_normal(sizes[l])
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in arrays.items()}


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^-z), in place, as one writes it by hand (and indexcalc's sigma is)."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


def numpy_mlp(arrays: dict[str, np.ndarray], layers: int):
    """Hand-written backprop: loss = mean_n sum_k (h_L - y)^2, sigmoid on every layer."""
    x, y = arrays["x"], arrays["y"]
    Ws = [arrays[f"W{l}"] for l in range(1, layers + 1)]
    hs = [x]
    h = x
    for l in range(layers):
        z = h @ Ws[l].T
        z += arrays[f"b{l + 1}"]
        h = sigmoid_(z)
        hs.append(h)
    n = x.shape[0]
    d = h - y
    loss = np.vdot(d, d) / n
    d *= 2.0 / n
    grads = {}
    for l in range(layers - 1, -1, -1):
        h = hs[l + 1]
        d *= h
        d *= 1.0 - h  # σ'(z) = h (1 - h)
        grads[f"W{l + 1}"] = d.T @ hs[l]
        grads[f"b{l + 1}"] = d.sum(axis=0)
        if l:
            d = d @ Ws[l]
    return loss, grads


def torch_mlp(torch, arrays, layers):
    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in arrays.items() if k[0] in "Wb"}
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])

    def run():
        for p in params.values():
            p.grad = None
        h = x
        for l in range(1, layers + 1):
            h = torch.sigmoid(torch.addmm(params[f"b{l}"], h, params[f"W{l}"].t()))
        e = h - y
        loss = (e * e).sum() / x.shape[0]
        loss.backward()
        return loss.detach(), {k: p.grad for k, p in params.items()}

    def to_numpy(out):
        return float(out[0]), {k: g.numpy() for k, g in out[1].items()}

    return run, to_numpy


def jax_mlp(jax, arrays, layers):
    jnp = jax.numpy
    params = {k: jnp.asarray(v) for k, v in arrays.items() if k[0] in "Wb"}
    x, y = jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"])

    def loss_fn(params, x, y):
        h = x
        for l in range(1, layers + 1):
            h = jax.nn.sigmoid(h @ params[f"W{l}"].T + params[f"b{l}"])
        e = h - y
        return jnp.sum(e * e) / x.shape[0]

    step = jax.jit(jax.value_and_grad(loss_fn))

    def run():
        return jax.block_until_ready(step(params, x, y))

    def to_numpy(out):
        return float(out[0]), {k: np.asarray(g) for k, g in out[1].items()}

    return run, to_numpy


def autograd_mlp(autograd, arrays, layers):
    import autograd.numpy as anp

    params = {k: v for k, v in arrays.items() if k[0] in "Wb"}
    x, y = arrays["x"], arrays["y"]

    def loss_fn(params):
        h = x
        for l in range(1, layers + 1):
            h = 1.0 / (1.0 + anp.exp(-(anp.dot(h, params[f"W{l}"].T) + params[f"b{l}"])))
        e = h - y
        return anp.sum(e * e) / x.shape[0]

    step = autograd.value_and_grad(loss_fn)

    def run():
        return step(params)

    def to_numpy(out):
        return float(out[0]), {k: np.asarray(g) for k, g in out[1].items()}

    return run, to_numpy


PEER_MLP = {"torch": torch_mlp, "jax": jax_mlp, "autograd": autograd_mlp}


def check_close(what: str, got_value, got_grads, ref_value, ref_grads, dtype) -> None:
    rtol, atol_rel = (1e-7, 1e-10) if dtype == np.float64 else (2e-3, 1e-4)
    np.testing.assert_allclose(float(got_value), float(ref_value), rtol=rtol, err_msg=f"{what}: loss")
    for k, ref in ref_grads.items():
        got = np.asarray(got_grads[k])
        assert got.shape == ref.shape, f"{what}: {k} shape {got.shape} != {ref.shape}"
        scale = float(np.max(np.abs(ref))) or 1.0
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol_rel * scale, err_msg=f"{what}: gradient {k}")


MLPS = [
    ("tiny", [2, 4, 1], 4),
    ("small", [64, 32, 10], 128),
    ("medium", [784, 256, 128, 10], 256),
    ("large", [784, 1024, 1024, 10], 512),
]
THRESHOLD = {"tiny": 1.5, "small": 1.1, "medium": 1.1, "large": 1.1}


def bench_mlps(peers, timing, quick) -> dict:
    tiny_times = {}
    for label, sizes, batch in MLPS:
        if quick and label == "large":
            ROWS.append(Row("1", f"MLP large {'-'.join(map(str, sizes))} n={batch}", "both", "all", "", "", "",
                            "skipped: --quick"))
            continue
        layers = len(sizes) - 1
        program = mlp_program(sizes)
        for dtype in (np.float64, np.float32):
            dname = np.dtype(dtype).name
            case = f"MLP {label} {'-'.join(map(str, sizes))} n={batch}"
            arrays = mlp_arrays(sizes, batch, dtype)
            wrt = [f"{p}{l}" for l in range(1, layers + 1) for p in "Wb"]
            f = ic.compile(program, wrt=wrt)
            ref_value, ref_grads = numpy_mlp(arrays, layers)
            value, grads = f(arrays)
            check_close(f"indexcalc {case} {dname}", value, grads, ref_value, ref_grads, dtype)
            for k, g in grads.items():
                assert g.dtype == dtype, f"indexcalc {case}: gradient {k} is {g.dtype}, not {dname}"
            contenders = [
                Contender("NumPy backprop", lambda a=arrays, L=layers: numpy_mlp(a, L), baseline=True),
                Contender("indexcalc", lambda f=f, a=arrays: f(a)),
            ]
            for key, build in PEER_MLP.items():
                if peers[key].module is None:
                    continue
                run, to_numpy = build(peers[key].module, arrays, layers)
                out = to_numpy(run())
                check_close(f"{peers[key].label} {case} {dname}", out[0], out[1], ref_value, ref_grads, dtype)
                contenders.append(Contender(peers[key].label, run))
            rounds = time_interleaved(contenders, *timing)
            notes = {}
            if label == "tiny":
                ours = next(c for c in contenders if c.name == "indexcalc")
                tiny_times[dname] = (ours.median, contenders[0].median, ours.best, contenders[0].best)
                notes["indexcalc"] = f"{plan_steps(f)} plan steps"
            notes["NumPy backprop"] = f"{rounds} rounds"
            add_timed("1", case, dname, contenders, notes, THRESHOLD[label])
            PLANS.append((f"{case} {dname}", f))
    for dname, (ours, base, ours_best, base_best) in tiny_times.items():
        ROWS.append(Row("5", "tiny MLP per-call overhead", dname, "indexcalc − NumPy",
                        f"{(ours - base) * 1e6:8.1f} µs", f"{ours / base:6.2f}x", "",
                        f"medians: indexcalc {ours * 1e6:.1f} µs/call, NumPy {base * 1e6:.1f} µs/call",
                        f"{(ours_best - base_best) * 1e6:8.1f} µs {ours_best / base_best:5.2f}x"))
    return tiny_times


# ============================================================================ 2: build time


def tanh_chain(layers: int = 20) -> str:
    lines = [f"x{k}_i = tanh(W{k}_ij x{k - 1}_j + b{k}_i)" for k in range(1, layers + 1)]
    lines.append(f"loss = (x{layers}_i - y_i)(x{layers}_i - y_i)")
    return "\n".join(lines)


def bench_build(repeats: int, layers: int = 20, width: int = 16) -> None:
    program = tanh_chain(layers)
    rng = np.random.default_rng(1)
    arrays = {"x0": rng.standard_normal(width), "y": rng.standard_normal(width)}
    for k in range(1, layers + 1):
        arrays[f"W{k}"] = rng.standard_normal((width, width)) / np.sqrt(width)
        arrays[f"b{k}"] = 0.1 * rng.standard_normal(width)
    wrt = [f"{p}{k}" for k in range(1, layers + 1) for p in "Wb"]
    compile_t, first_t, diff_t, simp_t = [], [], [], []
    for _ in range(repeats):  # each from the text: nothing carried over but Python's own caches
        t0 = time.perf_counter()
        f = ic.compile(program, wrt=wrt)
        t1 = time.perf_counter()
        f(arrays)
        t2 = time.perf_counter()
        d = ic.diff(program, "W1_gh")
        t3 = time.perf_counter()
        ic.simplify(d)
        t4 = time.perf_counter()
        compile_t.append(t1 - t0)
        first_t.append(t2 - t1)
        diff_t.append(t3 - t2)
        simp_t.append(t4 - t3)
    case = f"{layers}-layer tanh chain, width {width}"
    med = statistics.median
    total = med([a + b for a, b in zip(compile_t, first_t)])
    ROWS.append(Row("2", case, "float64", "ic.compile + first call", fmt_time(total), "n/a", "",
                    f"{'OK' if total < 0.3 else 'OVER'} target < 0.3 s; compile {med(compile_t) * 1e3:.1f} ms + "
                    f"planning first call {med(first_t) * 1e3:.1f} ms; first-ever {(compile_t[0] + first_t[0]) * 1e3:.1f} ms; "
                    f"median of {repeats}"))
    total = med([a + b for a, b in zip(diff_t, simp_t)])
    ROWS.append(Row("2", case, "—", "ic.diff(.., 'W1_gh') + ic.simplify", fmt_time(total), "n/a", "",
                    f"{'OK' if total < 0.3 else 'OVER'} target < 0.3 s; diff {med(diff_t) * 1e3:.1f} ms + "
                    f"simplify {med(simp_t) * 1e3:.1f} ms; median of {repeats}"))
    if total >= 0.3:
        FLAGS.append(f"{case}: diff + simplify {total:.3f} s, over the 0.3 s target")


def bench_hard_builds(quick: bool) -> None:
    """Build times of the shapes that once ran away (issues 8 and 9): each a row with the
    time before its fix, so that a regression shows as a number, not a hung test."""
    nested = "y_i = " + "sqrt(1 + " * 80 + "w_ij x_j" + ")" * 80
    power = "y_pm = (-2)^a x_mn U_pn / sqrt(0.5 + mean_q((x_mn U_qn)^2))\nL = sum_pm(y_pm y_pm)"
    terms = 2000 if quick else 10000
    long_sum = "L = " + " + ".join(f"{k % 7} x a{k}" for k in range(terms))
    cases = [
        ("simplify(diff) of sqrt(1 + ...) 80 deep", "13 s before a847c5e",
         lambda: ic.simplify(ic.diff(nested, "w_gh"))),
        ("simplify(diff) of x/(x/(...)) 99 deep", "over 10 s (the fuzz soak's run-away) before this row",
         lambda: ic.simplify(ic.diff("y_i = " + "x/(" * 99 + "w_ij x_j" + ")" * 99, "w_gh"))),
        ("compile of a Hessian with a (-2)^a factor", "31 s before fac7ab9",
         lambda: ic.compile(ic.diff(ic.diff(power, "U_ab"), "U_αβ"))),
        ("diff + simplify of a 2,000-term sum", "8 s before dd038a3",
         lambda: ic.simplify(ic.diff(" + ".join(long_sum.split(" + ")[:2000]), "x"))),
        (f"compile(wrt) of a {terms:,}-term sum", "RecursionError at 10,000 before dd038a3",
         lambda: ic.compile(long_sum, wrt=["x"])),
    ]
    for case, before, build in cases:
        t0 = time.perf_counter()
        build()
        seconds = time.perf_counter() - t0
        ROWS.append(Row("2", case, "—", "indexcalc", fmt_time(seconds), "n/a", "", f"one run; {before}"))


# ============================================================================ 3: Hessian


HESSIAN_FORMS = [
    # (label, program, labels in {-1, +1}?)
    ("log(1+exp(-y Xw)) [examples/]", "L = mean_n(log(1 + exp(-y_n X_nj w_j)))", True),
    ("softplus(-y Xw)", "L = mean_n(softplus(-y_n X_nj w_j))", True),
    ("cross-entropy of p=σ(Xw)", "p_n = sigma(X_nj w_j)\nL = -mean_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))",
     False),
]


def largest_step(f) -> tuple[int, tuple[int, ...]]:
    """The element count and shape of the largest array in the compiled callable's last plan."""
    try:
        steps = f._last.lowering.steps
    except AttributeError:
        return 0, ()
    return max(((int(np.prod(s.shape)), s.shape) for s in steps), default=(0, ()))


def closed_form_hessian(X, w):
    """X^T diag(p(1-p)) X / n, the 1/n folded into the n weights."""
    z = X @ w
    p = sigmoid_(z)
    s = p * (1.0 - p)
    s *= 1.0 / X.shape[0]
    return X.T @ (X * s[:, None])


def closed_form_hessian_syrk(X, w):
    """The same as (X√s)^T (X√s): NumPy sees A.T @ A and calls syrk (half the flops)."""
    p = sigmoid_(X @ w)
    s = p * (1.0 - p)
    s *= 1.0 / X.shape[0]
    A = X * np.sqrt(s)[:, None]
    return A.T @ A


def bench_hessian(peers, timing) -> None:
    for label, program, signed in HESSIAN_FORMS:
        earlier = None  # the largest array of the plan at the smaller size, as (elements, shape, n, d)
        for d, n in ((100, 1000), (500, 2000)):
            case = f"Hessian {label} d={d} n={n}"
            if earlier is not None and earlier[0] > 2 * earlier[2] * earlier[3]:
                # a plan with an array beyond n·d (X's size) at the earlier size, an n·d·d one say,
                # would need that array scaled up here: not run
                elements, shape, n0, d0 = earlier
                scaled = elements * (n / n0) * (d / d0) ** (len(shape) - 1)
                ROWS.append(Row("3", case, "float64", "indexcalc", "", "", "",
                                f"skipped: at d={d0} its plan has a {shape} array (more than n·d); "
                                f"here ~{scaled * 8 / 2**30:.1f} GiB"))
                continue
            rng = np.random.default_rng(2)
            X = rng.standard_normal((n, d)) / np.sqrt(d)
            w = rng.standard_normal(d)
            y = np.where(rng.random(n) < 0.5, 1.0, -1.0) if signed else (rng.random(n) < 0.5).astype(float)
            arrays = {"X": X, "w": w, "y": y}
            t0 = time.perf_counter()
            f = ic.compile(ic.diff(ic.diff(program, "w_g"), "w_h"))
            H, _ = f(arrays)
            build = time.perf_counter() - t0
            fs = ic.compile(ic.simplify(ic.diff(ic.diff(program, "w_g"), "w_h")))
            Hs, _ = fs(arrays)
            ref = closed_form_hessian(X, w)
            scale = float(np.max(np.abs(ref)))
            for what, got in (("indexcalc", H), ("indexcalc + simplify", Hs),
                              ("syrk closed form", closed_form_hessian_syrk(X, w))):
                got = np.asarray(got)
                assert got.shape == (d, d), f"{case} {what}: shape {got.shape}"
                np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12 * scale, err_msg=f"{case}: {what}")
            contenders = [
                Contender("closed form X.T@(X*s[:,None])", lambda X=X, w=w: closed_form_hessian(X, w), baseline=True),
                Contender("indexcalc", lambda f=f, a=arrays: f(a)),
                Contender("indexcalc + simplify", lambda f=fs, a=arrays: f(a)),
                Contender("syrk closed form (A.T@A)", lambda X=X, w=w: closed_form_hessian_syrk(X, w)),
            ]
            if peers["jax"].module is not None:
                jax = peers["jax"].module
                jnp = jax.numpy

                def loss(w, X, y, signed=signed):
                    return jnp.mean(jnp.log1p(jnp.exp(-y * (X @ w)))) if signed else -jnp.mean(
                        y * jax.nn.log_sigmoid(X @ w) + (1 - y) * jax.nn.log_sigmoid(-(X @ w)))

                hess = jax.jit(jax.hessian(loss))
                jargs = (jnp.asarray(w), jnp.asarray(X), jnp.asarray(y))
                np.testing.assert_allclose(np.asarray(hess(*jargs)), ref, rtol=1e-6, atol=1e-10 * scale,
                                           err_msg=f"{case}: jax.hessian")
                contenders.append(Contender("jax.jit(jax.hessian)",
                                            lambda h=hess, a=jargs: jax.block_until_ready(h(*a))))
            rounds = time_interleaved(contenders, *timing)
            add_timed("3", case, "float64", contenders,
                      {"closed form X.T@(X*s[:,None])": f"{rounds} rounds",
                       "indexcalc": f"{plan_steps(f)} plan steps; diff+diff+compile+plan {build * 1e3:.0f} ms",
                       "indexcalc + simplify": f"{plan_steps(fs)} plan steps (ic.simplify before compile)"},
                      flag_over=1.2)
            PLANS.append((case, f))
            PLANS.append((case + " (+ simplify)", fs))
            earlier = (*max(largest_step(f), largest_step(fs)), n, d)


# ============================================================================ 7: softmax as written


SOFTMAX_FORMS = [
    # (label, program): the same softmax regression loss, the softmax three ways
    ("exp / sum", "z_nk = X_nd W_dk\np_nk = exp(z_nk) / sum_c(exp(z_nc))\nL = -mean_n(y_nk log(p_nk))"),
    ("named denominator", "z_nk = X_nd W_dk\nZ_n = sum_c(exp(z_nc))\np_nk = exp(z_nk) / Z_n\n"
                          "L = -mean_n(y_nk log(p_nk))"),
    ("logsumexp", "z_nk = X_nd W_dk\nL = mean_n(logsumexp_c(z_nc) - y_nk z_nk)"),
]


def numpy_softmax_regression(X, W, y):
    """Loss and gradient by W of the mean softmax cross-entropy, by hand (one-hot y)."""
    z = X @ W
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[y.astype(bool)]))
    return loss, X.T @ ((p - y) / X.shape[0])


def bench_softmax(peers, timing) -> None:
    """The gradient of a softmax regression whose softmax is written as the notes write it
    (a ratio of exps, or with a named denominator, differentiated through the shares
    exp(z - log Z): indexcalc/exponentials.py) or by logsumexp, against NumPy by hand."""
    for n, d, k in ((512, 100, 10), (4096, 256, 100)):
        rng = np.random.default_rng(3)
        X = rng.standard_normal((n, d)) / np.sqrt(d)
        W = rng.standard_normal((d, k))
        y = np.eye(k)[rng.integers(0, k, n)]
        arrays = {"X": X, "W": W, "y": y}
        ref_loss, ref_grad = numpy_softmax_regression(X, W, y)
        contenders = [Contender("NumPy by hand", lambda: numpy_softmax_regression(X, W, y), baseline=True)]
        for label, program in SOFTMAX_FORMS:
            f = ic.compile(program, wrt=["W"])
            loss, grads = f(arrays)
            np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, err_msg=label)
            np.testing.assert_allclose(grads["W"], ref_grad, rtol=1e-8, atol=1e-12, err_msg=label)
            contenders.append(Contender(f"indexcalc ({label})", lambda f=f: f(arrays)))
        if peers["jax"].module is not None:
            jax = peers["jax"].module
            jnp = jax.numpy

            def loss_fn(W, X, y):
                z = X @ W
                return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z, axis=1), axis=1))

            grad = jax.jit(jax.value_and_grad(loss_fn))
            jargs = (jnp.asarray(W), jnp.asarray(X), jnp.asarray(y))
            np.testing.assert_allclose(np.asarray(grad(*jargs)[1]), ref_grad, rtol=1e-6, err_msg="jax")
            contenders.append(Contender("jax.jit(value_and_grad)", lambda: jax.block_until_ready(grad(*jargs))))
        rounds = time_interleaved(contenders, *timing)
        add_timed("7", f"softmax regression n={n} d={d} k={k}", "float64", contenders,
                  {"NumPy by hand": f"{rounds} rounds"}, flag_over=1.3)


# ============================================================================ 4: memory


def peak_bytes(fn) -> int:
    """Peak traced bytes during one call, above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
        del out
    finally:
        tracemalloc.stop()
    return peak - before


def bench_memory() -> None:
    tracemalloc.start()
    probe = np.empty(1 << 20)  # 8 MiB: is NumPy's allocator visible to tracemalloc?
    seen, _ = tracemalloc.get_traced_memory()
    del probe
    tracemalloc.stop()
    label, sizes, batch = MLPS[2]
    case = f"peak memory, MLP {label} n={batch}"
    if seen < (1 << 23):
        ROWS.append(Row("4", case, "float64", "all", "", "", "", "skipped: NumPy allocations invisible to tracemalloc"))
        return
    layers = len(sizes) - 1
    arrays = mlp_arrays(sizes, batch, np.float64)
    f = ic.compile(mlp_program(sizes), wrt=[f"{p}{l}" for l in range(1, layers + 1) for p in "Wb"])
    runs = {"NumPy backprop": lambda: numpy_mlp(arrays, layers), "indexcalc": lambda: f(arrays)}
    for fn in runs.values():
        fn()  # warm-up: plan made, caches filled
    peaks = {name: statistics.median(peak_bytes(fn) for _ in range(3)) for name, fn in runs.items()}
    params = sum(v.nbytes for k, v in arrays.items() if k[0] in "Wb")
    acts = sum(batch * s * 8 for s in sizes[1:])
    base = peaks["NumPy backprop"]
    for name, peak in peaks.items():
        note = "baseline" if name == "NumPy backprop" else ""
        if name == "NumPy backprop":
            note += f"; for scale: gradients {params / 2**20:.2f} MiB, activations {acts / 2**20:.2f} MiB"
        ROWS.append(Row("4", case, "float64", name, f"{peak / 2**20:8.2f} MiB", f"{peak / base:6.2f}x", "", note))


# ============================================================================ 6: training loop


TRAINING = [  # (model file in indexcalc/examples, epochs per fit)
    ("xor.ic", 20),
    ("fizzbuzz.ic", 3),
]


def training_setup(path: Path):
    """What `train_file` builds from a model file, without its checkpoint: the model file,
    the data (train, test) and a function making a fresh Trainer (optimiser state reset)."""
    from indexcalc import datasets
    from indexcalc.modelfile import load
    from indexcalc.optimisers import optimiser
    from indexcalc.train import Trainer, accuracy

    mf = load(str(path))
    train, test = datasets.load(mf.dataset, list(mf.model.data), mf.seed, mf.folder)
    name, settings = mf.optimizer

    def trainer():
        return Trainer(mf.model, optimiser(name, **settings), batch_size=mf.batch_size, seed=mf.seed,
                       metric=accuracy(*mf.metric) if mf.metric else None, checkpoint=None)

    return mf, train, test or None, trainer


def fit_instrumented(mf, train, test, trainer, epochs: int) -> dict[str, float]:
    """One fit with `model.loss_and_grads`, `Trainer.scores`, `model.evaluate` and the
    optimiser's `step` wrapped (instance attributes; the model's are removed after): seconds
    inside the compiled gradient calls of the batch steps and of `scores` (the epoch's loss
    on train and test), in the metric's forward calls, in the optimiser, and the whole fit's."""
    model = mf.model
    acc = {"steps": 0.0, "scores": 0.0, "metric": 0.0, "optimizer": 0.0, "step calls": 0, "score calls": 0}
    where = ["steps"]
    plain_grads, plain_evaluate = model.loss_and_grads, model.evaluate
    tr = trainer()
    plain_scores, plain_step = tr.scores, tr.optimizer.step
    clock = time.perf_counter

    def loss_and_grads(params, data):
        t0 = clock()
        try:
            return plain_grads(params, data)
        finally:
            acc[where[0]] += clock() - t0
            acc["step calls" if where[0] == "steps" else "score calls"] += 1

    def scores(params, data, prefix):
        where[0] = "scores"
        try:
            return plain_scores(params, data, prefix)
        finally:
            where[0] = "steps"

    def evaluate(name, params, data):
        t0 = clock()
        try:
            return plain_evaluate(name, params, data)
        finally:
            acc["metric"] += clock() - t0

    def step(params, grads):
        t0 = clock()
        try:
            return plain_step(params, grads)
        finally:
            acc["optimizer"] += clock() - t0

    model.loss_and_grads, model.evaluate, tr.scores, tr.optimizer.step = loss_and_grads, evaluate, scores, step
    try:
        t0 = clock()
        result = tr.fit(train, epochs, test=test)
        acc["fit"] = clock() - t0
    finally:
        del model.loss_and_grads, model.evaluate
    assert result.stopped == "done" and result.epochs == epochs, (mf.name, result.stopped, result.message)
    return acc


def bench_training(timing) -> None:
    """Wall time per epoch of Trainer.fit against the time inside its compiled gradient
    calls: plain fits and instrumented fits alternate in rounds (the wrappers cost a little,
    so the loop time is the plain fits'); every fit starts from the same seed, so all do
    the same work."""
    rounds = timing[0]
    examples = Path(ic.__file__).resolve().parent / "examples"
    for file_name, epochs in TRAINING:
        mf, train, test, trainer = training_setup(examples / file_name)
        n = len(next(iter(train.values())))
        size = mf.batch_size or n
        steps = -(-n // size)
        reference = fit_instrumented(mf, train, test, trainer, epochs)  # warm-up: compiles and plans
        trainer().fit(train, epochs, test=test)
        plain, timed = [], []
        for r in range(rounds):
            for kind in (("plain", "timed") if r % 2 == 0 else ("timed", "plain")):
                gc.collect()
                gc.disable()
                try:
                    if kind == "plain":
                        t0 = time.perf_counter()
                        trainer().fit(train, epochs, test=test)
                        plain.append((time.perf_counter() - t0) / epochs)
                    else:
                        acc = fit_instrumented(mf, train, test, trainer, epochs)
                        timed.append({k: v / epochs for k, v in acc.items()})
                finally:
                    gc.enable()
        med = statistics.median
        loop = med(plain)
        grads_rounds = [t["steps"] + t["scores"] for t in timed]
        grads = med(grads_rounds)
        over_rounds = [p - g for p, g in zip(plain, grads_rounds)]
        over = loop - grads

        def iqr(xs, centre):
            q = statistics.quantiles(xs, n=4)
            return f"{100 * (q[2] - q[0]) / abs(centre):5.1f}%" if centre else ""

        best_loop, best_grads = min(plain), min(grads_rounds)
        case = f"Trainer.fit {file_name}, {epochs} epochs"
        calls = reference["step calls"] // epochs, reference["score calls"] // epochs
        ROWS.append(Row("6", case, "float64", "Trainer.fit, per epoch", fmt_time(loop), f"{1:6.2f}x",
                        iqr(plain, loop),
                        f"baseline; {rounds} rounds; per epoch {steps} step(s) of batch {size} (n={n}) + loss"
                        f"{' and ' + mf.metric[0] + ' accuracy' if mf.metric else ''} on train"
                        f"{' and test' if test else ''}; no checkpoint",
                        f"{fmt_time(best_loop)} {1:5.2f}x"))
        ROWS.append(Row("6", case, "float64", "compiled gradient calls", fmt_time(grads), f"{grads / loop:6.2f}x",
                        iqr(grads_rounds, grads),
                        f"model.loss_and_grads, {calls[0]} step + {calls[1]} scores() calls per epoch: steps "
                        f"{fmt_time(med(t['steps'] for t in timed)).strip()}, scores() "
                        f"{fmt_time(med(t['scores'] for t in timed)).strip()} (wrapped fits: "
                        f"{fmt_time(med(t['fit'] for t in timed)).strip()}/epoch)",
                        f"{fmt_time(best_grads)} {best_grads / best_loop:5.2f}x"))
        ROWS.append(Row("6", case, "float64", "overhead (loop − gradients)", fmt_time(over), f"{over / loop:6.2f}x",
                        iqr(over_rounds, over),
                        f"{100 * over / loop:.0f}% of the epoch outside the gradient calls; of it "
                        f"{mf.optimizer[0]} steps {fmt_time(med(t['optimizer'] for t in timed)).strip()}, the metric's "
                        f"forward calls (model.evaluate) {fmt_time(med(t['metric'] for t in timed)).strip()}",
                        f"{fmt_time(best_loop - best_grads)} {(best_loop - best_grads) / best_loop:5.2f}x"))
        f = mf.model.gradient
        first = {k: np.asarray(v)[:size] for k, v in train.items()}
        mf.model.loss_and_grads(mf.model.init_params(mf.seed), first)  # so print(f) shows a step's plan
        PLANS.append((f"{case}: one step's gradient call (batch {size})", f))


# ============================================================================ main


def machine_line() -> str:
    """The machine, its usable CPUs and the load when the run starts (other jobs share it)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine   : {platform.platform()}; {os.cpu_count()} CPUs ({affinity} usable), {cpu_model()}; "
            f"load average at start {load}")


def versions_line() -> str:
    """Which code was measured: library versions, the git revision and a digest of the sources."""
    return (f"versions  : Python {platform.python_version()}, NumPy {np.__version__} ({blas_name()}), "
            f"opt_einsum {opt_einsum.__version__}, indexcalc {ic.__version__} ({git_revision()}, "
            f"sources sha1 {SOURCE_HASH})")


def header(peers, args, thread_note, timing) -> None:
    rounds, batch_seconds, budget = timing
    print(f"indexcalc gradient benchmark ({'--quick' if args.quick else 'full'} run, one process, one table)")
    print(machine_line())
    print(versions_line())
    print(f"BLAS      : {args.threads} thread(s) requested; {thread_note}")
    print("peers     : " + "; ".join(f"{p.label}: {p.status}" for p in peers.values())
          + "  (a peer not installed has no rows below)")
    print(f"method    : {'single-threaded' if args.threads == 1 else f'{args.threads} BLAS threads'} "
          "(default 1), because this machine has 2 cores shared with other\n"
          "            jobs and multi-threaded BLAS makes timings swing by up to 10x. Contenders of a case alternate\n"
          f"            in up to {rounds} rounds (rotating order; at least 9, fewer when a case would take over\n"
          f"            {budget:g} s), each round timing a batch of ~{batch_seconds * 1e3:.0f} ms of calls (at least one call).\n"
          "            'median/call' is the median over rounds, 'ratio' = that median / the case's baseline's (> 1 is\n"
          "            slower), 'IQR' the interquartile range over rounds relative to the median; 'best round' is the\n"
          "            fastest round and its ratio to the baseline's fastest (less sensitive to other jobs).\n"
          "            Every contender's results are checked against the baseline's before timing.")
    print("rows      : 1 MLP loss+gradients (sigmoid layers, mean squared error); 2 build time; 3 logistic-\n"
          "            regression Hessian; 4 peak memory of one call (tracemalloc, after a warm-up); 5 tiny-MLP\n"
          "            per-call overhead; 6 training loop: Trainer.fit per epoch, its compiled gradient calls,\n"
          "            the rest (ratio = fraction of the epoch); 7 softmax regression gradient, the softmax\n"
          "            written as a ratio of exps, with a named denominator, or by logsumexp")
    print()


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    thread_note = limit_threads(args.threads)
    peers = find_peers(args.threads)
    timing = (15, 0.005, 2.5) if args.quick else (61, 0.01, 30.0)  # rounds, seconds per batch, per case
    header(peers, args, thread_note, timing)
    sys.stdout.flush()
    bench_mlps(peers, timing, args.quick)
    bench_build(3 if args.quick else 7)
    bench_hard_builds(args.quick)
    bench_hessian(peers, timing)
    bench_softmax(peers, timing)
    bench_memory()
    bench_training(timing)
    print_table()
    print()
    thresholds = ("indexcalc > 1.5x NumPy (tiny MLP), > 1.1x (other MLPs), > 1.2x the closed form (Hessian), "
                  "> 1.3x (softmax)")
    if FLAGS:
        print(f"flagged ({thresholds}):")
        for line in FLAGS:
            print("  - " + line)
    else:
        print(f"flagged: none ({thresholds})")
    if args.plans:
        for case, f in PLANS:
            print(f"\n=== plan: {case}\n{f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
