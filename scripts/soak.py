"""Soak the cross-route property (issue 8): N random programs, every route compared.

    python scripts/soak.py --count 100000 --seed 1 --jobs 2 --out failures.txt

Unlike the property under pytest, which stops at the first failure and shrinks it, this
runs all N programs and writes every failing one to --out (the program, what it was
differentiated by, how to remake its arrays, which routes disagreed and by how much, or
the traceback), then a summary of the failure classes, the constructs drawn and the time
by route (kept in OUT.summary while the run goes on). It uses the same generator
(tests/strategies.py) and the same comparison (tests/routes.py) as tests/test_routes.py, and
by default (`--programs all`) the families of tests/families.py beside it (masks, max and
min, convolutions, inverses and determinants, long chains, named indices: seven programs
in sixteen), which their own test modules run in CI.

The programs come from Hypothesis, driven in chunks of --chunk examples with seeds derived
from --seed, so a run is reproducible and its memory stays bounded. The last line reads
`soak: N programs, D disagreements, E unexpected exceptions`: D counts programs on which
some route gave other numbers or refused the (valid) program, E those on which some
route raised something other than an IndexCalcError.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import multiprocessing
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's indexcalc, not an installed one

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from routes import Problem, check  # noqa: E402
from families import soak_cases  # noqa: E402
from strategies import ROUTE_PROGRAMS, route_cases  # noqa: E402

DRAWS = {  # --programs: the families too, the main generator alone, or it with its rarer constructs dense
    "all": soak_cases,
    "main": route_cases,
    "dense": lambda: route_cases(settings=dataclasses.replace(ROUTE_PROGRAMS, mask=8, compare=6, jacobian=8)),
}


SLOW = 5.0  # CPU seconds: a route slower than this on a program this small is reported (not failed)


def run_chunk(task):
    """Run one chunk of programs; return how many ran, the failures (as text, with their
    problem signatures and kinds) and the constructs drawn."""
    chunk, size, base_seed, timeout, programs = task
    results = {"count": 0, "failures": [], "slow": [], "tags": collections.Counter(), "seconds": collections.Counter()}
    warnings.simplefilter("ignore")

    @seed(base_seed * 1_000_003 + chunk)
    @settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(DRAWS[programs]())
    def one(case):
        results["count"] += 1
        results["tags"].update(case.tags)
        seconds: dict[str, float] = {}
        try:
            problems = check(case, seconds, timeout)
        except Exception as err:  # noqa: BLE001 - outside any route: a late alarm, say
            problems = [Problem("check", "raised", traceback.format_exc(), True, f"{type(err).__name__}: {err}")]
        results["seconds"].update(seconds)
        slow = {route: round(t, 1) for route, t in seconds.items() if t > SLOW}
        if slow:
            results["slow"].append(f"{case}\nslow routes (CPU seconds): {slow}")
        if problems:
            results["failures"].append({
                "text": f"{case}\nproblems:\n" + "\n".join("  " + str(p).replace("\n", "\n    ") for p in problems),
                "signatures": sorted({p.signature() for p in problems}),
                "disagreement": any(not p.crash for p in problems),
                "crash": any(p.crash for p in problems),
            })

    one()
    results["modules"] = sorted(
        m.__file__ for name, m in list(sys.modules.items())
        if (name == "indexcalc" or name.startswith("indexcalc.")) and getattr(m, "__file__", None)
    )
    return results


# Loaded by `import indexcalc` and never called by a route (checked with a profiler over
# sixty programs: tests/routes.py runs parse, diff, simplify, evaluate, the loops and compile
# only): models and training, which change far more often than the routes
NOT_ROUTES = {
    "__init__.py", "model.py", "datasets.py", "checkpoints.py", "metrics.py", "optimisers.py", "first_order.py",
    "schedules.py", "second_order.py", "step.py", "train.py", "training_arrays.py", "training_checks.py",
    "training_errors.py", "saved.py", "modelfile.py", "declarations.py", "per_sample.py",
}


def fingerprint(files) -> str:
    """A hash of the code of the indexcalc modules the routes run: two runs with the same
    fingerprint soaked the same code, so their counts add up, whatever else changed
    (training, the command line, a docstring or a comment) between their commits. The code
    is the module's syntax tree without its docstrings, which no route reads."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(route_modules(files)):
        path = Path(file)
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + _code(path) + b"\0")
    return digest.hexdigest()[:12]


def _code(path: Path) -> bytes:
    """The module's syntax tree, its docstrings (module, class, function) left out."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _commit() -> str:
    """The checkout's commit, the tree of its indexcalc/ (runs on commits with the same tree
    soak the same code, so their counts add up) and whether it has changes."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        tree = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD:indexcalc"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "indexcalc"], capture_output=True, text=True)
    except OSError:
        return "an unknown commit (no git)"
    return head.stdout.strip() + f" (indexcalc/ tree {tree.stdout.strip()})" + (" with uncommitted changes to indexcalc/" if dirty.stdout.strip() else "")


