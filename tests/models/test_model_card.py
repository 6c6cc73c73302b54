"""models/MODEL_CARD.md fits a screen and says what ships: at most 250 lines, its "What ships" block is what
`python -m training.card` writes from models/manifest.json (files, sizes, sha256, version), and every link it gives
leads somewhere. The record of each model lives in docs/experiments/."""

from __future__ import annotations

import json
import re
from pathlib import Path

from training import card as writer

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "models" / "MODEL_CARD.md"
EXPERIMENTS = ROOT / "docs" / "experiments"
SHA = re.compile(r"\b[0-9a-f]{64}\b")


def manifest() -> dict:
    return json.loads((ROOT / "models" / "manifest.json").read_text())


def test_the_card_fits_a_screen():
    lines = CARD.read_text().splitlines()
    assert 50 < len(lines) <= 250, len(lines)


def test_what_ships_is_what_the_manifest_says():
    text = CARD.read_text()
    assert writer.update(text, writer.shipped(ROOT / "models")) == text, "run: python -m training.card"
    raw = manifest()
    files = {v["file"]: v["sha256"] for v in raw.values() if isinstance(v, dict) and "file" in v}
    assert len(files) == 6
    seen = {}
    for line in text.splitlines():
        for sha in SHA.findall(line):
            named = [f for f in re.findall(r"`([^`]+)`", line) if f in files]
            assert len(named) == 1, f"a sha256 line must name one file of the manifest: {line}"
            seen[named[0]] = sha
    assert seen == files  # every file once, each with the manifest's checksum
    assert f"version **{raw['version']}**" in text and raw["name"] in text


def test_every_link_leads_somewhere():
    text = CARD.read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert {"../docs/experiments/detector.md", "../docs/experiments/closed-encoder.md",
            "../docs/experiments/general-encoder.md"} <= set(links)
    missing = [link for link in links if not (CARD.parent / link).exists()]
    assert missing == []


def test_the_record_has_one_file_per_model_and_points_back():
    names = {p.name for p in EXPERIMENTS.glob("*.md")}
    assert {"detector.md", "closed-encoder.md", "general-encoder.md", "performance.md"} <= names
    for path in EXPERIMENTS.glob("*.md"):
        text = path.read_text()
        assert text.startswith("# ") and "(../../models/MODEL_CARD.md)" in text, path.name
        for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
            assert (path.parent / image).is_file(), f"{path.name}: {image}"
    # what the long card held is there: each model's history and every rejected run
    assert "### Tried, not shipped" in (EXPERIMENTS / "general-encoder.md").read_text()
    assert "## Experiments and misses" in (EXPERIMENTS / "closed-encoder.md").read_text()
    assert "| student v1 (score ≥ 0.6, NMS 0.4) |" in (EXPERIMENTS / "detector.md").read_text()
