"""The shape of the package: every module imports on its own, no import cycle, short files, layers point down.

The import graph is read from the source (ast), not from `sys.modules`, so that it also sees the imports a
function makes when it runs (`from bulkops.cloud.api import ...` inside a command) and the lazy-import
tables (`_LAZY = {"report": ("bulkops.cli.report_cli", "report")}`, read by `importlib.import_module`). An
import under `if TYPE_CHECKING:` is left out: it never runs. `from bulkops.x import y` is an edge to
`bulkops.x`, and to `bulkops.x.y` too when that is a module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bulkops"

#: Files allowed over MAX_LINES (none: engine.py became the package bulkops/engine/, issue 13).
LONG_FILES_ALLOWED: frozenset[str] = frozenset()
MAX_LINES = 400

#: What the library (everything but `api` and the simulator) must not import: the HTTP client and its parts.
HTTP_CLIENT = frozenset({"aiohttp", "yarl", "multidict"})


@cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _lazy_table_names(node: ast.Assign | ast.AnnAssign) -> Iterator[str]:
    """Module names held in a module-level dict's values: a string, or a tuple's strings."""
    if not isinstance(node.value, ast.Dict):
        return
    for value in node.value.values:
        items = value.elts if isinstance(value, ast.Tuple) else [value]
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str) and item.value in modules():
                yield item.value


@cache
def imports(name: str) -> dict[str, int]:
    """Every name module `name` imports (absolute, dotted) -> the first line that imports it."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.setdefault(base, node.lineno)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules():
                    found.setdefault(f"{base}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node in tree.body:
            for target in _lazy_table_names(node):
                found.setdefault(target, node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    visit(tree)
    return found


def _owner(name: str) -> str | None:
    """The package module that `name` (a module or a name inside one) belongs to; None outside bulkops."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, dict[str, int]]:
    """bulkops module -> {bulkops module it imports: line}."""
    edges: dict[str, dict[str, int]] = {}
    for name in modules():
        edges[name] = {}
        for imported, line in imports(name).items():
            owner = _owner(imported) if _top_level(imported) == "bulkops" else None
            if owner is not None and owner != name:
                edges[name].setdefault(owner, line)
    return edges


def find_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle for each strongly connected part of the graph that has one (Tarjan, then a path in it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
                if member == node:
                    break
            if len(part) > 1:
                parts.append(part)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    cycles = []
    for part in parts:
        start = min(part)
        path, node = [start], start
        while True:  # walk inside the part until a node repeats
            node = min(n for n in edges[node] if n in part)
            if node in path:
                cycles.append([*path[path.index(node) :], node])
                break
            path.append(node)
    return cycles


def _shown(cycle: list[str]) -> str:
    edges = graph()
    return " -> ".join(
        f"{a} (line {edges[a][b]})" if b else a for a, b in zip(cycle, [*cycle[1:], ""], strict=True)
    )


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    """Each module of bulkops imports first, alone, in a new interpreter (an import cycle often fails so)."""
    names = [n for n in modules() if n != "bulkops.__main__"]

    def load(name: str) -> tuple[str, int, str]:
        proc = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        return name, proc.returncode, proc.stderr[-1000:]

    with ThreadPoolExecutor(max_workers=8) as pool:
        failed = [(n, err) for n, code, err in pool.map(load, names) if code != 0]
    assert not failed, failed


def test_the_import_graph_has_no_cycle() -> None:
    """No module imports, directly or through others, a module that imports it (lazy imports included)."""
    cycles = find_cycles(graph())
    assert not cycles, "import cycles:\n" + "\n".join(_shown(c) for c in cycles)


def test_the_cycle_finder_names_a_cycle() -> None:
    """The finder itself: a three-module loop is named in order, a diamond is not a cycle."""
    loop = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycles(loop) == [["a", "b", "c", "a"]]
    diamond: dict[str, dict[str, int]] = {"a": {"b": 1, "c": 1}, "b": {"d": 1}, "c": {"d": 1}, "d": {}}
    assert find_cycles(diamond) == []


def test_the_graph_sees_function_level_and_lazy_imports() -> None:
    """The edges include an import inside a function and a lazy-import table, and leave out TYPE_CHECKING."""
    edges = graph()
    assert "bulkops.cli.progress" in edges["bulkops.cli.command_stop"]  # imported inside _observer()
    assert "bulkops.cli.report_cli" in edges["bulkops.cli.main"]  # the lazy sub-command table
    assert "bulkops.engine" in edges["bulkops"]  # the lazy public names
    assert "bulkops.cli.runner" in edges["bulkops.cli.command_stop"]


def test_no_file_is_over_400_lines() -> None:
    """Every file in bulkops/ is at most 400 lines long, but for the allow-list (whose files must need it)."""
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    too_long = {f: n for f, n in lengths.items() if n > MAX_LINES and f not in LONG_FILES_ALLOWED}
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"
    stale = {f for f in LONG_FILES_ALLOWED if lengths.get(f, 0) <= MAX_LINES}
    assert not stale, f"short enough (or gone): take them off LONG_FILES_ALLOWED: {sorted(stale)}"


def _top_level(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def test_the_simulator_imports_only_auth_aiohttp_and_the_standard_library() -> None:
    """The simulator stands apart from the tool it tests: bulkops.cloud.auth (to verify signatures), its own
    modules, aiohttp and the standard library (and `wording`, a leaf for plurals); its command (`bulkops
    simulate`, `simulator.command*`) may use click too."""
    allowed_outside = set(sys.stdlib_module_names) | {"aiohttp"}
    wrong = {}
    for name in modules():
        if not (name == "bulkops.simulator" or name.startswith("bulkops.simulator.")):
            continue
        allowed = allowed_outside | ({"click"} if name.startswith("bulkops.simulator.command") else set())
        for imported, line in imports(name).items():
            inside = imported in ("bulkops.cloud.auth", "bulkops.wording") or imported.startswith(
                ("bulkops.simulator.", "bulkops.cloud.auth.")
            )
            if imported == "bulkops.simulator" or inside:
                continue
            if _top_level(imported) == "bulkops" or _top_level(imported) not in allowed:
                wrong[f"{name}:{line}"] = imported
    assert not wrong, wrong


def test_only_api_imports_the_http_client() -> None:
    """Outside the simulator, only bulkops.cloud.api imports aiohttp (or its yarl and multidict)."""
    wrong = {
        f"{name}:{line}": imported
        for name in modules()
        if name != "bulkops.cloud.api" and not name.startswith("bulkops.simulator")
        for imported, line in imports(name).items()
        if _top_level(imported) in HTTP_CLIENT
    }
    assert not wrong, wrong


#: What each part of the package may import, besides itself and the top level (models, errors, options,
#: clock, ...). The layers point down: cli > redis > engine > io > cloud > top level.
MAY_IMPORT = {
    "top": frozenset(),
    "cloud": frozenset(),
    "io": frozenset({"cloud"}),
    "engine": frozenset({"cloud", "io"}),
    "redis": frozenset({"cloud", "engine"}),
    "job": frozenset({"cloud", "io", "engine", "redis"}),
    "simulator": frozenset({"cloud"}),
    "cli": frozenset({"cloud", "io", "engine", "redis", "job", "simulator"}),
}
#: Top-level modules that reach up, and why: the package facade re-exports the public API; `options`
#: holds the run's `Credentials` (cloud.auth, a leaf); `__main__` is `python -m bulkops`.
TOP_EXCEPTIONS = {"bulkops": MAY_IMPORT["cli"], "bulkops.__main__": {"cli"}, "bulkops.options": {"cloud"}}


def _part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else "top"


def test_the_layers_point_down() -> None:
    """The package is grouped so its layout shows its layers (issue 13): cli on top, then redis, engine,
    io, cloud, and the top-level modules at the bottom; no part imports a part above it."""
    wrong = {}
    for name, edges in graph().items():
        part = _part(name)
        allowed = TOP_EXCEPTIONS.get(name, MAY_IMPORT[part])
        for imported, line in edges.items():
            other = _part(imported)
            if other not in (part, "top") and other not in allowed:
                wrong[f"{name}:{line}"] = imported
    assert not wrong, wrong
    assert set(MAY_IMPORT) - {"top"} == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
