"""The rooms of inference/: the data path imports neither Discord, nor the bot's service, nor its own adapters;
the adapters (inference/adapters/) import the data path, never Discord or the bot; no module imports itself back
through others."""

from __future__ import annotations

from pathlib import Path

import pytest

from layers import circles, graph, imported

ROOT = Path(__file__).resolve().parents[2]
DATA_PATH = sorted(p for p in (ROOT / "inference").glob("*.py") if p.name != "__main__.py")
ADAPTERS = sorted((ROOT / "inference" / "adapters").glob("*.py"))


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


def test_the_core_imports_form_a_tree():
    """No circle among inference/'s modules, lazy imports inside functions included (the manifest parses the
    decision's section as data; the decision does not reach back into the manifest's parser)."""
    core = {name: {m for m in deps if m.startswith("inference")} for name, deps in graph().items()
            if name.startswith("inference")}
    assert "inference.decide" in core["inference.pipeline"] and "inference.manifest" in core["inference.decide"]
    assert "inference.decide" not in core["inference.manifest"]
    assert circles(core) == []


def test_a_circle_is_seen():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
