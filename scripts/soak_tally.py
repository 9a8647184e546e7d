"""Add up the soak runs that tested the same route code, from their logs.

`scripts/soak.py` prints a progress line every so often, each naming the fingerprint of
the route modules it runs (`route modules de37e4445ab3`). A run stopped by the end of a
session leaves its last line as its count; runs on the same fingerprint with different
seeds drew different programs, so their counts add up. This reads the logs and prints,
per fingerprint, each seed's last count and the total, the disagreements and the
unexpected exceptions, so that a closing note quotes numbers read off the runs:

    python scripts/soak_tally.py                       # the logs kept in scripts/soak_runs/
    python scripts/soak_tally.py /work/soak/runs/seed*.log

A session's machine is not kept: the logs of its runs are committed to `scripts/soak_runs/`
before it ends, or the count they hold is lost with it.

A seed run twice on one fingerprint drew the same programs: it counts once (its larger
count), and the tally says so. The same seed with another `--programs` drew others
(`14100+all`: the main generator and the families).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

HEADER = re.compile(r"soak of .* at (?P<commit>\S+) .*: (?P<asked>\d+) programs, seed (?P<seed>\d+)(?:, programs (?P<kind>\w+))?")
KEPT = Path(__file__).resolve().parent / "soak_runs"
PROGRESS = re.compile(r"\s*(?:soak: )?(?P<done>\d+) programs, (?P<disagree>\d+) disagreements?, (?P<raised>\d+) unexpected "
                      r"exceptions?, .*route modules (?P<fingerprint>[0-9a-f]+)")


@dataclass(frozen=True)
class Run:
    """What one log says of its run: the last progress line's numbers."""

    log: str
    seed: int
    kind: str  # what it drew (soak.py --programs): "main" for the logs that predate the option
    commit: str
    fingerprint: str
    programs: int
    disagreements: int
    exceptions: int


def read_run(path: Path) -> Run | None:
    """The run a log records, or None for a log with no progress line yet."""
    seed, kind, commit, last = None, "main", "?", None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        header = HEADER.match(line)
        if header:
            seed, kind, commit = int(header["seed"]), header["kind"] or "main", header["commit"]
        progress = PROGRESS.match(line)
        if progress:
            last = progress
    if seed is None or last is None:
        return None
    return Run(path.name, seed, kind, commit, last["fingerprint"], int(last["done"]), int(last["disagree"]),
               int(last["raised"]))


def tally(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs by fingerprint, one per seed and draw (the one that went furthest)."""
    by_fingerprint: dict[str, dict[tuple[int, str], Run]] = {}
    for run in runs:
        seeds = by_fingerprint.setdefault(run.fingerprint, {})
        key = (run.seed, run.kind)
        if key not in seeds or run.programs > seeds[key].programs:
            seeds[key] = run
    return {fingerprint: sorted(seeds.values(), key=lambda r: r.seed) for fingerprint, seeds in by_fingerprint.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="*", type=Path,
                        help=f"the soak's logs (its standard output); none: {KEPT.name}/*.log")
    args = parser.parse_args(argv)
    logs = args.logs or sorted(KEPT.glob("*.log"))
    runs = [run for run in map(read_run, logs) if run is not None]
    counted = tally(runs)
    repeated = len(runs) - sum(len(seeds) for seeds in counted.values())
    print(f"{'route modules':<14} {'seeds (programs each)':<60} {'programs':>9} {'disagree':>9} {'raised':>7}")
    for fingerprint, seeds in sorted(counted.items(), key=lambda item: min(r.seed for r in item[1])):
        each = ", ".join(f"{r.seed}{'' if r.kind == 'main' else '+' + r.kind} ({r.programs:,})" for r in seeds)
        total = sum(r.programs for r in seeds)
        wrong = sum(r.disagreements for r in seeds)
        raised = sum(r.exceptions for r in seeds)
        print(f"{fingerprint:<14} {each:<60} {total:>9,} {wrong:>9} {raised:>7}")
    if repeated:
        print(f"({repeated} log(s) repeat a seed on the same route modules: counted once, the furthest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
