"""The layout the README describes holds: firmware_bridge stands alone, no import cycle,
small modules, and the README's Layout table names every package folder there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge", "firmware_bridge", "convert", "benchmarks")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (``from a.b import c`` is a.b, and a.b.c when that is a
    module); at module level only, or anywhere (imports inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if top_level_only:
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and not _is_type_checking(node):
                stack.extend(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                stack.extend(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    stack.extend(handler.body)
            else:
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_firmware_bridge_imports_nothing_of_edge_or_opencv():
    offenders = {
        f"{path.relative_to(ROOT)} imports {imported}"
        for name, path in _modules().items()
        if name.startswith("firmware_bridge")
        for imported in _imports(path, top_level_only=False)
        if imported.split(".")[0] in ("edge", "cv2", "convert", "benchmarks")
    }
    assert not offenders, sorted(offenders)


def test_no_import_cycle():
    modules = _modules()
    graph = {
        name: {m for m in _imports(path, top_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    # Importing a.b.c imports the packages a and a.b first.
    for name in list(graph):
        for dep in list(graph[name]):
            parts = dep.split(".")
            graph[name].update(
                p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p != name
            )
            graph[name] &= set(modules)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1 and not name_is_parent(dep, node):
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    def name_is_parent(dep: str, node: str) -> bool:
        # A package's __init__ importing its own submodule is not a cycle: the
        # submodule then imports its (partly initialised) package, which Python allows.
        return node.startswith(dep + ".")

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_module_over_400_lines():
    paths = [*_modules().values(), *sorted((ROOT / "tests").glob("*.py"))]
    long = {
        str(path.relative_to(ROOT)): n
        for path in paths
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def _layout_table() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/.-]+/)`", section, flags=re.MULTILINE))


def test_the_readme_layout_table_names_every_package_folder():
    listed = _layout_table()
    folders = {
        f"{path.parent.relative_to(ROOT).as_posix()}/"
        for package in PACKAGES
        for path in (ROOT / package).rglob("__init__.py")
        if "bundled" not in path.parts
    }
    assert folders - listed == set(), f"folders missing from the README: {folders - listed}"
    missing = {entry for entry in listed if not (ROOT / entry).is_dir()}
    assert not missing, f"the README lists folders that do not exist: {missing}"
