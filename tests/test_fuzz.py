"""Fuzz (issue 9): no input reaches the user as anything but an `IndexCalcError`.

Two properties, on inputs a careless user or an attacker might give:
- the public calls (`ic.parse`, the printers and `repr`, `ic.evaluate`, `ic.evaluate_loops`,
  `ic.diff`, `ic.simplify`, `ic.compile` and its callable) on random text: mutants of valid
  programs, token soup with look-alike characters, deep nesting, raw Unicode;
- the command line, `indexcalc.cli.main([...])` in-process: random commands (every one,
  predict and export too), sources, files (random contents and paths), option values. It
  must return 0 or 1 (argparse's exit 2 is fine), never exit 0 through SystemExit, never
  report a bug (exit 70).

Either raises nothing else and takes at most `TIME_LIMIT` seconds an input. CI runs a fixed
sample in about 10 seconds; `HYPOTHESIS_PROFILE=soak` runs 100,000 inputs a property and
`scripts/fuzz.py --count N` runs N and lists every escape rather than stopping at the first.
`check_api` and `check_cli` return the problems found (empty: none), for both.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc import cli, modelfile
from indexcalc.notation import MAX_NESTING
from strategies import sample
from test_errors import FUZZ_ARRAYS, POOL, mutants

TIME_LIMIT = 10.0  # seconds an input: far beyond what inputs this small need
CI_EXAMPLES = {"api": 150, "cli": 200}


def fuzz_settings(kind: str):
    """A fixed sample in CI (derandomized: the same inputs every run); 100,000 in a soak."""
    return sample(CI_EXAMPLES[kind], derandomize=True, database=None)


# ---------------------------------------------------------------- inputs

LOOK_ALIKES = ["²", "³", "ⁱ", "ᵀ", "₁", "３", "ｘ", "٣", "½", "\u200b", "\ufeff", "\xa0", "⊤", "\u2028", "\x00"]
TOKENS = POOL + LOOK_ALIKES + [
    "名", "ℓ", "ϵ", "^T", "'", "[", "]", "max(0, ", "logsumexp_j(", "relu'(", "rleu(", "σ_i(", "x/(", "^1", "\r\n",
    "1e400", "1e-400", "0x1", "1_000", "∞", "nan", "inf", "w_{i j}", "δ_(ij)(kl)", "loss_{,(gh)}[w]", "=", "\\",
    "\udccf\udc83", "\udcff",  # bytes that were not UTF-8, as Python hands them over
    "∂", "∂C/∂b", "∂²", "/∂", "∂y_i/∂w", "∂⁰", "∂b²∂",  # a derivative by scalars as the notes write it
]
OPENERS = ["(", "exp(", "sum_i(", "σ_i(", "max(0, ", "x/(", "^1", "^(", "-", "2 * (", "sqrt(1 + "]


@st.composite
def deep_text(draw) -> str:
    """Nesting near and past the parser's limit, balanced or not."""
    opener = draw(st.sampled_from(OPENERS))
    depth = draw(st.one_of(st.integers(0, 2 * MAX_NESTING), st.sampled_from([MAX_NESTING, MAX_NESTING + 1, 3000])))
    closes = draw(st.one_of(st.just(depth), st.integers(0, depth + 2)))
    core = draw(st.sampled_from(["x_i", "x", "w_ij x_j", "1"]))
    return draw(st.sampled_from(["y_i = ", "y = ", ""])) + opener * depth + core + ")" * closes


texts = st.one_of(
    mutants(),
    st.lists(st.sampled_from(TOKENS + list("xwbmyhatij")), max_size=30).map("".join),
    deep_text(),
    st.text(max_size=40),
)
WRTS = st.one_of(
    st.sampled_from(["w_gh", "w_g", "x_g", "b_g", "b", "eta", "W1_gh", "loss", "w_gg", "q_z", "", "w_ij", "x",
                     "h_k", "yhat_g", "w_g²", "w_{gh}", "w", "x_{,g}", "1", "w_gh w_kl"]),
    st.text(max_size=8),
)
PARAMETERS = st.lists(st.sampled_from(["w", "x", "b", "W1", "b1", "eta", "m", "nope", "", "w_gh"]), max_size=3)


# ---------------------------------------------------------------- one input


