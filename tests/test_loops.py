"""The loop reference, vectorised, against its first form: one number at a time.

`scalar_loops` below is the reference evaluator as it was first written, for every entry
of the result and every value of every summed index a Python loop. The vectorised
`ic.evaluate_loops` must give its numbers on every generated program, whichever of its
two ways of enumerating a summed index it takes (on an array axis, or by a Python loop
past the memory budget), and however the result's entries are split into chunks.
`evaluate_loops_at` must give exactly the entries of the whole result it says it gives.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import itertools
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc import cli, functions, loops
from indexcalc.expr import Call, Delta, Number, Power, Product, Reduce, Sum, Tensor, leaf_factors
from indexcalc.indices import free_indices, relabelled_index, summed_indices
from indexcalc.driver import run
from strategies import SAFE_PROGRAMS, ProgramGenerator, sample

# --------------------------------------------------------------------------------------
# The first form of the reference: one number at a time


REFERENCE_LIMIT = 100_000  # products the first form multiplies out for one program, each a Python loop step
_PRODUCTS = [0]  # counted by _value, reset by scalar_loops


class ReferenceTooSlow(Exception):
    """The first form would multiply out more than REFERENCE_LIMIT products on this
    program (sizes up to 4 on ten letters are a million for one entry): the property skips
    it, as the soak skips the explicit loops past routes.LOOPS_LIMIT. A bound, seldom
    reached: 2,000 draws needed at most 75,000."""


def scalar_loops(source, arrays):
    _PRODUCTS[0] = 0
    return run(source, arrays,
               lambda eq, env: _fill(eq.rhs, eq.lhs.all_indices, frozenset(eq.lhs.all_indices), env),
               lambda node, env: _fill(node, free_indices(node), frozenset(), env))


def reference(source, arrays):
    """scalar_loops, or the example rejected if it is too slow to run."""
    try:
        return scalar_loops(source, arrays)
    except ReferenceTooSlow:
        reject()


def _fill(node, axes, fixed, env):
    out = np.empty([env.size(i) for i in axes])
    for position in itertools.product(*(range(env.size(i)) for i in axes)):
        out[position] = _value(node, dict(zip(axes, position)), fixed, env)
    return out


def _value(node, at, fixed, env) -> float:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, (Tensor, Delta, Product)):
        factors = [node] if isinstance(node, (Tensor, Delta)) else list(leaf_factors(node))
        summed = summed_indices(node, fixed)
        total = 0.0
        for values in itertools.product(*(range(env.size(i)) for i in summed)):
            _PRODUCTS[0] += 1
            if _PRODUCTS[0] > REFERENCE_LIMIT:
                raise ReferenceTooSlow
            inner = {**at, **dict(zip(summed, values))}
            term = 1.0
            for f in factors:
                if isinstance(f, Tensor):
                    term *= float(env.array(f)[tuple(inner[i] for i in f.all_indices)])
                elif isinstance(f, Delta):
                    term *= 1.0 if all(inner[a] == inner[b] for a, b in f.pairs) else 0.0
                else:
                    term *= _value(f, inner, fixed, env)
            total += term
        return total
    if isinstance(node, Sum):
        return sum(_value(term, at, fixed, env) for term in node.terms)
    if isinstance(node, Power):
        with np.errstate(all="ignore"):
            return float(np.power(_value(node.base, at, fixed, env), _value(node.exponent, at, fixed, env)))
    if isinstance(node, Call):
        if node.relabel is not None:
            at = {**at, relabelled_index(node, fixed): at[node.relabel]}
        with np.errstate(all="ignore"):
            return float(functions.lookup(node.func).compute(np.float64(_value(node.arg, at, fixed, env))))
    if isinstance(node, Reduce):
        inner_fixed = fixed | set(node.indices)
        values = [_value(node.body, {**at, **dict(zip(node.indices, picked))}, inner_fixed, env)
                  for picked in itertools.product(*(range(env.size(i)) for i in node.indices))]
        return float(functions.reduce_array(node.op, np.array(values), (0,)))
    raise TypeError(type(node).__name__)


# --------------------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def limits(budget: int, chunk: int):
    """The loops with another memory budget and chunk size, for the length of a block."""
    saved = loops.BUDGET, loops.CHUNK
    loops.BUDGET, loops.CHUNK = budget, chunk
    try:
        yield
    finally:
        loops.BUDGET, loops.CHUNK = saved


@st.composite
def programs(draw):
    gen = ProgramGenerator(draw(st.data()), SAFE_PROGRAMS)
    text = gen.program()
    return text, gen.arrays(draw(st.integers(0, 2**32 - 1)))


PROPERTY = sample(80)
WAYS = [(1 << 20, 1 << 13), (1, 1 << 13), (1, 2), (7, 3)]  # (budget, chunk): all on axes ... all looped, tiny chunks


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# --------------------------------------------------------------------------------------
# The vectorised loops give the first form's numbers


@PROPERTY
@given(programs(), st.sampled_from(WAYS))
def test_vectorised_loops_agree_with_scalar_loops(case, way):
    text, arrays = case
    expected = reference(text, arrays)
    with limits(*way):
        got = ic.evaluate_loops(text, arrays)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"{text}\nbudget, chunk = {way}")


@PROPERTY
@given(programs(), st.integers(1, 40), st.integers(0, 2**16))
def test_sampled_entries_are_the_entries_of_the_whole(case, count, seed):
    text, arrays = case
    whole = np.asarray(reference(text, arrays))
    with limits(5, 4):
        sample = loops.evaluate_loops_at(text, arrays, count, seed=seed)
    assert sample.shape == whole.shape and sample.total == whole.size
    assert len(sample.values) == min(count, whole.size) == len({tuple(p) for p in sample.positions})
    np.testing.assert_allclose(sample.values, whole[tuple(sample.positions.T)], rtol=1e-10, atol=1e-12, err_msg=text)


@pytest.mark.parametrize("budget", [1, 1 << 20])
def test_mean_and_logsumexp_of_parts_are_those_of_the_whole(budget):
    z = 800.0 * rand(3, 5, 4)  # exp overflows: logsumexp must stay shifted when split into parts
    arrays = {"z": z}
    top = z.max(axis=(1, 2))
    stable = top + np.log(np.exp(z - top[:, None, None]).sum(axis=(1, 2)))
    with limits(budget, 2):
        np.testing.assert_allclose(ic.evaluate_loops("s_n = logsumexp_ck(z_nck)", arrays), stable, rtol=1e-12)
        np.testing.assert_allclose(ic.evaluate_loops("s_n = mean_ck(z_nck)", arrays), z.mean(axis=(1, 2)), rtol=1e-12)
        np.testing.assert_allclose(ic.evaluate_loops("s_n = sum_c(z_nck z_nck)", arrays),
                                   (z * z).sum(axis=(1, 2)), rtol=1e-12)


def test_a_summed_index_past_the_budget_is_looped_and_still_summed():
    w, x = rand(40, 30), rand(30, seed=1)
    with limits(100, 8):  # 8 entries times 30 values of j do not fit in 100
        np.testing.assert_allclose(ic.evaluate_loops("y_i = w_ij x_j", {"w": w, "x": x}), w @ x, rtol=1e-12)


def test_float32_inputs_are_enumerated_in_float64():
    w, x = rand(3, 4).astype(np.float32), rand(4, seed=1).astype(np.float32)
    got = ic.evaluate_loops("y_i = w_ij x_j", {"w": w, "x": x})
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, w.astype(float) @ x.astype(float), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Entries: a sample, or given positions; earlier lines whole


def test_a_sample_is_drawn_by_its_seed_and_never_repeats_an_entry():
    arrays = {"w": rand(6, 7), "x": rand(7, seed=1)}
    a = loops.evaluate_loops_at("y_ik = sum_j(w_ij w_kj x_j)", arrays, 10, seed=3)
    b = loops.evaluate_loops_at("y_ik = sum_j(w_ij w_kj x_j)", arrays, 10, seed=3)
    c = loops.evaluate_loops_at("y_ik = sum_j(w_ij w_kj x_j)", arrays, 10, seed=4)
    assert np.array_equal(a.positions, b.positions) and not np.array_equal(a.positions, c.positions)
    assert a.positions.shape == (10, 2) and len(np.unique(a.positions, axis=0)) == 10
    everything = loops.evaluate_loops_at("y_ik = sum_j(w_ij w_kj x_j)", arrays, np.int64(1000))
    assert len(everything.values) == everything.total == 36


def test_given_positions_are_computed_in_the_order_given():
    w = rand(4, 5)
    positions = np.array([[3, 4], [0, 0], [3, 4], [1, 2]])
    sample = loops.evaluate_loops_at("y_ij = 2 w_ij", {"w": w}, positions)
    np.testing.assert_array_equal(sample.positions, positions)
    np.testing.assert_allclose(sample.values, 2 * w[tuple(positions.T)])


def test_only_the_last_line_of_a_program_is_sampled():
    arrays = {"w": rand(5, 3), "x": rand(3, seed=1), "v": rand(5, seed=2)}
    program = "h_i = tanh(w_ij x_j)\ny_ik = h_i v_k"  # y reads every entry of h
    sample = loops.evaluate_loops_at(program, arrays, 4, seed=1)
    h = np.tanh(arrays["w"] @ arrays["x"])
    assert sample.shape == (5, 5)
    np.testing.assert_allclose(sample.values, np.outer(h, arrays["v"])[tuple(sample.positions.T)], rtol=1e-12)


def test_a_scalar_result_is_one_entry():
    sample = loops.evaluate_loops_at("s = x_i x_i", {"x": np.arange(3.0)}, 5)
    assert sample.shape == () and sample.positions.shape == (1, 0)
    np.testing.assert_allclose(sample.values, [5.0])
    given = loops.evaluate_loops_at("s = x_i x_i", {"x": np.arange(3.0)}, np.zeros((2, 0), dtype=int))
    np.testing.assert_allclose(given.values, [5.0, 5.0])


@pytest.mark.parametrize("entries", [0, -2, 2.5, True, np.array([[5, 0]]), np.array([[0, 0, 0]]), np.array([[0.0, 1.0]])])
def test_entries_that_name_nothing_are_refused(entries):
    with pytest.raises(ic.IndexCalcError):
        loops.evaluate_loops_at("y_ij = w_ij", {"w": rand(4, 5)}, entries)


# --------------------------------------------------------------------------------------
# Progress and independence


class Recorder:
    def __init__(self):
        self.bars = []

    def __call__(self, total, desc):
        self.bars.append({"total": total, "desc": desc, "done": 0, "closed": False})
        return self

    def update(self, n):
        self.bars[-1]["done"] += n

    def close(self):
        self.bars[-1]["closed"] = True


def test_progress_counts_every_entry_of_every_line():
    recorder = Recorder()
    with limits(1 << 20, 4):
        ic.evaluate_loops("h_i = tanh(w_ij x_j)\ny_ik = h_i w_kj x_j", {"w": rand(5, 3), "x": rand(3)},
                          progress=recorder)
    assert [(b["desc"], b["total"], b["done"], b["closed"]) for b in recorder.bars] == [
        ("h_i", 5, 5, True), ("y_ik", 25, 25, True)]


def test_the_reference_shares_no_code_with_the_einsum_route():
    """Its worth is being a second reading: it may not contract by einsum."""
    tree = ast.parse(inspect.getsource(loops))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"opt_einsum", "evaluate", "compile", "plan"}, imported
    assert "einsum" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


# --------------------------------------------------------------------------------------
# indexcalc check: sampled entries, both references, options validated

EXAMPLES = Path(ic.__file__).parent / "examples"


def check_rows(out: str) -> dict[str, tuple[str, float]]:
    rows = {}
    for line in out.splitlines():
        m = re.fullmatch(r"\s+(\w+)\s+(skipped|[0-9.e+-]+)\s+([0-9.e+-]+)", line)
        if m:
            rows[m.group(1)] = (m.group(2), float(m.group(3)))
    return rows


def test_check_compares_a_stated_sample_of_entries(capsys):
    assert cli.main(["check", str(EXAMPLES / "fizzbuzz.ic"), "--entries", "30"]) == 0
    out = capsys.readouterr().out
    assert "W1 30 of 1000, b1 30 of 100, W2 30 of 400, b2 all 4" in out, out
    rows = check_rows(out)
    assert set(rows) == {"W1", "b1", "W2", "b2"}
    assert all(float(loops) < 1e-9 and numeric < 1e-6 for loops, numeric in rows.values()), out


def test_check_and_export_without_a_file_take_the_built_in_model(capsys):
    """As `indexcalc train` does: the Fizz Buzz model when no file is named."""
    assert cli.main(["check", "--entries", "30"]) == 0
    assert set(check_rows(capsys.readouterr().out)) == {"W1", "b1", "W2", "b2"}
    assert cli.main(["export"]) == 0
    module = capsys.readouterr().out
    assert "fizzbuzz.ic" in module and "def loss_and_grads(arrays)" in module


def test_check_finds_a_wrong_gradient_entry_by_both_references(monkeypatch, capsys):
    from indexcalc.model import Model

    right = Model.loss_and_grads

    def one_entry_off(self, params, data):
        value, grads = right(self, params, data)
        grads = {**grads, "W1": np.array(grads["W1"], dtype=float)}
        grads["W1"][1, 0] += 1e-3
        return value, grads

    monkeypatch.setattr(Model, "loss_and_grads", one_entry_off)
    assert cli.main(["check", str(EXAMPLES / "xor.ic"), "--entries", "all"]) == 0
    rows = check_rows(capsys.readouterr().out)
    assert float(rows["W1"][0]) == pytest.approx(1e-3, rel=1e-3) and rows["W1"][1] == pytest.approx(1e-3, rel=1e-2)
    assert float(rows["b1"][0]) < 1e-9


def test_check_without_loops_says_so(capsys):
    assert cli.main(["check", str(EXAMPLES / "xor.ic"), "--no-loops"]) == 0
    rows = check_rows(capsys.readouterr().out)
    assert {loops for loops, _ in rows.values()} == {"skipped"} and max(n for _, n in rows.values()) < 1e-6


@pytest.mark.parametrize("option", [["--batch", "0"], ["--batch", "-1"], ["--entries", "0"], ["--entries", "some"]])
def test_check_refuses_counts_below_one(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", str(EXAMPLES / "xor.ic"), *option])
    assert exit_.value.code == 2
    assert f"argument {option[0]}: expected a positive whole number" in capsys.readouterr().err


def test_check_progress_without_tqdm_is_a_line_a_second_after_the_first(monkeypatch, capsys):
    from indexcalc.cli import check

    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed
    clock = iter([0.0, 0.5, 1.2, 1.7, 2.4])
    monkeypatch.setattr(check.time, "monotonic", lambda: next(clock))
    bar = check.progress_bars("W1 by loops")(total=40, desc="loss_{,(gh)}[W1]")
    for _ in range(4):
        bar.update(10)
    bar.close()
    assert capsys.readouterr().err.splitlines() == ["  W1 by loops: loss_{,(gh)}[W1]: 20 of 40 entries (1 s)",
                                                    "  W1 by loops: loss_{,(gh)}[W1]: 40 of 40 entries (2 s)"]
