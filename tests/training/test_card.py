"""`python -m training.card`: the "What ships" block of the model card, written from a bundle's manifest between
its two markers, the rest of the card left as it is; `--check` says when it is out of date."""

from __future__ import annotations

import json
import shutil

import pytest

from training import card


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    (out / card.CARD).write_text(f"# Card\n\nbefore\n\n{card.BEGIN}\nstale\n{card.END}\n\nafter\n")
    return out


def test_the_block_lists_every_file_with_its_checksum(bundle):
    raw = json.loads((bundle / "manifest.json").read_text())
    block = card.shipped(bundle)
    for section in ("detector", "encoder", "classifier"):
        spec = raw[section]
        row = next(line for line in block.splitlines() if f"`{spec['file']}`" in line)
        assert f"`{spec['sha256']}`" in row and row.count("|") == 5
    assert f"version **{raw.get('version', 'unversioned')}**" in block


def test_only_the_block_is_written_and_check_sees_a_stale_one(bundle, capsys):
    assert card.main(["--bundle", str(bundle), "--check"]) == 1
    assert card.main(["--bundle", str(bundle)]) == 0
    text = (bundle / card.CARD).read_text()
    assert text.startswith("# Card\n\nbefore\n\n") and text.endswith(f"{card.END}\n\nafter\n") and "stale" not in text
    assert card.main(["--bundle", str(bundle), "--check"]) == 0
    assert card.update(text, card.shipped(bundle)) == text  # written twice, the same


def test_a_card_without_its_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        card.update("# Card\n", "block")
    with pytest.raises(ValueError, match="markers"):
        card.update(f"{card.END}\n{card.BEGIN}\n", "block")
