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
            assert (im < 40).sum() > 50 and (im > 180).sum() > 20


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


# -- placement and fonts (issue: annotated pictures a person can read, in any script) ---------------------------
def _grid(w, h, rows, cols, size):
    """rows x cols heads of `size` px, evenly spaced: a crowded picture like hysts-input.jpg (38 faces)."""
    boxes = []
    for r in range(rows):
        for c in range(cols):
            x = int((c + 0.5) * w / cols - size / 2)
            y = int((r + 0.5) * h / rows - size / 2)
            boxes.append((x, y, x + size, y + size))
    return boxes


def _check_layout(result):
    from inference.annotate import layout

    lay = layout(result)
    plates = [p for p in lay.plates if p is not None]
    for i, a in enumerate(plates):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= lay.width + 1e-6 and a[3] <= lay.height + 1e-6, a
        for b in plates[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    for i, p in enumerate(lay.plates):
        if p is None:
            continue
        for j, box in enumerate(lay.boxes):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            assert j == i or not (p[0] <= cx <= p[2] and p[1] <= cy <= p[3]), (i, j)
    return lay


def test_a_crowded_picture_numbers_heads_and_draws_a_legend():
    r = _result(1024, 1000, _grid(1024, 1000, 6, 7, 110)[:38])
    lay = _check_layout(r)
    assert len(lay.legend) == 38 and lay.legend[0].startswith("1  87%  Aqua — Konosuba")
    assert all(t.isdigit() for t in lay.texts) and None not in lay.plates  # every head numbered on the picture
    from inference.annotate import draw, label_boxes

    im = draw(r)
    assert im.size == (1024, 1000 + lay.legend_height)  # the strip is added below the picture
    assert label_boxes(r) == [None] * 38  # names are only in the legend


def test_a_few_heads_get_their_names_beside_them_inside_the_picture():
    from inference.annotate import label_boxes

    for w, h, boxes in ((800, 600, [(100, 150, 300, 350), (420, 140, 620, 340)]),
                        (61, 80, [(5, 20, 55, 70)]),  # a tiny picture: the label is cut to fit, never off the edge
                        (300, 300, [(0, 0, 300, 300)])):  # the head fills the picture: the label goes inside
        r = _result(w, h, boxes)
        lay = _check_layout(r)
        rects = label_boxes(r)
        if not lay.legend:
            assert all(rc is not None for rc in rects) and all(t.endswith("87%") for t in lay.texts)
            assert all(0 <= rc[0] and rc[2] <= w and 0 <= rc[1] and rc[3] <= h for rc in rects)
        else:  # too narrow for the name: the number is on the picture, the name below
            assert lay.legend[0].startswith("1 ")


def test_unknown_heads_say_so_in_the_legend():
    from inference.annotate import layout

    r = _result(400, 400, _grid(400, 400, 5, 5, 60), sure=False)
    lay = layout(r)
    assert all(t.isdigit() or t.endswith("?") for t in lay.texts)
    assert all("?  closest: Aqua — Konosuba 87%" in line for line in lay.legend)


def test_labels_in_any_script_draw_without_missing_glyph_boxes():
    """A real font chain covers Latin, punctuation (— · ’), Japanese, Korean and Chinese: no character of these
    names falls back to the missing-glyph box (CI and the Docker image install fonts-wqy-microhei)."""
    from inference.fonts import chain

    fonts = chain(24)
    assert not fonts.builtin, "no TrueType font found (install fonts-wqy-microhei or set LABEL_FONT)"
    names = ["Aqua — Konosuba · Megumin’s friend", "モンキー・D・ルフィ", "호시노 — 블루 아카이브", "魔法禁书目录 御坂美琴",
             "ＢＢ — Fate/Grand Order", "Émilia Ñandú"]
    for name in names:
        assert fonts.missing(name) == [], name
    # and the drawing really shows them: a Japanese label is not a row of identical boxes
    from PIL import ImageDraw

    im = Image.new("L", (400, 40), 0)
    fonts.draw(ImageDraw.Draw(im), (2, 30), "モンキー・D・ルフィ", 255)
    cells = [np.asarray(im)[:, x:x + 24] for x in range(2, 2 + 24 * 4, 24)]
    assert len({c.tobytes() for c in cells}) == 4
