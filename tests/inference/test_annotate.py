import io

import numpy as np
from PIL import Image

from inference.result import Candidate, Head, Result


def _result(w, h, boxes, sure=True):
    img = np.full((h, w, 3), 255, np.uint8)
    heads = tuple(Head(b, 0.9, (Candidate("aqua_(konosuba)", 0.87), Candidate("c.c.", 0.1)), sure) for b in boxes)
    return Result(w, h, heads, {}, img)


def test_png_and_jpeg_same_size_with_drawing(tiny_pipeline):
    r = _result(400, 300, [(50, 60, 200, 220)])
    for fmt, magic in (("PNG", b"\x89PNG"), ("JPEG", b"\xff\xd8")):
        data = tiny_pipeline.annotate(r, fmt)
        assert data.startswith(magic)
        im = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert im.shape == (300, 400, 3)
        assert im[140, 46:54].min() < 150  # the box's left edge (outline) is drawn at x=50
        assert im[140, 100].min() > 240  # inside the box the picture is untouched
        assert im[290, 390].min() > 240  # far corner untouched


def test_readable_label_on_any_background_and_size(tiny_pipeline):
    for w, h in ((64, 64), (3000, 2000)):
        for bg in (0, 255):
            r = _result(w, h, [(w // 4, h // 4, w // 2, h // 2)])
            r.image[:] = bg
            im = np.asarray(Image.open(io.BytesIO(tiny_pipeline.annotate(r))).convert("L"))
            # the label plate is dark with white text whatever the background
            assert (im < 40).sum() > 50 and (im > 220).sum() > 20


def test_max_bytes_fits(tiny_pipeline):
    rng = np.random.default_rng(0)
    r = _result(1500, 1500, [(100, 100, 600, 600), (700, 700, 1400, 1400)])
    r.image[:] = rng.integers(0, 255, r.image.shape, np.uint8)  # noise: huge PNG
    big = tiny_pipeline.annotate(r, "PNG")
    small = tiny_pipeline.annotate(r, "PNG", max_bytes=200_000)
    assert len(big) > 200_000 >= len(small)
    Image.open(io.BytesIO(small)).verify()


def test_real_picture_downscaled_keeps_box_positions(tiny_pipeline, scene_bytes):
    from inference.settings import Settings

    pipe = type(tiny_pipeline)(tiny_pipeline.bundle, Settings(ort_threads=1, decode_max_side=512))
    r = pipe.recognize(scene_bytes)
    assert r.image.shape[1] == 512 and r.width == 1024  # boxes in original pixels, picture downscaled
    assert [h.box for h in r.heads] == [(128, 96, 384, 384), (640, 160, 832, 352)]
    im = Image.open(io.BytesIO(pipe.annotate(r)))
    assert im.size == (512, 288)


def test_jpeg_keeps_the_colours_and_the_decoded_picture_is_never_drawn_on(tiny_pipeline):
    """Red stays red, and the drawing happens on a copy: the Result's picture (which the bot may annotate again,
    e.g. for "More candidates") is left as decoded."""
    r = _result(320, 240, [(40, 40, 160, 160)])
    r.image[:] = (220, 30, 30)
    before = r.image.copy()
    data = tiny_pipeline.annotate(r, "JPEG")
    im = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    r_, g, b = im[220, 300]  # far from the box and its label
    assert r_ > 190 and g < 70 and b < 70, im[220, 300]
    assert np.array_equal(r.image, before)
    again = tiny_pipeline.annotate(r, "JPEG")
    assert abs(len(again) - len(data)) < 64  # the second drawing starts from the same untouched picture


def test_grey_picture_is_annotated_in_colour(tiny_pipeline):
    r = _result(200, 150, [(20, 20, 120, 120)])
    grey = Result(r.width, r.height, r.heads, {}, np.full((150, 200), 128, np.uint8))
    im = Image.open(io.BytesIO(tiny_pipeline.annotate(grey, "JPEG")))
    assert im.mode == "RGB" and im.size == (200, 150)
