"""The `indexcalc` command. Each subcommand is a module of its own here that registers
its parser (`register(subparsers)`): formula (demo, show, eval, diff), train and check.

argparse (standard library) is enough for five subcommands; a dependency would not earn
its place here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import IndexCalcError
from . import check, formula, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indexcalc",
        description="Tensor calculus in Einstein index notation.",
        epilog="Notation: w_ij x_j sums j; sigma(...) acts elementwise; sum_j(...), mean_n(...), "
        "delta_ij, loss_{,(gh)}[w]. One equation per line, '#' comments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (formula, train, check):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        print(args.run(args))
    except IndexCalcError as err:
        print(f"indexcalc: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
