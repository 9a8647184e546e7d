"""Soak the fuzz of issue 9: N random inputs to the public calls and to the command line.

    python scripts/fuzz.py --count 100000 --seed 1 --jobs 2 --out escapes.txt

The inputs and the checks are those of tests/test_fuzz.py (`check_api`, `check_cli`); unlike
the test, which stops at the first escape, this runs all N and writes every escape to --out,
then a summary by class (the call, the exception and where it was raised). Half the
inputs go to the public calls, half to the command line (`--kind` picks one). The inputs
come from Hypothesis in chunks of --chunk examples seeded from --seed: a run is
reproducible and its memory bounded. The last line reads
`fuzz: N inputs, E escapes (C classes)`; the exit status is 1 if E > 0.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import re
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402


def run_chunk(task):
    """Run one chunk of inputs; return how many ran and the escapes found, as text."""
    chunk, size, base_seed, kind = task
    import test_fuzz as fuzz

    found = {"count": 0, "escapes": []}
    common = dict(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))

    @seed(base_seed * 1_000_003 + chunk)
    @settings(**common)
    @given(fuzz.texts, fuzz.WRTS, fuzz.PARAMETERS)
    def api(text, wrt, parameters):
        found["count"] += 1
        for problem in fuzz.check_api(text, wrt, parameters):
            found["escapes"].append(f"{problem}\n  input: ic.*({text!r}), wrt={wrt!r}, parameters={parameters!r}")

    @seed(base_seed * 1_000_003 + chunk)
    @settings(**common)
    @given(fuzz.command_lines())
    def command_line(argv):
        found["count"] += 1
        found["escapes"].extend(fuzz.check_cli(argv))

    (api if kind == "api" else command_line)()
    return found


def signature(escape: str) -> str:
    """The class of an escape: the call or command, the exception and where it was raised."""
    first = escape.splitlines()[0]
    call = re.match(r"(a bug reported|runs away|a traceback|exit \S+|\w+(?:\(check=\w+\))?)", first)
    error = re.search(r"(\w+(?:Error|Exception|Interrupt|Exit)\b|runs away)", first)
    where = re.search(r"\(at ([^)]*)\)", first)
    return " / ".join(x.group(1) for x in (call, error, where) if x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs in all (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--chunk", type=int, default=500, help="inputs per Hypothesis run (default 500)")
    parser.add_argument("--kind", choices=["api", "cli", "both"], default="both")
    parser.add_argument("--out", default="fuzz-escapes.txt", help="where to write every escape")
    args = parser.parse_args()

    kinds = ["api", "cli"] if args.kind == "both" else [args.kind]
    chunks = max(1, args.count // args.chunk)
    tasks = [(k, args.chunk, args.seed, kinds[k % len(kinds)]) for k in range(chunks)]
    count, escapes, start = 0, [], time.time()
    # the workers' folders of input files go here, removed at the end (a worker's atexit does not run)
    scratch = tempfile.TemporaryDirectory(prefix="indexcalc-fuzz-")
    os.environ["INDEXCALC_FUZZ_TMP"] = scratch.name
    with scratch, multiprocessing.Pool(args.jobs) as pool, open(args.out, "w", encoding="utf-8") as out:
        for done, result in enumerate(pool.imap_unordered(run_chunk, tasks), 1):
            count += result["count"]
            escapes += result["escapes"]
            for escape in result["escapes"]:
                out.write(escape + "\n\n")
            out.flush()
            print(f"fuzz: {done}/{chunks} chunks, {count} inputs, {len(escapes)} escapes, "
                  f"{time.time() - start:.0f} s", flush=True)
    classes = collections.Counter(signature(e) for e in escapes)
    for name, n in classes.most_common():
        print(f"  {n:6d}  {name}")
    print(f"fuzz: {count} inputs, {len(escapes)} escapes ({len(classes)} classes); every escape in {args.out}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
