"""The plan of the code holds: the import-linter layers contract in pyproject.toml passes, a lower
layer importing a higher one breaks it, and no two modules of qa/ import each other, even through
others (function-level imports included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=where, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(where), "PATH": str(Path(sys.executable).parent)})


def test_the_layers_contract_is_kept():
    result = lint(ROOT)
    assert result.returncode == 0 and "1 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "qa", tmp_path / "qa", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    store = tmp_path / "qa" / "store" / "chroma.py"
    store.write_text(store.read_text() + "\n\ndef _upward():\n    from qa.answer.chain import Engine  # store -> answer\n")
    result = lint(tmp_path)
    assert result.returncode != 0 and "qa.store.chroma -> qa.answer.chain" in result.stdout, result.stdout[-2000:]


def test_no_import_loops_between_modules():
    import grimp

    graph = grimp.build_graph("qa")
    loops = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module != imported and graph.chain_exists(importer=imported, imported=module):
                loops.append(f"{module} <-> {imported}")
    assert not loops, loops
