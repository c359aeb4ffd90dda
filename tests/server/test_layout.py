"""The code's shape, as docs/architecture.md's module map and DESIGN promise it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAP_PAGE = REPO / "docs" / "architecture.md"


def architecture_files() -> list[Path]:
    """The modules of the map: one per line, `name.py` or `folder/` first, nested by
    indent; a description that runs on is indented past any name (and skipped)."""
    text = MAP_PAGE.read_text()
    block = text.split("## Module map", 1)[1].split("```", 2)[1]
    found: list[Path] = []
    folders: list[tuple[int, str]] = []  # (indent, folder) of the enclosing folders
    for line in block.splitlines():
        match = re.match(r"^(\s*)(\S+)", line)
        if not match or len(match.group(1)) > 6:
            continue  # a continued description
        indent, first = len(match.group(1)), match.group(2)
        while folders and folders[-1][0] >= indent:
            folders.pop()
        base = Path(*[f for _, f in folders]) if folders else Path()
        if first.endswith("/"):
            folders.append((indent, first.rstrip("/")))
        elif first.endswith(".py"):
            found.append(base / first)
    return found


def test_every_module_in_the_map_exists():
    files = architecture_files()
    assert len(files) > 40
    missing = [str(f) for f in files if not (REPO / f).is_file()]
    assert not missing, missing


def test_every_module_is_in_the_map():
    mapped = set(architecture_files())
    unmapped = [
        str(rel)
        for folder in ("server", "pipeline")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "__init__.py" and (rel := path.relative_to(REPO)) not in mapped
    ]
    assert not unmapped, f"add these to the module map in docs/architecture.md: {unmapped}"


def test_modules_are_small_and_server_top_level_is_short():
    big = [
        f"{p.relative_to(REPO)}: {n}"
        for folder in ("server", "pipeline")
        for p in (REPO / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert not big, big
    assert len(list((REPO / "server").glob("*.py"))) <= 8



def test_no_function_is_over_80_lines():
    long = [
        f"{p.relative_to(REPO)}:{node.lineno} {node.name}: {length}"
        for folder in ("server", "pipeline")
        for p in sorted((REPO / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > 80
    ]
    assert not long, long

def test_layers_import_only_downwards():
    for path in (REPO / "pipeline").rglob("*.py"):
        assert not re.search(r"^\s*(from|import) server\b", path.read_text(), re.M), path
    for path in (REPO / "server" / "procs").rglob("*.py"):
        imports = re.findall(r"^\s*from (server\.\w+)", path.read_text(), re.M)
        assert all(name == "server.procs" for name in imports), (path, imports)


def test_status_strings_are_spelled_only_in_jobs_state():
    # A status as a value; "running" is also a key of process samples and of /api/health.
    quoted = re.compile(r"""(?<![\[(])["'](queued|running|completed|failed|cancelled)["'](?!\s*[:\]])""")
    allowed = {REPO / "server" / "jobs" / "state.py", REPO / "server" / "store" / "migrate.py"}
    for path in (REPO / "server").rglob("*.py"):
        if path in allowed:
            continue
        for line in path.read_text().splitlines():
            if '"gone"' in line:
                continue  # cli/jobs names a process's state (running, gone, starting)
            assert not quoted.findall(line), (path, line)


def _runtime_imports(tree: ast.AST) -> list[str]:
    """Modules imported when the code runs: at the top, in functions, anywhere but an
    `if TYPE_CHECKING:` block (its else branch does run)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.orelse:
                    visit(child)
                return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from server import keys` imports server.keys: count each name as a module too.
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _server_unit(module: str) -> str | None:
    """The subpackage (server.jobs) or top-level module (server.app) a module belongs to."""
    parts = module.split(".")
    if parts[0] != "server" or len(parts) < 2:
        return None
    unit = REPO / "server" / parts[1]
    return f"server.{parts[1]}" if unit.is_dir() or unit.with_suffix(".py").is_file() else None


def server_import_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> unit it imports at run time -> the files that do it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in (REPO / "server").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        source = _server_unit(module)
        for name in _runtime_imports(ast.parse(path.read_text())):
            target = _server_unit(name)
            if source and target and target != source:
                graph.setdefault(source, {}).setdefault(target, set()).add(str(path.relative_to(REPO)))
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(graph):
        if node not in index:
            connect(node)
    return found


def test_server_subpackages_import_each_other_without_cycles():
    graph = server_import_graph()
    assert "server.jobs" in graph["server.web"]  # it sees the edges there are
    found = cycles(graph)
    detail = [
        {a: {b: sorted(files) for b, files in graph[a].items() if b in group} for a in group}
        for group in found
    ]
    assert not found, detail


def test_the_cycle_check_sees_imports_in_functions_and_skips_type_checking_blocks():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from server.store import Store\n"
        "def f():\n    from server.jobs import runner\n"
    )
    imports = _runtime_imports(tree)
    assert "server.jobs.runner" in imports and "server.store" not in imports
    assert cycles({"a": {"b": {"x"}}, "b": {"a": {"y"}}}) == [["a", "b"]]
def _pipeline_imports(path: Path) -> set[str]:
    """The pipeline modules `path` imports at run time, inside functions too, but not
    under `if TYPE_CHECKING:`."""
    import ast

    def walk(node: ast.AST) -> list[ast.AST]:
        found: list[ast.AST] = []
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test):
                found += [n for orelse in child.orelse for n in [orelse, *walk(orelse)]]
                continue
            found += [child, *walk(child)]
        return found

    names: set[str] = set()
    for node in walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from pipeline import audio` imports the module pipeline.audio
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("pipeline.")}


def test_pipeline_has_no_import_cycles_and_nothing_imports_its_main():
    modules = {f"pipeline.{p.stem}": p for p in (REPO / "pipeline").glob("*.py")}
    graph = {name: _pipeline_imports(path) & modules.keys() for name, path in modules.items()}
    graph = {name: deps - {name} for name, deps in graph.items()}
    importers = [
        str(p.relative_to(REPO))
        for folder in ("server", "pipeline", "tests", "benchmarks")
        for p in (REPO / folder).rglob("*.py")
        if p.parent.name != "__pycache__" and "pipeline.__main__" in _pipeline_imports(p)
    ]
    assert not importers, importers
    # Depth-first search; a module met again while still on the path closes a cycle.
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
