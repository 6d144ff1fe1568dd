"""The layering rules of docs/architecture.md, checked on the source itself (no imports run, no services).

Every module of the four product packages is parsed with ``ast`` and every import statement in it is read:
at module level, inside functions and under ``if TYPE_CHECKING:`` alike, since each of them ties one module
to another. Relative imports are resolved, and ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg``. The rules, one test each:

- no import cycle anywhere in the graph of product modules;
- ``melo_protocol`` imports nothing of ``server``, ``melo_cli`` or ``melo_tui``;
- ``melo_cli`` and ``melo_tui`` import no HTTP, WebSocket, crypto or database library (the SDK does that);
- ``server`` imports nothing of ``melo_cli`` or ``melo_tui``;
- no product module is over 500 lines;
- no ``json.dumps`` in ``server/realtime``: frames are built from the ``melo_protocol.wire.realtime`` models.

No rule has exceptions: the violations found when the rules were written (a cycle through the server's
state, services and sockets; another through the TUI's app and its actions; five modules over the limit;
frames built with ``json.dumps``) were fixed, not listed.
"""

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "melo_protocol", "melo_cli", "melo_tui")
MAX_LINES = 500
CLIENT_FORBIDDEN_LIBS = frozenset({"httpx", "websockets", "vodozemac", "cryptography", "sqlalchemy"})
FORBIDDEN_PACKAGES = {
    "melo_protocol": frozenset({"server", "melo_cli", "melo_tui"}),
    "server": frozenset({"melo_cli", "melo_tui"}),
}

