"""Unit tests of the encoder's training transforms (no data, no training needed)."""

import cv2  # the train extra (`make test` installs it)
import numpy as np
import pytest
import torch  # the train extra (`make test` installs it)

from training.encoder import lineart  # noqa: E402
from training.encoder.augment import eval_views, make_views  # noqa: E402


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
