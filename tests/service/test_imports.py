"""The bot's service (service/) sits under the bot: it imports the recognition core, never bot.py or the cogs,
and the project's imports (bot.py, cogs/, service/, inference/) form a tree, without circles."""

from __future__ import annotations

import pytest

from layers import ROOT, circles, graph, imported

SERVICE = sorted((ROOT / "service").glob("*.py"))


def test_the_service_files_are_found():
    assert {"errors.py", "config.py", "recognizer.py", "storage.py"} <= {p.name for p in SERVICE}


@pytest.mark.parametrize("path", SERVICE, ids=lambda p: p.name)
def test_the_service_never_imports_the_bot_or_its_cogs(path):
    bad = {m for m in imported(path) if m.split(".")[0] in {"bot", "cogs"}}
    assert not bad, f"service/{path.name} imports {sorted(bad)}"


def test_nothing_below_the_bot_imports_it():
    edges = graph()
    assert "bot" in edges and edges["bot"] >= {"service.config", "service.errors"}  # the graph is read
    up = sorted(name for name, deps in edges.items() if name.split(".")[0] in {"inference", "service"}
                and {d for d in deps if d.split(".")[0] in {"bot", "cogs"}})
    assert up == []


def test_the_whole_bot_imports_form_a_tree():
    assert circles(graph()) == []
