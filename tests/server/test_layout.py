"""The code's shape, as docs/architecture.md's module map and DESIGN promise it."""

from __future__ import annotations

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
