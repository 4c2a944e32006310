"""The import graph of schemas/, agents/, streams/ and bench/ keeps its layers (docs/design.md):
the contract imports nothing of the project, the transport-free core only the contract and
itself, and no modules import each other in a circle. Every import counts, in-function and
`TYPE_CHECKING` ones included (they are read with `ast`, nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "agents", "streams", "bench")

#: Import circles known when this test was written (issue 16), each to be cut, never added
#: to. The test fails on a circle not listed here, and on a listed one that is gone (then take
#: it off the list).
KNOWN_CIRCLES: frozenset[frozenset[str]] = frozenset()

#: Imports that run up a layer, known when this test was written: (importer, imported).
#: Same rule as the circles: only ever shrinks.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


def module_files() -> dict[str, Path]:
    """Every module of the checked packages by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def project_module(name: str) -> str | None:
    """The project module an imported dotted name lives in (None: not the project's)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name `module` imports, wherever in the file the import is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                base = package[: len(package) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from a import b` imports the module a.b if there is one, else a name of a.
            yield from (f"{source}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {project_module(name) for name in imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = import_graph()


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    def within(package: str) -> bool:
        return module == package or module.startswith(package + ".")

    if within("schemas"):
        return "contract"
    if within("agents"):
        return "core"
    if within("streams.runtime"):
        return "runtime"
    if within("streams.tools"):
        return "tools"
    if within("bench"):
        return "bench"
    return "cli"  # streams, streams.cli, streams.commands


#: What each layer may import of the project besides itself.
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "core": {"contract"},
    "runtime": {"contract", "core"},
    "tools": {"contract", "core", "runtime"},
    "cli": {"contract", "core", "runtime", "tools"},
    "bench": {"contract", "core", "runtime", "tools"},
}


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
    }


def test_the_graph_is_read_with_in_function_imports() -> None:
    """The reader sees what the checks rely on (a check on an empty graph cannot fail)."""
    assert {
        "schemas",
        "agents.core",
        "streams.runtime.worker",
        "streams.runtime.web",
        "bench.run",
    } <= set(GRAPH)
    # Module level, `from package import module`, and an import inside a function.
    assert "agents.core.ingest" in GRAPH["streams.runtime.state"]
    assert "agents.core.ledger" in GRAPH["agents.core"]
    # in partition_counts
    assert "streams.runtime.batch_consumer" in GRAPH["streams.runtime.topics"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert upward_imports({"agents.core.x": {"streams.y"}, "streams.y": set()}) == {
        ("agents.core.x", "streams.y")
    }


def test_no_import_runs_up_a_layer() -> None:
    """schemas imports nothing of the project; agents/core only schemas and itself; the
    runtime (streams.runtime.worker, streams) nothing of bench."""
    assert upward_imports(GRAPH) == KNOWN_UPWARD


def test_no_import_circles_beyond_the_known_ones_and_those_still_exist() -> None:
    found = circles(GRAPH)
    assert found - KNOWN_CIRCLES == set(), "a new import circle"
    assert KNOWN_CIRCLES - found == set(), "a known circle is gone: take it off KNOWN_CIRCLES"
