"""Unit tests of the encoder's training transforms (no data, no training needed)."""

import cv2  # the train extra (`make test` installs it)
import numpy as np
import pytest
import torch  # the train extra (`make test` installs it)

from training.encoder import lineart  # noqa: E402
from training.encoder.augment import eval_views, make_views, random_geometry  # noqa: E402


def _face(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), 230, np.uint8)
    cv2.circle(img, (48, 48), 30, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    cv2.circle(img, (38, 44), 5, (20, 20, 20), -1)
    cv2.circle(img, (58, 44), 5, (20, 20, 20), -1)
    return img


@pytest.mark.parametrize("kind", lineart.KINDS)
def test_lineart_renderings_are_grey_lines_on_white(kind):
    out = lineart.render(_face(), kind)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.median(out) > 200  # mostly white background
    assert out.min() < 100  # some dark lines


def test_random_lineart_is_deterministic_per_seed():
    a = lineart.random_lineart(_face(), np.random.default_rng(3))
    b = lineart.random_lineart(_face(), np.random.default_rng(3))
    assert (a == b).all()


def test_make_views_shapes_and_range():
    imgs = np.stack([_face(i) for i in range(4)])
    lines = np.stack([[lineart.render(im, "xdog")[..., 0]] * 2 for im in imgs])
    g = torch.Generator().manual_seed(0)
    x = make_views(imgs, lines, 80, g, p_line=0.5)
    assert x.shape == (4, 3, 80, 80)
    assert x.min() >= -1.0001 and x.max() <= 1.0001


def test_eval_views_matches_serving_normalisation():
    imgs = np.zeros((2, 96, 96, 3), np.uint8)
    imgs[1] = 255
    x = eval_views(imgs, 80)
    assert torch.allclose(x[0], torch.full_like(x[0], -1.0)) and torch.allclose(x[1], torch.full_like(x[1], 1.0))


def _bar_angles(rot_deg, n=64):
    """Angle (degrees from horizontal) of a horizontal black bar after random_geometry, for n draws."""
    x = torch.ones(n, 3, 96, 96)
    x[:, :, 46:50, 8:88] = 0.0
    y = random_geometry(x, 96, torch.Generator().manual_seed(1), scale=(1.0, 1.0), aspect=0.0, shift=0.0,
                        rot_deg=rot_deg, flip=False)
    out = []
    for im in y[:, 0].numpy():
        ys, xs = np.nonzero(im < 0.5)
        out.append(abs(np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0]))))  # slope of the dark pixels
    return np.array(out)


def test_rotation_range_follows_rot_deg():
    assert _bar_angles(0.0).max() < 0.5  # no rotation: the bar stays level
    small, large = _bar_angles(12.0), _bar_angles(35.0)
    assert small.max() < 13.0 and large.max() < 36.0  # never beyond the range
    assert large.max() > 25.0 and np.median(large) > np.median(small) + 5  # and the wider range is used


def test_zoom_below_one_cuts_a_tighter_view_and_above_one_a_wider():
    """`zoom` is the crop side relative to the picture's: a centred square of a quarter of the side fills more of a
    view at 0.6 than at 1.0, and less at 1.25 (no rotation, shift, aspect or flip to blur the comparison)."""
    x = torch.ones(1, 3, 96, 96)
    x[:, :, 36:60, 36:60] = 0.0

    def dark_share(scale):
        y = random_geometry(x, 96, torch.Generator().manual_seed(0), scale=(scale, scale), aspect=0.0, shift=0.0,
                            rot_deg=0.0, flip=False)
        return float((y[0, 0] < 0.5).float().mean())

    tight, plain, wide = dark_share(0.6), dark_share(1.0), dark_share(1.25)
    assert abs(plain - 0.0625) < 0.01
    assert tight > plain * 2.5 and wide < plain * 0.75
    g = torch.Generator().manual_seed(0)
    imgs = np.stack([_face(i) for i in range(2)])
    assert make_views(imgs, None, 80, g, p_line=0.0, zoom=(0.6, 1.25)).shape == (2, 3, 80, 80)


def test_random_style_changes_the_picked_pictures_only_and_keeps_the_range():
    from training.encoder.augment import random_style

    x = torch.rand(64, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    y = random_style(x, g, p=0.5)
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    assert 15 < int(changed.sum()) < 50  # about half the pictures
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.equal(random_style(x, g, p=0.0), x)
    flat = random_style(torch.rand(200, 3, 16, 16), torch.Generator().manual_seed(1), p=1.0)
    levels = [len(torch.unique(im[0])) for im in flat]
    assert min(levels) <= 8  # some are posterised to a handful of flat levels


def test_make_views_without_style_draws_what_it_drew_before():
    imgs = np.stack([_face(i) for i in range(3)])
    a = make_views(imgs, None, 64, torch.Generator().manual_seed(3), p_line=0.0)
    b = make_views(imgs, None, 64, torch.Generator().manual_seed(3), p_line=0.0, p_style=0.0)
    assert torch.equal(a, b)
    c = make_views(imgs, None, 64, torch.Generator().manual_seed(3), p_line=0.0, p_style=1.0)
    assert c.shape == a.shape and not torch.equal(a, c)
