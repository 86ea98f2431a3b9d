"""Each package declares exactly the trainyard packages its sources import.

A declared dependency that nothing imports is weight every install carries (driving-vla once
declared carla-env and copied its contract constants instead); an imported one that is not
declared breaks `pip install ./packages/<name>` alone.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = sorted((ROOT / "packages").glob("*/pyproject.toml"))


def _import_name(folder: Path) -> str:
    (package,) = [p.name for p in (folder / "src").iterdir() if (p / "__init__.py").is_file()]
    return package


# distribution name -> import name, for every package of this repository (ci/packages.py's list)
IMPORT_NAMES = {p.name: p.import_name for p in ci_packages.load(ROOT)}


def _declared(pyproject: Path) -> set[str]:
    """Import names of the trainyard packages in ``[project].dependencies``."""
    names = set()
    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name, requirement
        if name[0] in IMPORT_NAMES:
            names.add(IMPORT_NAMES[name[0]])
    return names


def _imported(folder: Path) -> set[str]:
    """Top-level trainyard packages any source file imports (function-level imports too)."""
    ours = set(IMPORT_NAMES.values())
    found = set()
    for source in (folder / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found |= {m.split(".")[0] for m in modules} & ours
    return found - {_import_name(folder)}


def test_every_package_is_seen() -> None:
    assert len(IMPORT_NAMES) == len(PYPROJECTS) >= 7
    assert IMPORT_NAMES["trainyard-driving-vla"] == "driving_vla"
    # the import name ci/packages.py reads from hatch's config is the package on disk
    for pyproject in PYPROJECTS:
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        assert IMPORT_NAMES[name] == _import_name(pyproject.parent)


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: p.parent.name)
def test_declared_trainyard_dependencies_are_the_imported_ones(pyproject: Path) -> None:
    declared, imported = _declared(pyproject), _imported(pyproject.parent)
    assert not declared - imported, f"declared but never imported: {sorted(declared - imported)}"
    assert not imported - declared, f"imported but not declared: {sorted(imported - declared)}"