def route_modules(files) -> list[str]:
    return [f for f in files if str(Path(f).relative_to(ROOT / "indexcalc")) not in NOT_ROUTES]


def _summary(count, tags, classes, seconds, slow, out) -> str:
    """What the run drew, the failure classes, where its time went. Written to --out at the
    end and, at every progress line, to --out + ".summary", replaced each time: a run
    stopped before its end (a session's end kills it) keeps it too."""
    summary = ["", f"constructs drawn ({count} programs):"]
    summary += [f"  {n:7d}  {tag}" for tag, n in sorted(tags.items())]
    summary += ["failure classes (programs showing each):"]
    summary += [f"  {n:7d}  {signature}" for signature, n in classes.most_common()]
    summary += ["time by route (CPU seconds, all programs):"]
    summary += [f"  {t:9.1f}  {route}" for route, t in seconds.most_common()]
    summary += [f"programs with a route slower than {SLOW:.0f} CPU-s: {len(slow)} (listed at the end of {out})"]
    return "\n".join(summary)


def _with_slow(summary: str, slow: list[str]) -> str:
    """A summary as the files hold it: the slow programs listed after it."""
    return summary + "\n\n" + "\n\n".join(slow) + "\n"


def with_waits(results, every: float, say):
    """A pool's results as they come, and a line every `every` seconds that none comes. The
    route limit counts CPU time, so a job blocked without using the CPU never reaches it:
    a stall is said, not silent. (Not a progress line: the tally does not read it.)"""
    if not hasattr(results, "next") or every <= 0:  # one job, in this process
        yield from results
        return
    waited = 0.0
    while True:
        try:
            result = results.next(timeout=every)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            waited += every
            say(f"  waiting: no chunk has finished for {waited:.0f} s")
            continue
        waited = 0.0
        yield result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="programs to run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--out", default="failures.txt", help="file for the failing programs and the summary (OUT.summary while it runs)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1: in this process, no pool)")
    parser.add_argument("--chunk", type=int, default=200, help="programs per Hypothesis run")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one route may take")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between progress lines (and between 'waiting' lines while no chunk finishes)")
    parser.add_argument("--programs", choices=sorted(DRAWS), default="all",
                        help="all: the main generator and the families of tests/families.py; main: the main generator "
                             "alone; dense: it with masks and comparisons in most products and the notes' Jacobians "
                             "in most relabellings (masks and comparisons found two defects "
                             "in a few thousand programs where the mix of 'all' draws them in one in thirty)")
    args = parser.parse_args(argv)

    chunks = -(-args.count // args.chunk)
    tasks = [(k, min(args.chunk, args.count - k * args.chunk), args.seed, args.timeout, args.programs) for k in range(chunks)]
    count = failed = disagreements = crashes = 0
    classes: collections.Counter = collections.Counter()
    tags: collections.Counter = collections.Counter()
    seconds: collections.Counter = collections.Counter()
    slow: list[str] = []
    modules: set[str] = set()
    import indexcalc

    print(f"soak of {Path(indexcalc.__file__).parent} at {_commit()}: {args.count} programs, seed {args.seed}, programs {args.programs}", flush=True)
    start = last = time.time()
    # one job runs in this process: no fork (a process that has loaded JAX must not fork)
    with open(args.out, "w") as out, (multiprocessing.Pool(args.jobs) if args.jobs > 1 else contextlib.nullcontext()) as pool:
        results = pool.imap_unordered(run_chunk, tasks) if pool else map(run_chunk, tasks)
        for result in with_waits(results, args.every, lambda line: print(line, flush=True)):
            count += result["count"]
            tags.update(result["tags"])
            seconds.update(result["seconds"])
            slow += result["slow"]
            modules.update(result["modules"])
            for failure in result["failures"]:
                failed += 1
                disagreements += failure["disagreement"]
                crashes += failure["crash"]
                classes.update(failure["signatures"])
                out.write(f"=== failure {failed}\n{failure['text']}\n\n")
            out.flush()
            if time.time() - last >= args.every:
                last = time.time()
                rate = count / (last - start)
                print(f"  {count} programs, {disagreements} disagreements, {crashes} unexpected exceptions,"
                      f" {rate:.1f} programs/s, route modules {fingerprint(modules)}", flush=True)
                Path(args.out + ".summary").write_text(_with_slow(_summary(count, tags, classes, seconds, slow, args.out), slow))
        elapsed = time.time() - start
        summary = _summary(count, tags, classes, seconds, slow, args.out)
        out.write(_with_slow(summary, slow))
    Path(args.out + ".summary").unlink(missing_ok=True)
    print(summary)
    print(f"elapsed {elapsed:.0f} s, {count / elapsed:.2f} programs/s")
    print(f"soak: {count} programs, {disagreements} disagreements, {crashes} unexpected exceptions, at {_commit()},"
          f" route modules {fingerprint(modules)} ({len(route_modules(modules))} files: "
          + " ".join(sorted(str(Path(m).relative_to(ROOT / "indexcalc")) for m in route_modules(modules))) + ")")
    return 1 if disagreements or crashes else 0


if __name__ == "__main__":
    sys.exit(main())
