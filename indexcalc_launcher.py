"""The `indexcalc` command's entry point, outside the package on purpose: importing the
package loads NumPy (about a third of a second), and Ctrl-C in that time would end in a
traceback. Here it is one line and exit status 130, as everywhere else."""

import sys


def main() -> int:
    try:
        from indexcalc.cli import main as run
    except KeyboardInterrupt:
        print("indexcalc: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
