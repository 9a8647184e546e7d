"""scripts/soak.py, the cross-route property at scale (issue 8), on a few programs: its
count, its verdict and its summary are what the closing notes quote."""

import importlib
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_a_short_soak_counts_its_programs_and_writes_its_summary(tmp_path, capsys, monkeypatch):
    """One job, in this process: a pool would fork a process that may have loaded JAX."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    out = tmp_path / "failures.txt"
    code = importlib.import_module("soak").main(["--count", "3", "--chunk", "2", "--jobs", "1", "--every", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    last = printed.strip().splitlines()[-1]
    assert code == 0, printed
    assert last.startswith("soak: 3 programs, 0 disagreements, 0 unexpected exceptions"), last
    assert "route modules" in last and "compile.py" in last and "model.py" not in last
    written = out.read_text()
    assert "constructs drawn (3 programs)" in written and "time by route" in written
    assert not Path(str(out) + ".summary").exists()  # the run ended: its summary is in --out
