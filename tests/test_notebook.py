"""examples/tutorial.ipynb, run top to bottom in a Jupyter kernel of the Python running
the tests, so that the tutorial cannot go stale: its cells assert that every derivative
it shows agrees by einsum, explicit loops and finite differences (and with the note's
closed form), and that every network it trains learns. Here we check, besides, that
each note's section did check derivatives and plot a loss curve, that the kernel was
this interpreter with this indexcalc, and that the file is kept without outputs (a
reviewable diff, no stale numbers or pictures). nbclient, nbformat, ipykernel and
matplotlib are in the test extra."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

import indexcalc

EXTRA = "in the test extra: pip install '.[test]'"
nbformat = pytest.importorskip("nbformat", reason=f"nbformat is {EXTRA}")
nbclient = pytest.importorskip("nbclient", reason=f"nbclient is {EXTRA}")
pytest.importorskip("ipykernel", reason=f"ipykernel is {EXTRA}")
pytest.importorskip("matplotlib", reason=f"matplotlib is {EXTRA}")

from ipykernel.kernelspec import RESOURCES, get_kernel_dict  # noqa: E402
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
NOTES = 5  # sections "## 1." … "## 5.", one per source note


class ThisPython(KernelSpecManager):
    """ipykernel's python3 kernelspec for the interpreter running the tests, whatever
    kernelspecs the machine has installed: one of another environment would run another
    indexcalc, or none."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


def executed() -> nbformat.NotebookNode:
    """The notebook, run in a fresh kernel from its own folder, with an extra last cell
    that reports which Python and which indexcalc the kernel ran."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, indexcalc\nprint(sys.prefix)\nprint(indexcalc.__file__)", id="which-python"))
    package_root = str(Path(indexcalc.__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # figures as outputs, even where CI sets Agg
    kernel = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
    client = nbclient.NotebookClient(nb, km=kernel, timeout=300, startup_timeout=120,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env=env)  # a failing cell raises CellExecutionError with its traceback
    return nb


def printed(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


def sections(nb) -> dict[str, list]:
    """The code cells under each numbered section heading ('## 1. The index-notation note')."""
    found: dict[str, list] = {}
    current = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if cell.source.startswith("## "):
                numbered = re.match(r"## (\d+\. .*)", cell.source)
                current = numbered.group(1) if numbered else None
        elif current is not None:
            found.setdefault(current, []).append(cell)
    return found


def test_the_tutorial_runs_and_checks_every_note():
    nb = executed()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]

    # the kernel was this Python, importing this indexcalc
    prefix, module = printed(code[-1]).split("\n")[:2]
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert Path(module).resolve() == Path(indexcalc.__file__).resolve()

    # every note's section checked derivatives and plotted a training's loss curve
    by_note = sections(nb)
    assert len(by_note) == NOTES, list(by_note)
    for title, cells in by_note.items():
        ticks = sum(printed(cell).count("✓") for cell in cells)
        plots = sum("image/png" in out.get("data", {}) for cell in cells for out in cell.outputs)
        assert ticks >= 1 and plots >= 1, f"{title}: {ticks} derivatives checked, {plots} loss curves"

    # and the closing tally counts every ✓ the cells printed
    tally = re.search(r"(\d+) derivatives checked", "".join(printed(cell) for cell in code))
    assert tally, "the closing cell's tally is missing"
    assert int(tally.group(1)) == sum(printed(cell).count("✓") for cell in code)


def test_the_tutorial_is_kept_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code), \
        "clear the outputs before committing (Jupyter: Edit > Clear Outputs of All Cells)"
    assert nb.metadata.kernelspec.name == "python3"
