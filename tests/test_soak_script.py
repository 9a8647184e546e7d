"""scripts/soak.py, the cross-route property at scale (issue 8), on a few programs: its
count, its verdict and its summary are what the closing notes quote."""

import contextlib
import importlib
import io
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def short_soak(tmp_path_factory):
    """One short soak (3 programs, seed 0) that the tests below read: its exit code, what it
    printed and its --out file. One job, in this process: a pool would fork a process that
    may have loaded JAX."""
    out = tmp_path_factory.mktemp("soak") / "failures.txt"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.syspath_prepend(str(SCRIPTS))
        code = importlib.import_module("soak").main(["--count", "3", "--chunk", "2", "--jobs", "1", "--every", "0",
                                                     "--out", str(out)])
    return code, printed.getvalue(), out


def test_a_short_soak_counts_its_programs_and_writes_its_summary(short_soak):
    code, printed, out = short_soak
    last = printed.strip().splitlines()[-1]
    assert code == 0, printed
    assert last.startswith("soak: 3 programs, 0 disagreements, 0 unexpected exceptions"), last
    assert "route modules" in last and "compile.py" in last and "model.py" not in last
    written = out.read_text()
    assert "constructs drawn (3 programs)" in written and "time by route" in written
    assert not Path(str(out) + ".summary").exists()  # the run ended: its summary is in --out


def test_the_tally_adds_the_seeds_of_one_fingerprint_and_counts_a_repeated_seed_once(short_soak, tmp_path, capsys,
                                                                                     monkeypatch):
    """scripts/soak_tally.py on a real run's log (its last line) and on made ones: a seed
    counts once per draw (`--programs`), a log older than the option drew the main generator."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    real = tmp_path / "seed0.log"
    real.write_text(short_soak[1])
    fingerprint = real.read_text().split("route modules ")[-1].split()[0]
    for name, seed, counts, draw in (("a.log", 8, (50, 100), ""), ("b.log", 8, (60,), ""), ("c.log", 9, (40,), ""),
                                     ("d.log", 8, (30,), ", programs all")):
        lines = [f"soak of /x/indexcalc at abc1234 (indexcalc/ tree e7f): 100000 programs, seed {seed}{draw}"]
        lines += [f"  {n} programs, 0 disagreements, 0 unexpected exceptions, 4.0 programs/s, route modules "
                  f"{fingerprint}" for n in counts]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    assert importlib.import_module("soak_tally").main([str(p) for p in sorted(tmp_path.glob("*.log"))]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith(fingerprint))
    assert "0+all (3), 8 (100), 8+all (30), 9 (40)" in row and row.split()[-3] == "173"
    assert "1 log(s) repeat a seed" in table


def test_a_pool_that_returns_nothing_for_a_while_says_so(monkeypatch):
    """A stalled job (blocked, so the CPU-time limit never fires) printed nothing at all;
    now a line per wait, which the tally does not take for progress."""
    import multiprocessing

    monkeypatch.syspath_prepend(str(SCRIPTS))
    soak, tally = importlib.import_module("soak"), importlib.import_module("soak_tally")
    answers = iter([multiprocessing.TimeoutError(), multiprocessing.TimeoutError(), "a", multiprocessing.TimeoutError(),
                    "b", StopIteration()])

    class Results:
        def next(self, timeout):
            answer = next(answers)
            if isinstance(answer, BaseException):
                raise answer
            return answer

    said = []
    assert list(soak.with_waits(Results(), 120, said.append)) == ["a", "b"]
    assert said == ["  waiting: no chunk has finished for 120 s", "  waiting: no chunk has finished for 240 s",
                    "  waiting: no chunk has finished for 120 s"]
    assert not any(tally.PROGRESS.search(line) for line in said)
    assert list(soak.with_waits(iter(["a"]), 120, said.append)) == ["a"]


def test_the_fingerprint_is_of_the_code_not_of_its_docstrings(tmp_path, monkeypatch):
    """A docstring or a comment changes no route: the count goes on. A statement does."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    soak = importlib.import_module("soak")
    module = tmp_path / "m.py"

    def code(text: str) -> bytes:
        module.write_text(text)
        return soak._code(module)

    base = code('"""A module."""\n\ndef f(x):\n    """Twice x."""\n    return 2 * x  # doubled\n')
    assert code('"""Another."""\n\ndef f(x):\n    """x twice."""\n    return 2 * x\n') == base
    assert code('def f(x):\n    return 2 * x\n') == base
    assert code('def f(x):\n    return 3 * x\n') != base
    assert code('def f(x):\n    """Twice x."""\n    return "2 * x"\n') != base


DRAW = """
import hashlib, sys, warnings
sys.path.insert(0, {tests!r})
warnings.simplefilter("ignore")
from hypothesis import HealthCheck, Phase, given, seed, settings
from families import soak_cases
texts = []
@seed(4242)
@settings(max_examples=80, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
@given(soak_cases())
def one(case):
    texts.append(case.text)
one()
print(len(texts), hashlib.sha256("\\n=\\n".join(texts).encode()).hexdigest())
"""


def test_a_seed_draws_the_same_programs_in_every_process():
    """A soak's seed names its programs: a failure is found again by its seed and chunk,
    and two runs of one seed soak the same programs. Python salts its string hashes per
    process, so a generator that walks a set of letters (a tensor's axes drawn from
    `out`, a frozenset) wrote them in another order in each process."""
    import os
    import subprocess
    import sys

    source = DRAW.format(tests=str(Path(__file__).resolve().parent))
    drawn = set()
    for salt in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        drawn.add(run.stdout.split()[-1])
        assert run.stdout.split()[0] == "80"
    assert len(drawn) == 1, drawn
