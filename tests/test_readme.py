"""The README's shell sessions (`$ indexcalc ...` and the lines it prints) are what the
command prints today: a change to the printer or the simplifier that changes them fails
here, so the README cannot go stale in silence."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from indexcalc.cli import main

ROOT = Path(__file__).resolve().parent.parent


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """Each indented `$ command` with the indented lines under it, to the next blank line
    or command."""
    found, lines = [], text.splitlines()
    for k, line in enumerate(lines):
        command = re.match(r"^ {4}\$ (indexcalc .*)$", line)
        if command:
            shown = []
            for after in lines[k + 1 :]:
                if not after.startswith("    ") or after.lstrip().startswith("$ "):
                    break
                shown.append(after[4:])
            found.append((command.group(1), shown))
    return found


README_SESSIONS = sessions((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_sessions_to_check():
    assert len(README_SESSIONS) >= 3


@pytest.mark.parametrize("command, shown", README_SESSIONS, ids=[c for c, _ in README_SESSIONS])
def test_a_readme_session_prints_what_the_readme_shows(command, shown, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(command)[1:]) == 0
    assert capsys.readouterr().out.rstrip("\n").splitlines() == shown
