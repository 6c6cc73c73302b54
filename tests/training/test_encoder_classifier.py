"""training.encoder.classifier.calibrate on synthetic embeddings: its 'calib' accuracy and gallery constants."""

from __future__ import annotations

import numpy as np

from training.encoder.classifier import calibrate


def _data(spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_cls, per, dim = 6, 40, 16
    centres = np.eye(dim)[:n_cls] * 3.0
    lab = np.repeat(np.arange(n_cls), per)
    x = centres[lab] + spread * rng.standard_normal((len(lab), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    split = np.array((["train"] * 30 + ["calib"] * 10) * n_cls)
    meta = {"characters": [f"c{i}" for i in range(n_cls)], "label": lab.tolist(), "split": split.tolist(),
            "heldout": ["c4", "c5"]}
    return {"faces": x.astype(np.float32), "lineart": x.astype(np.float32)}, meta


def test_calib_accuracy_is_reported_and_falls_with_overlap():
    clean = calibrate(*_data(0.3))
    noisy = calibrate(*_data(3.0))
    assert clean["calib_faces"] == noisy["calib_faces"] == 60
    assert clean["calib_top1"] == 1.0 and clean["calib_top3"] == 1.0
    assert noisy["calib_top1"] < 0.9 and noisy["calib_top1"] <= noisy["calib_top3"] <= 1.0
    assert noisy["calib_top3"] > noisy["calib_top1"]
    assert clean["gallery_scale"] > 0
