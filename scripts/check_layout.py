"""Check the package layout the README promises: module sizes, no import cycles, Qt only under ``_qt/``.

Usage: python scripts/check_layout.py  (exit 1 and one line per problem when a rule is broken)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_histoaffine"
MAX_LINES, MAX_WIDGET_LINES = 400, 300
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "napari.qt", "napari._qt")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (lazy imports too), except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the package's modules (one per strongly connected component)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f): f for f in files}
    problems = []
    graph = {}
    for name, path in modules.items():
        lines = len(path.read_text().splitlines())
        limit = MAX_WIDGET_LINES if "._qt." in name else MAX_LINES
        if lines > limit:
            problems.append(f"{name}: {lines} lines (at most {limit})")
        imported = imports(path)
        if "._qt" not in name and (qt := sorted(i for i in imported if i.startswith(QT))):
            problems.append(f"{name}: imports Qt outside _qt/ ({', '.join(qt)})")
        graph[name] = {m for m in imported if m in modules and m != name}
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    print("\n".join(problems) or f"layout ok: {len(modules)} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