# -- the checker ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported name: ``target`` is a dotted module name (resolved; maybe not one of ours)."""

    target: str
    line: int
    where: str  # "module level", "TYPE_CHECKING" or "in f()"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    json_dumps_lines: list[int] = field(default_factory=list)


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if not module.is_package:
        package = package[:-1]
    if node.level > 1:
        package = package[: -(node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _read_imports(module: Module, body: list[ast.stmt], where: str) -> None:
    """Every import in these statements and in the statements nested in them (imports are statements, so
    expressions are never entered: that keeps the scan of the whole product fast)."""
    for node in body:
        if isinstance(node, ast.Import):
            module.imports.extend(Import(alias.name, node.lineno, where) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            module.imports.extend(
                Import(f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno, where)
                for alias in node.names
            )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            _read_imports(module, node.body, f"in {node.name}()")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            _read_imports(module, node.body, "TYPE_CHECKING")
            _read_imports(module, node.orelse, where)
        else:
            for name in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, name, ()):
                    _read_imports(module, [child] if isinstance(child, ast.stmt) else child.body, where)


def _json_dumps_calls(tree: ast.Module) -> list[int]:
    """Lines that call ``json.dumps``, however json or dumps was imported."""
    json_names: set[str] = set()
    dumps_names: set[str] = set()
    calls: list[tuple[str, str, int]] = []  # (name called on or called, "attr" or "name", line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            json_names.update(alias.asname or "json" for alias in node.names if alias.name == "json")
        elif isinstance(node, ast.ImportFrom) and node.module == "json" and not node.level:
            dumps_names.update(alias.asname or "dumps" for alias in node.names if alias.name == "dumps")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "dumps" and isinstance(func.value, ast.Name):
                calls.append((func.value.id, "attr", node.lineno))
            elif isinstance(func, ast.Name):
                calls.append((func.id, "name", node.lineno))
    return sorted(line for name, kind, line in calls if name in (json_names if kind == "attr" else dumps_names))


@dataclass
class Graph:
    modules: dict[str, Module]
    # module -> module it imports -> the imports that make that edge
    edges: dict[str, dict[str, list[Import]]]

    def importers(self, package: str) -> Iterator[Module]:
        return (m for name, m in sorted(self.modules.items()) if name == package or name.startswith(package + "."))


def _edge_target(target: str, modules: dict[str, Module]) -> str | None:
    """``pkg.name`` when that is a module, else ``pkg`` (``from pkg import name``); None when not ours."""
    if target in modules:
        return target
    parent = target.rpartition(".")[0]
    return parent if parent in modules else None


def scan(root: Path, packages: Iterable[str], dumps_under: str) -> Graph:
    """Every module of these packages with its imports; ``json.dumps`` calls in the modules under ``dumps_under``."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name, is_package = module_name(root, path)
            source = path.read_text(encoding="utf-8")
            module = Module(name, path, len(source.splitlines()), is_package)
            tree = ast.parse(source, filename=str(path))
            _read_imports(module, tree.body, "module level")
            if (name == dumps_under or name.startswith(dumps_under + ".")) and "dumps" in source:
                module.json_dumps_lines = _json_dumps_calls(tree)
            modules[name] = module
    edges: dict[str, dict[str, list[Import]]] = {}
    for name, module in modules.items():
        out = edges.setdefault(name, {})
        for imp in module.imports:
            target = _edge_target(imp.target, modules)
            if target is not None and target != name:
                out.setdefault(target, []).append(imp)
    return Graph(modules, edges)


def cycles(graph: Graph) -> list[frozenset[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    for start in sorted(graph.edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.edges[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def describe_cycle(graph: Graph, component: frozenset[str]) -> str:
    lines = [f"import cycle among {len(component)} modules: {sorted(component)}"]
    for source in sorted(component):
        for target, imports in sorted(graph.edges[source].items()):
            if target in component:
                sites = ", ".join(f"line {imp.line} ({imp.where})" for imp in imports)
                lines.append(f"  {source} -> {target}    {graph.modules[source].path.name}: {sites}")
    return "\n".join(lines)


def _top(name: str) -> str:
    return name.partition(".")[0]


def forbidden_imports(graph: Graph, package: str, forbidden: frozenset[str]) -> list[str]:
    """``module:line imports target (where)`` for every import of a forbidden top-level name."""
    return [
        f"{m.name}:{imp.line} imports {imp.target} ({imp.where})"
        for m in graph.importers(package)
        for imp in m.imports
        if _top(imp.target) in forbidden
    ]


# -- the rules on the product -----------------------------------------------------------------------------


@cache
def product() -> Graph:
    return scan(REPO, PACKAGES, dumps_under="server.realtime")


def no_violations(found: dict[str, str]) -> None:
    assert not found, "\n\n".join(found.values())


def test_no_import_cycles() -> None:
    graph = product()
    no_violations({",".join(sorted(c)): describe_cycle(graph, c) for c in cycles(graph)})


def test_melo_protocol_imports_no_app() -> None:
    assert not forbidden_imports(product(), "melo_protocol", FORBIDDEN_PACKAGES["melo_protocol"])


def test_server_imports_neither_cli_nor_tui() -> None:
    assert not forbidden_imports(product(), "server", FORBIDDEN_PACKAGES["server"])


@pytest.mark.parametrize("package", ["melo_cli", "melo_tui"])
def test_clients_use_the_sdk_not_its_libraries(package: str) -> None:
    assert not forbidden_imports(product(), package, CLIENT_FORBIDDEN_LIBS)


def test_no_module_over_the_line_limit() -> None:
    found = {
        m.name: f"{m.path.relative_to(REPO)} has {m.lines} lines (the limit is {MAX_LINES})"
        for m in product().modules.values()
        if m.lines > MAX_LINES
    }
    no_violations(found)


def test_no_json_dumps_in_server_realtime() -> None:
    found = {
        m.name: f"{m.path.relative_to(REPO)} calls json.dumps on lines {m.json_dumps_lines}: build the frame from "
        "its melo_protocol.wire.realtime model"
        for m in product().importers("server.realtime")
        if m.json_dumps_lines
    }
    no_violations(found)


# -- the checker on a planted tree ------------------------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Graph:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return scan(root, sorted({rel.split("/")[0] for rel in files}), dumps_under="app")


def test_checker_finds_a_planted_cycle_through_relative_and_from_imports(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/a.py": "from app import b\n",  # from pkg import module: the edge is to app.b
            "app/b.py": "from .sub import c\n",  # relative, one level
            "app/sub/__init__.py": "",
            "app/sub/c.py": "from ..a import thing\n",  # relative, two levels; thing is no module: edge to app.a
            "app/d.py": "import app.a\n",  # imports into the cycle, not part of it
        },
    )
    assert cycles(graph) == [frozenset({"app.a", "app.b", "app.sub.c"})]
    text = describe_cycle(graph, cycles(graph)[0])
    assert "app.sub.c -> app.a    c.py: line 1 (module level)" in text
    assert "app.d" not in text


def test_checker_counts_type_checking_and_function_level_imports(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.b import B\n",
            "app/b.py": "class B: ...\ndef late():\n    import app.a\n",
        },
    )
    assert cycles(graph) == [frozenset({"app.a", "app.b"})]
    assert graph.edges["app.a"]["app.b"][0].where == "TYPE_CHECKING"
    assert graph.edges["app.b"]["app.a"][0].where == "in late()"


def test_checker_sees_no_cycle_in_a_tree_without_one(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "app/__init__.py": "from app import a\n",
            "app/a.py": "from app.b import x\n",
            "app/b.py": "import json\nx = 1\n",
        },
    )
    assert cycles(graph) == []


def test_checker_finds_forbidden_imports_and_json_dumps(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        {
            "lib/__init__.py": "",
            "lib/x.py": "def f():\n    from app.y import z\n    import httpx.client\n",
            "app/__init__.py": "",
            "app/y.py": "import json as j\nfrom json import dumps\nz = j.dumps({}) + dumps([])\nj.loads('1')\n",
        },
    )
    assert forbidden_imports(graph, "lib", frozenset({"app"})) == ["lib.x:2 imports app.y.z (in f())"]
    assert forbidden_imports(graph, "lib", frozenset({"httpx"})) == ["lib.x:3 imports httpx.client (in f())"]
    assert graph.modules["app.y"].json_dumps_lines == [3, 3]


def test_the_product_scan_is_complete() -> None:
    """Every product file is read, and every edge points at a module that exists."""
    graph = product()
    files = {p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    assert {m.path for m in graph.modules.values()} == files
    assert all(target in graph.modules for out in graph.edges.values() for target in out)
    assert "melo_protocol.wire.realtime" in graph.edges["server.realtime.connection"]
