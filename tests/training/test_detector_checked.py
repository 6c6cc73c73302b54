"""Checked head boxes for training pictures the teachers found no head in (training/detector/checked.py)."""

from __future__ import annotations

import json

import cv2

from training.detector import checked
from training.detector.data import is_heldout, train_paths


def test_checked_boxes_are_training_pictures_with_boxes_inside_them(shared):
    pictures = checked.load()
    assert len(pictures) >= 50
    assert all(p.startswith("scenes/") and not is_heldout(p) for p in pictures)
    for path, boxes in pictures.items():
        h, w = cv2.imread(str(shared / path)).shape[:2]
        assert boxes, path
        for x1, y1, x2, y2 in boxes:
            assert -1 <= x1 < x2 <= w + 1 and -1 <= y1 < y2 <= h + 1, (path, w, h)
            assert min(x2 - x1, y2 - y1) >= 8, path  # heads, not specks


def test_a_third_of_the_checked_pictures_is_never_trained_on():
    paths = train_paths()
    trained, calib = checked.training_paths(paths), checked.calibration_paths(paths)
    only = [p for p in paths if checked.calibration_only(p)]
    assert set(only) <= set(checked.load())
    assert 0.2 < len(only) / len(checked.load()) < 0.45
    assert not set(only) & set(trained)  # kept out of training ...
    assert set(only) <= set(calib)  # ... and calibrated on
    assert not (set(checked.load()) - set(only)) & set(calib)  # the trained-on ones are not calibrated on
    assert set(trained) | set(calib) == set(paths)  # every other training picture is in both


def fake_teachers(tmp_path, monkeypatch, second_score: float) -> None:
    """Teacher outputs for a.jpg (a sure head and a second box of `second_score`) and b.jpg (nothing); b.jpg has a
    checked box."""
    raw = {"a.jpg": {"size": [100, 200], "fb": [[10, 10, 50, 50, 0.9], [60, 10, 90, 40, second_score]],
                     "cascade": []},
           "b.jpg": {"size": [100, 200], "fb": [], "cascade": []}}
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    monkeypatch.setattr(checked, "RAW", tmp_path / "raw.json")
    monkeypatch.setattr(checked, "VERIFIED", tmp_path / "missing.json")
    monkeypatch.setattr(checked, "load", lambda: {"b.jpg": [[5.0, 6.0, 40.0, 45.0]]})


def test_scene_labels_use_checked_boxes_where_a_picture_has_them(tmp_path, monkeypatch):
    fake_teachers(tmp_path, monkeypatch, second_score=0.3)
    labels = checked.scene_labels(["a.jpg", "b.jpg"])
    assert labels["a.jpg"]["boxes"] == [[10.0, 10.0, 50.0, 50.0]]  # teachers: the sure box is a head ...
    assert labels["a.jpg"]["ignore"] == [[60.0, 10.0, 90.0, 40.0]]  # ... the weak one is not penalised
    assert labels["b.jpg"] == {"boxes": [[5.0, 6.0, 40.0, 45.0]], "ignore": []}  # no teacher head: checked box


def test_label_fixes_drop_non_heads_ignore_unsure_boxes_and_add_missed_heads():
    lab = {"boxes": [[10, 10, 50, 50], [100, 10, 140, 50], [200, 10, 240, 50]], "ignore": [[0, 0, 5, 5]]}
    fix = {"not_heads": [[11, 9, 51, 49]], "unsure": [[201, 10, 240, 52], [300, 300, 320, 320]],
           "heads": [[100, 12, 140, 50], [400, 10, 440, 50]]}
    out = checked.apply_fixes(lab, fix)
    # the non-head is gone (so it is background), the unsure one is ignored, the new head is added once
    assert out["boxes"] == [[100.0, 10.0, 140.0, 50.0], [400.0, 10.0, 440.0, 50.0]]
    assert out["ignore"] == [[0.0, 0.0, 5.0, 5.0], [200.0, 10.0, 240.0, 50.0], [201.0, 10.0, 240.0, 52.0],
                             [300.0, 300.0, 320.0, 320.0]]
    assert checked.apply_fixes(lab, None) is lab


def test_label_fixes_are_training_pictures_with_boxes_inside_them(shared):
    fixes = checked.load_fixes()
    assert sum(len(f["not_heads"]) for f in fixes.values()) >= 20
    assert sum(len(f["heads"]) for f in fixes.values()) >= 40
    for path, f in fixes.items():
        assert path.startswith("scenes/") and not is_heldout(path), path  # never a held-out picture
        h, w = cv2.imread(str(shared / path)).shape[:2]
        for x1, y1, x2, y2 in f["not_heads"] + f["heads"] + f["unsure"]:
            assert -1 <= x1 < x2 <= w + 1 and -1 <= y1 < y2 <= h + 1, (path, w, h)


def test_scene_labels_apply_the_fixes_to_teacher_labels_only(tmp_path, monkeypatch):
    fake_teachers(tmp_path, monkeypatch, second_score=0.9)
    fixes = {"a.jpg": {"not_heads": [[60, 10, 90, 40]], "heads": [], "unsure": []},
             "b.jpg": {"not_heads": [[5, 6, 40, 45]], "heads": [], "unsure": []}}
    monkeypatch.setattr(checked, "load_fixes", lambda: fixes)
    labels = checked.scene_labels(["a.jpg", "b.jpg"])
    assert labels["a.jpg"]["boxes"] == [[10.0, 10.0, 50.0, 50.0]]
    assert labels["b.jpg"]["boxes"] == [[5.0, 6.0, 40.0, 45.0]]  # checked boxes win over any fix
