"""trainers-rl is laid out by job, and its imports point one way.

Read from the sources with ``ast`` (nothing is imported, and a name in a comment or a string
does not count): the checkpoint module saves and loads a state bundle and names no trainer,
so ``trainer -> callbacks -> checkpoint`` is the only direction; ``rl``, ``imitation`` and
``evaluation`` do not reach into each other or up into the pipeline and CLI; and a resumed
trainer is built by ``__init__``, never by ``__new__`` with attributes set by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "packages" / "trainers-rl" / "src"
RL = "trainers_rl.rl"
CHECKPOINT = f"{RL}.checkpoint"
TRAINER_MODULES = (f"{RL}.trainer", f"{RL}.ppo.trainer", f"{RL}.sac.trainer")
# Packages whose import runs a trainer module (they re-export trainers).
TRAINER_PACKAGES = ("trainers_rl", RL, f"{RL}.ppo", f"{RL}.sac")
JOBS = ("rl", "imitation", "evaluation")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "trainers_rl").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def imports(name: str) -> list[tuple[str, list[str]]]:
    """Every import of module ``name``, anywhere in it (functions, TYPE_CHECKING blocks):
    ``(imported module, [names taken from it])``; relative imports resolved."""
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def imported_modules(name: str) -> set[str]:
    """The modules ``name`` imports, ``from x import submodule`` counted as ``x.submodule``."""
    known = modules()
    out = set()
    for module, names in imports(name):
        out.add(module)
        out.update(f"{module}.{n}" for n in names if f"{module}.{n}" in known)
    return out


def defined_names(name: str) -> set[str]:
    """Top-level classes, functions and assignments of module ``name``."""
    names = set()
    for node in tree(name).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names - {"__all__"}


def test_the_layout_is_by_job() -> None:
    names = set(modules())
    for expected in (f"{RL}.trainer", f"{RL}.ppo.trainer", f"{RL}.sac.trainer", f"{RL}.callbacks",
                     CHECKPOINT, f"{RL}.policies", f"{RL}.vec_env", "trainers_rl.imitation.demos",
                     "trainers_rl.imitation.bc", "trainers_rl.evaluation.closed_loop",
                     "trainers_rl.evaluation.controller", "trainers_rl.pipeline"):
        assert expected in names, f"{expected} is missing; modules: {sorted(names)}"
    flat = sorted(n for n in names if n.count(".") == 1)
    assert flat == [
        "trainers_rl.cli", "trainers_rl.evaluation", "trainers_rl.imitation",
        "trainers_rl.pipeline", "trainers_rl.preflight", "trainers_rl.rl", "trainers_rl.run_config"
    ]


def test_no_rl_module_takes_a_trainer_from_the_checkpoint_module() -> None:
    trainer_names = set().union(*(defined_names(m) for m in TRAINER_MODULES))
    assert {"Trainer", "PPOTrainer", "SACTrainer"} <= trainer_names  # the parse sees them
    offenders = []
    for name in modules():
        if name != RL and not name.startswith(f"{RL}."):
            continue
        for module, taken in imports(name):
            if module == CHECKPOINT:
                offenders += [
                    f"{name}: from {module} import {n}" for n in taken
                    if n in trainer_names or n == "*"
                ]
    assert not offenders, "\n".join(offenders)
    assert not defined_names(CHECKPOINT) & trainer_names


@pytest.mark.parametrize("module", [CHECKPOINT, f"{RL}.callbacks"])
def test_checkpoint_and_callbacks_import_no_trainer_module(module: str) -> None:
    trainers = set(TRAINER_MODULES) | set(TRAINER_PACKAGES)
    assert not imported_modules(module) & trainers, sorted(imported_modules(module) & trainers)
    # Nor name a trainer class at all (e.g. in an annotation under TYPE_CHECKING).
    trainer_names = set().union(*(defined_names(m) for m in TRAINER_MODULES))
    named = {n.id for n in ast.walk(tree(module)) if isinstance(n, ast.Name)}
    assert not named & trainer_names, sorted(named & trainer_names)


def test_jobs_do_not_import_each_other_or_what_is_on_top() -> None:
    offenders = []
    for name in modules():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in JOBS:
            continue
        for target in imported_modules(name):
            tparts = target.split(".")
            if tparts[0] != "trainers_rl" or tparts[:2] == parts[:2]:
                continue
            offenders.append(f"{name} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_no_trainer_is_built_around_init() -> None:
    """``cls.__new__(cls)`` plus attributes set by hand silently misses whatever ``__init__``
    later sets up; a resume goes through ``__init__``."""
    calls = [
        f"{name}:{node.lineno}" for name in modules() for node in ast.walk(tree(name))
        if isinstance(node, ast.Attribute) and node.attr == "__new__"
    ]
    assert not calls, calls
