"""The pipeline's modules import only the stages below them (issue 8: no import circles).

A circle between stages (the tree importing its printers, the program runner importing
the differentiator) means no stage can be read, tested or changed on its own, and it was
kept working by imports hidden inside functions. The order below is the pipeline's, from
text to numbers; every import of one of these modules, at the top or inside a function,
must name a module above it in the list. Imports for type checking only are no edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import indexcalc

PACKAGE = Path(indexcalc.__file__).parent

LAYERS = [
    "errors", "memory", "tokens", "expr", "functions", "shifts", "indices", "relabel", "matrices", "scope", "printing",
    "program", "notation", "wellformed", "simplify", "exponentials", "wrt", "inline", "diff", "logs_in_range", "driver", "evaluate", "loops", "dialects", "emit", "plan", "compile",
]


def imported_modules(path: Path) -> set[str]:
    """The indexcalc modules that `path` (a module, or a subpackage's folder) imports
    anywhere in it (`from .x import y`, `from . import x`; `from ..x` inside a
    subpackage), the block under `if TYPE_CHECKING:` aside. A name that is no module
    (`from . import __version__`, set by the package before it imports any) is none."""
    files, level = (sorted(path.glob("*.py")), 2) if path.is_dir() else ([path], 1)
    found = set()
    for file in files:
        tree = ast.parse(file.read_text())
        type_only = {id(n) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                     for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == level and id(node) not in type_only:
                found |= {node.module.split(".")[0]} if node.module else {
                    alias.name for alias in node.names if _source(alias.name).exists()}
    return found


def _source(module: str) -> Path:
    return PACKAGE / module if (PACKAGE / module).is_dir() else PACKAGE / f"{module}.py"


PLUGINS = {"backends"}  # loaded by name by compile; the rest above the pipeline registers itself with it


@pytest.mark.parametrize("module", LAYERS)
def test_a_stage_imports_only_the_stages_below_it(module):
    """Nor anything above the pipeline but the backends: `Compiled.source` once imported
    indexcalc.export inside the method, and export imported compile inside its functions."""
    below = set(LAYERS[: LAYERS.index(module)])
    above = imported_modules(_source(module)) - below - {module} - PLUGINS
    assert not above, f"indexcalc/{module} imports {sorted(above)}, a stage at or above it"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    """The check would pass on anything if it missed the imports a function hides."""
    source = tmp_path / "sample.py"
    source.write_text("from .expr import Tensor\n\ndef f():\n    from .diff import diff\n    return diff\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .plan import Lowering\n")
    assert imported_modules(source) == {"expr", "diff"}


# Above the pipeline, free to import any of it, and in an order of their own: training's
# errors and declarations first, the command line last. A circle here (the model saving
# through `saved`, which rebuilt models; Newton's fit returning the loop's Result) was kept
# working by imports hidden in functions, as the pipeline's were.
ABOVE = [
    "training_errors", "declarations", "per_sample", "datasets", "schedules", "first_order", "batch", "backends",
    "training_arrays", "export", "checkpoints", "saved", "model", "second_order", "optimisers", "metrics",
    "step", "training_checks", "modelfile", "train", "cli", "__main__",
]


@pytest.mark.parametrize("module", ABOVE)
def test_above_the_pipeline_a_module_imports_the_pipeline_and_the_modules_below_it(module):
    below = set(LAYERS) | set(ABOVE[: ABOVE.index(module)])
    above = imported_modules(_source(module)) - below - {module}
    assert not above, f"indexcalc/{module} imports {sorted(above)}, a module at or above it"


def test_every_module_is_placed():
    """A new module takes a place in one of the two orders."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert modules - {"__init__", "examples"} == set(LAYERS) | set(ABOVE)
