"""The detector trainer's hard negatives: patterns of small motifs drawn on the background, never on a head."""

from __future__ import annotations

import random

import numpy as np
import pytest

from training.detector.data import DECOYS, MOTIFS, Sampler, motif_polys


@pytest.mark.parametrize("kind", MOTIFS + DECOYS)
def test_a_motif_stays_within_its_radius(kind):
    parts = motif_polys(kind, 100.0, 60.0, 20.0, 0.4, random.Random(0))
    assert parts
    pts = np.concatenate([p for p, *_ in parts])
    assert np.all(np.hypot(pts[:, 0] - 100, pts[:, 1] - 60) <= 20 * 1.1)  # (a bow's wing tips reach 1.1 r)
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


def test_an_unknown_motif_is_refused():
    with pytest.raises(ValueError, match="unknown motif"):
        motif_polys("dragon", 0.0, 0.0, 10.0, 0.0, random.Random(0))


@pytest.mark.parametrize("kind", ["skull", "critter"])
def test_face_like_decoys_have_features_in_a_second_colour(kind):
    parts = motif_polys(kind, 50.0, 50.0, 20.0, 0.0, random.Random(1))
    accents = [p for p, _, accent in parts if accent]
    assert len(accents) >= 2  # eyes (or sockets) at least
    for pts in accents:  # features sit inside the face, not beside it
        assert np.all(np.hypot(pts[:, 0] - 50, pts[:, 1] - 50) <= 20 * 0.75)


def test_decoys_are_drawn_only_when_asked_for_and_keep_off_heads():
    head = np.array([[100, 100, 220, 220]], np.float32)
    assert not set(Sampler([], [], p_motifs=1.0).motif_kinds) & set(DECOYS)  # the default: the older motifs only
    colours = 0
    for seed in range(12):
        s = Sampler([], [], seed=seed, size=320, p_motifs=1.0, motif_kinds=DECOYS)
        img = np.full((320, 320, 3), 200, np.uint8)
        s.motifs(img, head)
        assert not np.any(img[110:210, 110:210] != 200)
        drawn = img.reshape(-1, 3)[np.any(img.reshape(-1, 3) != 200, axis=1)]
        assert len(drawn) > 50
        colours += len(np.unique(drawn, axis=0)) > 2
    assert colours >= 10  # a body colour, an accent colour and anti-aliased edges
