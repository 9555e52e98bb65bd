"""No import cycles inside tickerd, counting every import statement wherever it stands.

An import under ``if TYPE_CHECKING:`` or inside a function does not fail at run time, but it
is still a dependency: two modules that need each other are one concern spread over two
files (the daemon, the monitor and the sources were one such knot).  The graph is read from
the source with :mod:`ast`, walking the package directory, so a module added later is
checked without being listed here.

An edge goes to the module an import names: ``import a.b.c`` and ``from a.b import c`` (when
``a/b/c.py`` exists) depend on ``a.b.c``; ``from a.b import name`` on ``a.b``.  Importing
``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, but those implicit parent
imports are not counted: every submodule would then depend on the package that re-exports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import tickerd

#: module → the tickerd modules it imports.
Graph = dict[str, set[str]]


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement may refer to, most specific first per name."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:  # relative: from the module's own package, one level up per extra dot
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    for alias in node.names:
        yield f"{base}.{alias.name}"  # a submodule, if there is one; else the name is in base


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(root: Path, package: str) -> Graph:
    """Edges between the package's modules, from every import statement in each file."""
    known = modules(root, package)
    graph: Graph = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for imported in _imported(node, name, path.name == "__init__.py"):
                    target = _resolve(imported, known)
                    if target is not None and target != name:
                        graph[name].add(target)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Cycles (``[a, b, …, a]``) that together pass through every module that is on one: a
    shortest one through each such module not already named."""
    found: list[list[str]] = []
    for component in _tangles(graph):
        named: set[str] = set()
        for module in sorted(component):
            if module not in named:
                cycle = _cycle_through(graph, component, module)
                named.update(cycle)
                found.append(cycle)
    return found


def _tangles(graph: Graph) -> list[set[str]]:
    """The groups of modules that import each other: Tarjan's strongly connected components
    of more than one module, found iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return components


def _cycle_through(graph: Graph, component: set[str], first: str) -> list[str]:
    """A shortest cycle through ``first`` within its component (breadth-first)."""
    came_from: dict[str, str] = {}
    frontier = [first]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(came_from[path[-1]])
                    return [first, *reversed(path[:-1]), first]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {first} in {sorted(component)}")  # not a component


def test_tickerd_has_no_import_cycles() -> None:
    root = Path(tickerd.__file__).parent
    graph = import_graph(root, "tickerd")
    assert {"tickerd.daemon", "tickerd.monitor", "tickerd.sources"} <= graph.keys()  # walked
    found = [" → ".join(cycle) for cycle in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_cycles_through_type_checking_and_function_imports_are_found(tmp_path: Path) -> None:
    """The check itself: imports that only run for the type checker or inside a function
    count, relative ones are resolved, and a package importing its own submodule is fine."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import A\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\nclass A: ...\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f() -> None:\n    from ..c import C\n")
    (package / "c.py").write_text("import pkg.a\nC = 1\n")
    graph = import_graph(package, "pkg")
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    (package / "c.py").write_text("C = 1\n")
    assert cycles(import_graph(package, "pkg")) == []
