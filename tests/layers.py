"""The project's imports as a graph, read from the source (nothing is imported): which module imports which, lazy
imports inside functions included, so that the layer tests can look for arrows that run back up and for circles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The code that runs the bot and the recognition core; training and the tools sit above it and are left out.
ROOMS = ("inference", "service", "cogs")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against its package (`from .x import y` gives
    both `pkg.x` and `pkg.x.y`: the second is a module only when y is one)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def project_files() -> dict[str, Path]:
    """Module name -> file, for bot.py and every module of the rooms."""
    files = {"bot": ROOT / "bot.py"}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            files[module_name(path)] = path
    return files


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's import of its own submodule included)."""
    files = project_files()
    return {name: {m for m in imported(path) if m in files and m != name} for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted: empty when the imports form a
    tree (a directed graph without circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out
