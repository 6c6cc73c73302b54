"""Fine-tuning start (`init = "RUN"` in a `training.encoder.train` config): weights loaded, CosFace rows at the class prototypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the train extra (`make test` installs it)
import torch.nn.functional as F

from training.encoder import export, train
from training.encoder.model import Encoder


def _checkpoint(tmp_path, heldout):
    torch.manual_seed(0)
    enc = Encoder(dim=16).eval()
    (tmp_path / "base").mkdir()
    torch.save({"state_dict": enc.state_dict(), "dim": 16, "size": 24, "steps_done": 7, "heldout": heldout,
                "characters": ["a", "b", "c"]}, tmp_path / "base" / "encoder.pt")
    return enc


def test_init_loads_the_weights_and_sets_cosface_to_the_class_means(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    base = _checkpoint(tmp_path, ["c"])
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (9, 96, 96, 3), dtype=np.uint8)
    lab = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    split = np.array(["train", "train", "val"] * 3)
    model, cosface = Encoder(dim=16), train.CosFace(16, 2)
    train.init_from(model, cosface, "base", ["c"], faces, lab, split, [0, 1], size=32)
    for k, v in base.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    e = train.embed(model, faces, 32, flip=False)  # what the prototypes were computed from
    for row, c in enumerate([0, 1]):
        want = e[(lab == c) & (split == "train")].mean(0)
        got = cosface.w[row].detach().numpy()
        assert np.allclose(got, want / np.linalg.norm(want), atol=1e-5)
        # each class's own training faces score highest against their own row
        cos = F.normalize(torch.from_numpy(e[(lab == c) & (split == "train")]), dim=1) @ cosface.w.detach().T
        assert (cos.argmax(1) == row).all()


def test_init_refuses_a_run_with_other_held_out_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    _checkpoint(tmp_path, ["b"])
    faces = np.zeros((3, 96, 96, 3), np.uint8)
    with pytest.raises(SystemExit, match="held-out"):
        train.init_from(Encoder(dim=16), train.CosFace(16, 2), "base", ["c"], faces, np.array([0, 1, 2]),
                        np.array(["train"] * 3), [0, 1], size=32)


def test_quick_eval_masks_the_held_out_classes_instead_of_scoring_a_constant_row():
    protos = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.3]])
    # embeddings with a negative sum: a held-out row of -10s would score +10 and win every time
    emb = np.array([[0.9, -0.4], [-0.4, 0.9], [0.8, -0.6]])
    y = np.array([0, 1, 0])
    assert train.known_proto_top1(emb, y, protos, [2]) == 1.0
    assert train.known_proto_top1(emb, y, protos, [0]) == pytest.approx(1 / 3)  # class 0 gone: its faces are wrong


def test_the_card_lists_the_run_a_member_was_fine_tuned_from_before_it(tmp_path, monkeypatch):
    import json

    from training.encoder import card

    monkeypatch.setattr(card, "OUT", tmp_path)
    for run, init in (("base", ""), ("ft", "base"), ("other", "")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "history.json").write_text(json.dumps({"args": {"run": run, "init": init}}))
    order = list(card.with_init_runs(["ft", "other", "base"]))
    assert order == ["base", "ft", "other"]  # base once, before the run that starts from it


def test_the_card_splits_known_accuracy_by_first_and_later_faces_when_measured():
    from training.encoder import card

    kv = {"top1_first_face": 0.9654, "top3_first_face": 0.9929, "n_first_face": 1127,
          "top1_later_face": 0.9468, "top3_later_face": 0.9734, "n_later_face": 301}
    rows = card.face_rows(kv).splitlines()
    assert rows == ["| known top-1 / top-3, first face of a picture (1127) | 0.965 / 0.993 | |",
                    "| known top-1 / top-3, 2nd+ faces of a picture (301; may show another character) | 0.947 / 0.973 | |"]
    assert card.face_rows({"top1": 0.96}) == ""  # metrics written before the split: no rows


def test_a_checkpoint_keeps_its_depths_and_older_checkpoints_load_as_1_1_2_1(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    torch.manual_seed(0)
    deep = Encoder(depths=(1, 2, 2, 2), dim=16).eval()
    (tmp_path / "deep").mkdir()
    torch.save({"state_dict": deep.state_dict(), "dim": 16, "depths": [1, 2, 2, 2], "size": 24, "steps_done": 3,
                "heldout": ["c"], "characters": ["a", "b", "c"]}, tmp_path / "deep" / "encoder.pt")
    base = _checkpoint(tmp_path, ["c"])  # written without "depths", as every run before --depths
    x = torch.rand(2, 3, 32, 32)
    for run, want in (("deep", deep), ("base", base)):
        got, _ = export.load_encoder(run)
        assert got.depths == want.depths
        with torch.no_grad():
            assert torch.allclose(got(x), want(x), atol=1e-6), run
    assert len(export.load_encoder("deep")[0].stages) == 7  # 1 + 2 + 2 + 2 blocks, not the default 5


def test_init_refuses_a_run_of_another_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    _checkpoint(tmp_path, ["c"])
    faces = np.zeros((3, 96, 96, 3), np.uint8)
    with pytest.raises(SystemExit, match="depths"):
        train.init_from(Encoder(depths=(1, 2, 2, 2), dim=16), train.CosFace(16, 2), "base", ["c"], faces,
                        np.array([0, 1, 2]), np.array(["train"] * 3), [0, 1], size=32)


def test_the_card_counts_a_members_blocks_from_its_depths():
    from training.encoder import card

    assert card.member_blocks({"run": "xl"}) == 5  # a run from before --depths: model.DEPTHS
    assert card.member_blocks({"run": "deep", "depths": "1,2,2,2"}) == 7
    cmds = card.train_commands({"xl": {"args": {"run": "xl", "size": 64, "init": ""}},
                                "all64": {"args": {"run": "all64", "size": 64, "depths": "1,2,2,2", "init": ""}}})
    xl, all64 = cmds.splitlines()
    assert xl == "python -m training.encoder.train training/encoder/configs/xl.toml   # 2. encoder, 6 characters held out"
    assert all64 == "python -m training.encoder.train training/encoder/configs/all64.toml"
    with pytest.raises(SystemExit, match="deep"):  # a run without a committed config cannot be cited
        card.train_commands({"deep": {"args": {"run": "deep"}}})
