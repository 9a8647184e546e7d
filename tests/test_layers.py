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
    "errors", "tokens", "expr", "functions", "shifts", "indices", "relabel", "matrices", "scope", "printing",
    "program", "notation", "simplify", "diff", "driver", "evaluate", "loops", "dialects", "emit", "plan", "compile",
]


def imported_modules(path: Path) -> set[str]:
    """The indexcalc modules `path` imports anywhere in it (`from .x import y`, `from . import x`),
    the block under `if TYPE_CHECKING:` aside."""
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                 for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in type_only:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("module", LAYERS)
def test_a_stage_imports_only_the_stages_below_it(module):
    below = set(LAYERS[: LAYERS.index(module)])
    above = (imported_modules(PACKAGE / f"{module}.py") & set(LAYERS)) - below - {module}
    assert not above, f"indexcalc/{module}.py imports {sorted(above)}, a stage at or above it"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    """The check would pass on anything if it missed the imports a function hides."""
    source = tmp_path / "sample.py"
    source.write_text("from .expr import Tensor\n\ndef f():\n    from .diff import diff\n    return diff\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .plan import Lowering\n")
    assert imported_modules(source) == {"expr", "diff"}


def test_every_pipeline_module_is_placed():
    """A new module of the core takes a place in the order (the training, model and
    command-line modules sit above the pipeline and are not listed)."""
    above_the_pipeline = {
        "__init__", "__main__", "batch", "checkpoints", "datasets", "export", "metrics", "model", "modelfile",
        "optimisers", "saved", "schedules", "second_order", "step", "train", "training_arrays", "training_errors",
    }
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - above_the_pipeline == set(LAYERS)
