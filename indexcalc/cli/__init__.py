"""The `indexcalc` command. Each subcommand is a module of its own here that registers
its parser (`register(subparsers)`): formula (demo, show, eval, diff), train, predict,
export and check.

argparse (standard library) is enough for six subcommands; a dependency would not earn
its place here.

Whatever happens, the user gets one line, never a traceback: a refused input is
`indexcalc: error: ...` (exit 1), Ctrl-C is `indexcalc: interrupted` (exit 130), output
into a closed pipe (`indexcalc show f | head`) ends quietly (exit 141, as a command killed
by SIGPIPE), and anything else is reported as a bug in indexcalc (exit 70;
INDEXCALC_TRACEBACK=1 shows the traceback), which the fuzz tests look for.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from ..errors import IndexCalcError
from . import check, export, formula, predict, train

EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 70, 130, 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indexcalc",
        description="Tensor calculus in Einstein index notation.",
        epilog="Notation: w_ij x_j sums j; sigma(...) acts elementwise; sum_j(...), mean_n(...), "
        "delta_ij, loss_{,(gh)}[w]. One equation per line, '#' comments.",
    )
    parser.add_argument("--version", action="version", version=f"indexcalc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (formula, train, predict, export, check):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (argparse itself exits with 2 on bad options)."""
    _tolerant_output()
    try:
        parser = build_parser()
        args = parser.parse_args(_as_text(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            parser.print_help()
            return 0
        print(args.run(args))
    except IndexCalcError as err:
        return _say(f"error: {err}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _say("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except MemoryError:
        return _say("error: out of memory (try smaller sizes)", EXIT_ERROR)
    except Exception as err:  # noqa: BLE001 - the last resort: a bug, said in one line
        if os.environ.get("INDEXCALC_TRACEBACK"):
            raise
        return _say(
            f"internal error: {type(err).__name__}: {err}\n(a bug in indexcalc: please report it with "
            "the command that caused it; INDEXCALC_TRACEBACK=1 shows where it happened)",
            EXIT_BUG,
        )
    return 0


def _tolerant_output() -> None:
    """σ and ŷ on a terminal that cannot show them are written as \\u03c3, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream of a file
            pass


def _as_text(argv: Sequence[str]) -> list[str]:
    """The arguments as typed: under a locale that is not UTF-8, Python hands UTF-8 bytes
    over as surrogates (σ becomes '\\udccf\\udc83'); read those bytes as UTF-8 again."""
    def recovered(arg: str) -> str:
        try:
            return os.fsencode(arg).decode("utf-8") if any("\udc80" <= c <= "\udcff" for c in arg) else arg
        except (UnicodeError, TypeError):
            return arg

    return [recovered(arg) for arg in argv]


def _say(message: str, status: int) -> int:
    try:
        print(f"indexcalc: {message}", file=sys.stderr)
    except (OSError, ValueError):  # stderr closed too: the status still says it
        pass
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not fail on the
    closed pipe again (the recipe in the `signal` module's documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured)
        pass


if __name__ == "__main__":
    sys.exit(main())
