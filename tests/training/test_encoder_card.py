"""The model card writer (`training.encoder.card`): runs whose training history is not on this machine are taken
from the card before, so the card can be written again without retraining every member, and a classifier-only
block (`training.encoder.hires`) gets its commands and its description."""

from __future__ import annotations

import pytest

from training.encoder import card

OLD = """## Commands

Training ran on 2 shared CPU cores (one torch thread, bf16 autocast): xl: 12997 steps in 95.18 min, all64: 9091 steps in 55.0 min.
"""


def test_a_run_without_history_is_read_back_from_its_config_and_the_card_before():
    xl = card.history_from_card(OLD, "xl")
    assert xl["steps_done"] == 12997 and xl["minutes"] == 95.18
    assert xl["args"]["max_minutes"] == 95.0 and xl["args"]["seed"] == 1 and xl["args"]["run"] == "xl"
    assert card.member_blocks(card.history_from_card(OLD, "all64")["args"]) == 7  # depths = [1, 2, 2, 2]
    assert card.history_from_card(OLD, "x") is None and card.history_from_card(None, "xl") is None
    # written again, the card cites the config, not flags
    assert card.train_commands({"xl": xl}).split("   #")[0] == (
        "python -m training.encoder.train training/encoder/configs/xl.toml")


def test_with_init_runs_mixes_histories_on_disk_and_in_the_card(tmp_path, monkeypatch):
    monkeypatch.setattr(card, "OUT", tmp_path)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "history.json").write_text('{"args": {"run": "new", "heldout": "none", "seed": 9}, '
                                                   '"steps_done": 5, "minutes": 1.0}')
    got = card.with_init_runs(["xl", "new"], old=OLD)
    assert list(got) == ["xl", "new"] and got["xl"]["steps_done"] == 12997 and got["new"]["steps_done"] == 5
    monkeypatch.setattr(card, "CONFIGS", tmp_path)
    (tmp_path / "xl.toml").write_text('run = "xl"\n')
    (tmp_path / "new.toml").write_text('run = "new"\n')
    assert card.train_commands(got).splitlines()[1] == "python -m training.encoder.train training/encoder/configs/new.toml"
    with pytest.raises(SystemExit, match="gone"):  # neither a history nor a config
        card.with_init_runs(["gone"], old=OLD)


def test_a_classifier_only_block_is_described():
    h = {"runs": ["all64", "all64b"], "steps": [14000, 14000], "size": 64, "base_size": 64, "weight": 1.0,
         "dims": 768, "heldout": []}
    cmd = card.hires_cmd(h, True)
    assert "--run all64,all64b" in cmd and "--every-character --weight 1.0" in cmd and "quantize" in cmd
    text = card.hires_text(h, 2520, True)
    assert "all 32 characters" in text and "768 dimensions" in text and "2520-d" in text
    assert card.hires_cmd(None, False) == card.hires_text(None, 1, False) == ""
    assert "--every-character" not in card.hires_cmd({**h, "heldout": ["a"]}, False)
    assert "all 32" not in card.hires_text({**h, "heldout": ["a"]}, 2520, False)


def test_each_appending_step_is_described_with_its_own_output_width():
    """The shipped graph: 512-d embedding, a 216-bin colour histogram, 1,024 pooled dims, then a 1,152-d
    classifier-only block. The colour step's output is 728-d whatever comes after it (a block once made the card
    say 1880)."""
    from training.encoder.classifier import gallery_dims, step_widths

    info = {"dim": 2904, "colour": {"bins": [24, 3, 3]}, "pooled": {"dims": 1024}, "hires": {"dims": 1152}}
    assert step_widths(info) == {"embedding": 512, "colour": 728, "pooled": 1752, "hires": 2904}
    assert step_widths({**info, "dim": 1752, "hires": None}) == {"embedding": 512, "colour": 728, "pooled": 1752,
                                                                 "hires": 1752}
    assert step_widths({"dim": 512, "colour": None, "pooled": None, "hires": None})["colour"] == 512
    assert gallery_dims(info) == 512
