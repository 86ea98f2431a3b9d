"""No import cycles in any package under ``packages/*/src``.

A module must not import one that imports it back, directly or through others: a cycle
forces lazy imports inside functions, makes import order matter, and hides which module
depends on which. The graph is built from the sources with ``ast`` (nothing is imported), and
counts every import: at module level, inside functions (lazy imports are how cycles hide) and
under ``TYPE_CHECKING``; ``from x import y`` counts as importing ``x.y`` when ``y`` is a
submodule. Importing a submodule does not count as importing its parent packages (Python runs
their ``__init__`` first, but a package re-exporting its submodules is not a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Cycles found in packages this change does not own, to be cleared by their owners. Each
# entry is a cycle as the test reports it (its modules in order, starting from the smallest
# name); an entry that no longer occurs fails the test, so the list only shrinks.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()


def module_files() -> dict[str, Path]:
    """Every module of every package: dotted name -> source file."""
    modules: dict[str, Path] = {}
    for src in sorted(ROOT.glob("packages/*/src")):
        for path in sorted(src.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules among ``known`` that module ``name`` imports anywhere in its source."""
    package = name if _is_package(path) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _deepest(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # A submodule is what is imported; any other name comes from ``target``.
                yield from ([sub] if sub in known else _deepest(target, known))


def _deepest(dotted: str, known: dict[str, Path]) -> Iterator[str]:
    """``dotted`` itself if it is a known module, else its nearest known parent."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            yield candidate
            return
        parts.pop()


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    return {
        name: {target for target in imports_of(name, path, known) if target != name}
        for name, path in known.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> dict[tuple[str, ...], frozenset[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), each
    given as a closed path through the graph starting from its smallest module name, with
    every module of its component (all of them import each other, through others)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return {_cycle_through(c, graph): frozenset(c) for c in components}


def _cycle_through(component: set[str], graph: dict[str, set[str]]) -> tuple[str, ...]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return tuple(reversed(path))
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not a cycle")


def _show(cycle: tuple[str, ...]) -> str:
    return " -> ".join([*cycle, cycle[0]])


def test_the_graph_sees_every_kind_of_import() -> None:
    """The parser finds what the cycle test relies on, so an empty result means no cycles."""
    graph = import_graph()
    assert len(graph) > 50, sorted(graph)
    # `from trainers_rl.rl.ppo import PPOConfig` (a name) and `from x import submodule`.
    assert "trainers_rl.rl.ppo" in graph["trainers_rl"]
    assert "trainers_rl.rl.ppo.trainer" in graph["trainers_rl.rl.ppo"]
    # An import inside a function counts (pipeline.py imports the exporter lazily).
    assert "driving_vla.export" in graph["trainers_rl.pipeline"]


def test_cycle_finder_reports_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert find_cycles(graph) == {("a", "b", "c"): frozenset("abc")}


def test_no_import_cycles() -> None:
    found = find_cycles(import_graph())
    cycles = set(found)
    new = sorted(cycles - ALLOWED_CYCLES)
    assert not new, "import cycles (each module imports the next, the last the first):\n" + \
        "\n".join(f"  {_show(c)}  (all entangled: {', '.join(sorted(found[c]))})" for c in new)
    gone = sorted(ALLOWED_CYCLES - cycles)
    assert not gone, "allowed cycles that no longer occur; remove them from ALLOWED_CYCLES:\n" + \
        "\n".join(f"  {_show(c)}" for c in gone)
