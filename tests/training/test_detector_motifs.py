"""The detector trainer's hard negatives: patterns of small motifs drawn on the background, never on a head."""

from __future__ import annotations

import random

import numpy as np
import pytest

from training.detector.data import MOTIFS, Sampler, motif_polys


@pytest.mark.parametrize("kind", MOTIFS)
def test_a_motif_stays_within_its_radius(kind):
    parts = motif_polys(kind, 100.0, 60.0, 20.0, 0.4, random.Random(0))
    assert parts
    pts = np.concatenate([p for p, _ in parts])
    assert np.all(np.hypot(pts[:, 0] - 100, pts[:, 1] - 60) <= 20 * 1.05)
    assert np.ptp(pts[:, 0]) > 8 and np.ptp(pts[:, 1]) > 8  # a shape, not a dot


def test_motifs_draw_on_the_background_and_leave_heads_alone():
    head = np.array([[100, 100, 220, 220]], np.float32)
    changed_outside = 0
    for seed in range(12):
        s = Sampler([], [], seed=seed, size=320, p_motifs=1.0)
        img = np.full((320, 320, 3), 200, np.uint8)
        s.motifs(img, head)
        diff = np.any(img != 200, axis=2)
        # a drawn motif may reach at most a sliver into the head box (its box overlaps it by <= 10 %)
        assert diff[110:210, 110:210].sum() == 0
        changed_outside += int(diff.sum())
    assert changed_outside > 12 * 50  # every pattern drew something


def test_motifs_change_the_picture_but_add_no_heads():
    rs = np.random.default_rng(0)
    scene = {"img": rs.integers(0, 255, (200, 300, 3), np.uint8), "boxes": np.array([[40, 30, 100, 90]], np.float32),
             "ignore": np.zeros((0, 4), np.float32)}
    crops = [(rs.integers(0, 255, (96, 96, 3), np.uint8), [0.0, 0.0, 1.0, 1.0])]
    plain = Sampler([scene], crops, seed=3, size=160, p_motifs=0.0)
    motif = Sampler([scene], crops, seed=3, size=160, p_motifs=1.0)
    differ = 0
    for _ in range(10):
        (ia, ba, ga), (ib, bb, gb) = plain.sample(), motif.sample()
        np.testing.assert_array_equal(ba, bb)  # same heads, same ignore boxes
        np.testing.assert_array_equal(ga, gb)
        differ += int(not np.array_equal(ia, ib))
        motif.rng.setstate(plain.rng.getstate())  # in step again (drawing the motifs used random numbers)
    assert differ >= 8