class RunAway(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` under test hides it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def ring(signum, frame):
        raise RunAway(f"still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _escape(what: str, err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name}" if tb else "?"
    return f"{what}: {type(err).__name__}: {str(err)[:300]} (at {where})"


def _attempt(problems: list[str], what: str, call, *args, **kwargs):
    """Run `call`; a result or an IndexCalcError (which renders) is fine, anything else
    is recorded as an escape. Returns the result, or None."""
    try:
        with time_limit(TIME_LIMIT):
            return call(*args, **kwargs)
    except ic.IndexCalcError as err:
        str(err)
    except RunAway as err:
        problems.append(f"{what}: runs away ({err})")
    except Exception as err:  # noqa: BLE001 - the finding
        problems.append(_escape(what, err))
    return None


def check_api(text: str, wrt: str, parameters: list[str]) -> list[str]:
    """Every public call on `text`; the escapes, each as 'call: Error: message (at file:line)'."""
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for check in (True, False):
            tree = _attempt(problems, f"parse(check={check})", ic.parse, text, check=check)
        if tree is not None:
            try:
                repr(tree)
            except BaseException as err:  # noqa: BLE001 - repr must never fail
                problems.append(_escape("repr", err))
            for name in ("__str__", "pretty", "latex", "einsum"):
                _attempt(problems, name, getattr(tree, name))
        for name, call in (("evaluate", ic.evaluate), ("evaluate_loops", ic.evaluate_loops)):
            _attempt(problems, name, call, text, FUZZ_ARRAYS)
        derivative = _attempt(problems, f"diff(wrt={wrt!r})", ic.diff, text, wrt)
        _attempt(problems, "simplify", ic.simplify, text)
        if derivative is not None:
            _attempt(problems, "simplify(diff)", ic.simplify, derivative)
            _attempt(problems, "evaluate(diff)", ic.evaluate, derivative, FUZZ_ARRAYS)
        compiled = _attempt(problems, f"compile(wrt={parameters!r})", ic.compile, text, wrt=parameters)
        if compiled is not None:
            _attempt(problems, "compiled(arrays)", compiled, FUZZ_ARRAYS)
    return problems


# ---------------------------------------------------------------- the command line


def _files() -> Path:
    """A folder of inputs for the command line: model files, arrays, garbage, a folder."""
    folder = Path(tempfile.mkdtemp(prefix="indexcalc-fuzz-", dir=os.environ.get("INDEXCALC_FUZZ_TMP")))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "xor.ic").write_text(
        "data x y\nbatch n mean\nparam W1[4, 2] xavier\nparam b1[4] zeros\nparam W2[1, 4] xavier\n"
        "param b2[1] zeros\ndataset xor\noptimizer adam lr=0.1\nepochs 2\nbatch_size 4\nmetric accuracy yhat y\n"
        "h_i = σ(W1_ij x_j + b1_i)\nyhat_k = σ(W2_ki h_i + b2_k)\nloss = (yhat_k - y_k)(yhat_k - y_k)\n"
    )
    (folder / "layer.ic").write_text("yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)\n")
    (folder / "garbage.ic").write_bytes(bytes(range(256)) * 4)
    (folder / "latin1.ic").write_bytes("y = é".encode("latin-1"))
    (folder / "empty.ic").write_text("")
    np.savez(folder / "arrays.npz", w=np.ones((3, 2)), x=np.ones(2), b=np.zeros(3), y=np.ones(3))
    np.save(folder / "one.npy", np.ones(3))
    (folder / "truncated.npz").write_bytes((folder / "arrays.npz").read_bytes()[:100])
    (folder / "sub").mkdir()
    model = modelfile.load(str(folder / "xor.ic")).model  # weights for `predict`, as `train --save` writes them
    model.save(str(folder / "xor.npz"), model.init_params(0))
    return folder


FILES = _files()
PATHS = [str(FILES / name) for name in ("xor.ic", "layer.ic", "garbage.ic", "latin1.ic", "empty.ic", "arrays.npz",
                                         "one.npy", "truncated.npz", "sub", "missing.ic", "layer.ic/under.npz", "xor.npz")]
MODEL_LINES = [
    "data x y", "batch n mean", "batch n sum", "batch none", "param W1[4, 2] xavier", "param b1[4] zeros",
    "param W2[1, 4] he", "param b2[1] normal(0.1)", "param v99[1]", "param W[10^11, 2]", "dataset xor",
    "dataset logistic", "dataset missing.npz", "optimizer adam lr=0.1", "optimizer sgd lr=-1", "optimizer adam learning_rate=1",
    "optimizer", "epochs 1", "epochs ²", "epochs 0", "batch_size 4", "metric accuracy yhat y", "metric accuracy yhat q",
    "h_i = σ(W1_ij x_j + b1_i)", "yhat_k = σ(W2_ki h_i + b2_k)", "loss = (yhat_k - y_k)(yhat_k - y_k)",
    "loss = yhat_k", "W2_c h_i", "onehot y 2", "seed -1", "loss loss",
]
VALUES = ["0", "1", "2", "-1", "3", "1e9", "²", "x", "", "0.1", "nan", "inf", "10^6", "all", "99999999999999999999"]


@st.composite
def model_file(draw) -> str:
    """A model file of random lines, written into the folder of inputs."""
    lines = draw(st.lists(st.one_of(st.sampled_from(MODEL_LINES), texts), max_size=12))
    path = FILES / f"random{draw(st.integers(0, 9))}.ic"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    return str(path)


@st.composite
def command_lines(draw) -> list[str]:
    """`indexcalc ...` arguments: a command, a source, options with values good and bad."""
    command = draw(st.sampled_from(["show", "eval", "diff"] * 3 + ["demo", "train", "train", "check", "check", "predict",
                                                                   "predict", "export", "export", "shwo", ""]))
    source = draw(st.one_of(texts, st.sampled_from(PATHS), model_file()))
    value = st.one_of(st.sampled_from(VALUES), st.sampled_from(VALUES), st.text(max_size=6))
    path = st.one_of(st.sampled_from(PATHS), st.sampled_from(["", "-", str(FILES / "out.npz"), str(FILES / "p.png")]))
    sizes = st.lists(st.one_of(st.sampled_from(["i=2", "j=3", "k=2", "n=2", "i=10^11", "i=²", "i=0"]),
                               st.text(max_size=5)), max_size=4)
    options = {
        "show": [],
        "eval": [st.tuples(st.just("--size"), sizes).map(lambda t: [t[0], *t[1]]), st.tuples(st.just("--npz"), path),
                 st.tuples(st.just("--seed"), value)],
        "diff": [st.tuples(st.just("--wrt"), WRTS), st.tuples(st.just("--wrt"), WRTS), st.tuples(st.just("--of"), value),
                 st.just(["--raw"]), st.just(["--inline"]), st.just(["--latex"]), st.just(["--unicode"]), st.just(["--all"])],
        "demo": [st.tuples(st.just("--seed"), value)],
        "train": [st.tuples(st.just("--epochs"), st.sampled_from(["1", "2", "0", "-1", "x", "²"])),
                  st.tuples(st.just("--lr"), value), st.tuples(st.just("--seed"), value),
                  st.tuples(st.just("--batch-size"), value), st.tuples(st.just("--checkpoint"), path),
                  st.tuples(st.just("--resume"), path), st.tuples(st.just("--plot"), path), st.just(["--quiet"])],
        "check": [st.tuples(st.just("--batch"), value), st.tuples(st.just("--entries"), value), st.just(["--no-loops"])],
        "predict": [st.tuples(st.just("--weights"), path), st.just(["--weights", str(FILES / "xor.npz")]),
                    st.tuples(st.just("--data"), st.one_of(path, st.sampled_from(["xor", "logistic", "nope"]))),
                    st.tuples(st.just("--output-name"), st.one_of(value, st.sampled_from(["yhat", "h", "loss", "W1"]))),
                    st.tuples(st.just("-o"), path)],
        "export": [st.tuples(st.just("--backend"), st.sampled_from(["numpy", "jax", "torch", "dask", ""])),
                   st.tuples(st.just("-o"), path), st.tuples(st.just("--size"), sizes).map(lambda t: [t[0], *t[1]]),
                   st.tuples(st.just("--dtype"), st.sampled_from(["float32", "float64", "int8", ""]))],
    }.get(command, [])
    argv = [command] if command else []
    if command in ("train", "check") or (command in ("predict", "export") and draw(st.booleans())):
        argv.append(draw(st.one_of(st.sampled_from(PATHS), model_file())))
        argv += ["--epochs", "2"] if command == "train" and draw(st.booleans()) else []
    elif command != "demo":
        argv.append(source)
    for option in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        argv += list(draw(option))
    if draw(st.integers(0, 9)) == 0:  # now and then a stray token
        argv.insert(draw(st.integers(0, len(argv))), draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=4))))
    return [a for a in argv if a not in ("-h", "--help", "--version")]


@contextlib.contextmanager
def _working_folder(folder: Path):
    """Run in `folder`, so that an output path like '-' or 'p.png' lands there."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def check_cli(argv: list[str]) -> list[str]:
    """`indexcalc ARGV` in-process: the problems (a bug reported, a traceback, exit 0 by
    SystemExit, a run-away)."""
    out, err = io.StringIO(), io.StringIO()
    problems: list[str] = []
    try:
        with time_limit(TIME_LIMIT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(), _working_folder(FILES):
            warnings.simplefilter("ignore")
            code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
        if code == 0:
            problems.append(f"exit 0 through SystemExit on {argv!r:.300}")
    except RunAway as stop:
        return [f"runs away on {argv!r:.300} ({stop})"]
    except BaseException as escaped:  # noqa: BLE001 - main() should have answered
        return [_escape(f"main({argv!r:.300})", escaped)]
    said = err.getvalue()
    if code == cli.EXIT_BUG:
        problems.append(f"a bug reported on {argv!r:.300}: {said.strip()[:400]}")
    elif code not in (0, 1, 2):
        problems.append(f"exit {code} on {argv!r:.300}: {said.strip()[:300]}")
    if "Traceback" in said + out.getvalue():
        problems.append(f"a traceback on {argv!r:.300}")
    return problems


# ---------------------------------------------------------------- the properties


@fuzz_settings("api")
@given(texts, WRTS, PARAMETERS)
def test_fuzz_public_calls_raise_only_index_calc_errors(text, wrt, parameters):
    assert check_api(text, wrt, parameters) == []


@fuzz_settings("cli")
@given(command_lines())
def test_fuzz_command_line_answers_in_one_line(argv):
    assert check_cli(argv) == []


def test_the_fuzz_sees_an_escape_and_a_run_away(monkeypatch):
    """The checkers would notice: an exception outside the family, a bug reported by the
    command line, a call that does not return."""
    monkeypatch.setattr(ic, "simplify", lambda source: {}["missing"])
    assert any(p.startswith("simplify: KeyError") for p in check_api("y = x", "x", []))
    from indexcalc.cli import formula

    monkeypatch.setattr(formula, "_command_show", lambda args: [][1])
    assert any("a bug reported" in p for p in check_cli(["show", "x"]))
    monkeypatch.setattr(formula, "_command_show", lambda args: time.sleep(60))
    monkeypatch.setattr("test_fuzz.TIME_LIMIT", 0.2)
    assert any("runs away" in p for p in check_cli(["show", "x"]))


# ---------------------------------------------------------------- escapes the soak found
# Minimal reproductions of escapes in modules this fuzz does not own; each must flip.


def test_compiled_delta_of_unknown_size_is_an_index_calc_error():
    compiled = ic.compile("y = δ_ij δ_ij", wrt=[])
    with pytest.raises(ic.IndexCalcError, match="size of index"):
        compiled({})


def test_simplify_of_a_deeply_nested_derivative_does_not_run_away():
    """The soak: over 10 s, cubic in the depth; since a847c5e about 1.5 s (its speed is a
    row of benchmarks/bench_gradients.py; the limit here only catches a run-away), and
    the simplified derivative has the unsimplified one's values."""
    derivative = ic.diff("y_i = " + "sqrt(1 + " * 80 + "w_ij x_j" + ")" * 80, "w_gh")
    try:
        with time_limit(60.0):
            simplified = ic.simplify(derivative)
    except RunAway:
        pytest.fail("simplify ran for more than 60 s", pytrace=False)
    rng = np.random.default_rng(80)
    arrays = {"w": rng.uniform(0, 1, (2, 3)), "x": rng.uniform(0, 1, 3)}
    np.testing.assert_allclose(ic.evaluate(simplified, arrays), ic.evaluate(derivative, arrays), rtol=1e-10)
