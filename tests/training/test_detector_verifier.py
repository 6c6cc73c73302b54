"""Fitting the head verifier (training/detector/verifier.py): the regression, the views, the split, the
portrait check."""

from __future__ import annotations

import numpy as np

from training.detector import verifier
from training.detector.data import train_paths


def test_fit_logistic_separates_and_balances_the_classes():
    rng = np.random.default_rng(0)
    pos = rng.normal([2.0, 0.0], 0.5, (40, 2))
    neg = rng.normal([-2.0, 0.0], 0.5, (400, 2))
    x, y = np.concatenate([pos, neg]), np.r_[np.ones(40), np.zeros(400)]
    w, b = verifier.fit_logistic(x, y, lam=0.1)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert (p[:40] > 0.5).all() and (p[40:] < 0.5).all()
    assert abs(b) < 1.0  # class-balanced: ten times more negatives do not push the boundary onto the heads
    assert abs(w[1]) < 0.2 * abs(w[0])  # the second feature carries nothing


def test_augment_makes_grey_turned_and_line_art_views_of_the_same_shape():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    crops[0, :32] = [255, 0, 0]  # red top half
    views = verifier.augment(crops, rng)
    assert set(views) == {"grey", "rot90", "rot180", "rot270", "lineart"}
    assert all(v.shape == crops.shape and v.dtype == np.uint8 for v in views.values())
    g = views["grey"]
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert (views["rot180"][0, 32:] == [255, 0, 0]).all()  # the red half is now at the bottom
    assert (views["rot90"][0] == np.rot90(crops[0])).all()


def test_a_quarter_of_the_training_pictures_is_kept_for_the_threshold(shared):
    paths = train_paths()
    share = np.mean([verifier.is_checking(p) for p in paths])
    assert 0.18 < share < 0.32


def test_portrait_f1_counts_kept_heads_and_kept_non_heads_only():
    # 4 heads in all (one portrait without any box), 3 boxed; 2 non-heads; 1 ignored box
    c = {"y": np.array([1, 1, 1, 0, 0, -1]), "n_heads": 4}
    r, p, f = verifier.portrait_f1(c, np.ones(6, bool))
    assert (r, p) == (0.75, 0.6) and abs(f - 2 * 0.75 * 0.6 / 1.35) < 1e-9
    r, p, f = verifier.portrait_f1(c, np.array([1, 1, 0, 0, 1, 0], bool))  # one head lost, one non-head removed
    assert (r, p) == (0.5, 2 / 3)
    assert verifier.portrait_f1(c, np.zeros(6, bool)) == (0.0, 0.0, 0.0)


def test_the_portrait_boxes_checked_by_eye_are_well_formed(shared):
    import json

    from training.detector.common import DATA

    checked = json.loads(verifier.PORTRAITS.read_text())
    assert len(checked) >= 50
    for path, lab in checked.items():
        assert path.startswith("characters/myanimelist/") and (DATA / path).is_file()
        assert set(lab) == {"heads", "not_heads", "ignore"}
        assert lab["heads"], path  # every portrait shows its character
        boxes = np.asarray(lab["heads"] + lab["not_heads"] + lab["ignore"], np.float32)
        assert boxes.shape[1] == 4 and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert sum(len(v["not_heads"]) for v in checked.values()) >= 40  # the brooches, buttons and badges
