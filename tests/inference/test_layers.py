"""The rooms of inference/: the data path imports neither Discord, nor the bot's service, nor its own adapters;
the adapters (inference/adapters/) import the data path, never Discord or the bot."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_PATH = sorted(p for p in (ROOT / "inference").glob("*.py") if p.name != "__main__.py")
ADAPTERS = sorted((ROOT / "inference" / "adapters").glob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against its package."""
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


def test_the_rooms_are_found():
    names = {p.name for p in DATA_PATH}
    assert {"decode.py", "detect.py", "crop.py", "embed.py", "classify.py", "decide.py", "pipeline.py"} <= names
    assert {"cli.py", "api.py", "bench.py", "serve.py", "wire.py"} <= {p.name for p in ADAPTERS}
    assert imported(ROOT / "inference" / "adapters" / "cli.py") >= {"inference.errors", "inference.settings"}


@pytest.mark.parametrize("path", DATA_PATH, ids=lambda p: p.name)
def test_the_data_path_imports_no_adapter_and_no_discord(path):
    bad = {m for m in imported(path) if m.split(".")[0] in {"discord", "cogs", "service", "bot"}
           or m.startswith("inference.adapters")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_the_adapters_import_no_discord(path):
    bad = {m for m in imported(path) if m.split(".")[0] in {"discord", "cogs", "service", "bot"}}
    assert not bad, f"{path.name} imports {sorted(bad)}"
