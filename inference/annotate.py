"""Step 6 — annotate: draw numbered boxes with the top name and probability on the picture.

Readable on any background and at any size: each box is drawn as a dark outline under a bright one,
labels sit on an opaque dark plate, and line width and font size follow the picture's size.
Returns PNG or JPEG bytes (JPEG is ~20x faster to encode and ~5x smaller: the bot and API use it);
with `max_bytes`, the picture is re-encoded (JPEG) and scaled down
until it fits (e.g. under a Discord channel's upload limit).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .result import Result

PALETTE = [(255, 77, 106), (64, 196, 255), (255, 193, 7), (105, 240, 174), (224, 64, 251),
           (255, 138, 101), (128, 222, 234), (174, 213, 129), (255, 245, 157), (179, 157, 219)]


@lru_cache(maxsize=32)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def label_for(index: int, result_head) -> str:
    """'1 Rem — Re:Zero 87%' for a named head; '1 ?' for one the bot does not recognise (the reply lists the
    closest names)."""
    top = result_head.top
    if top is None or not result_head.sure:
        return f"{index} ?"
    return f"{index} {top.display} {top.probability:.0%}"


def draw(result: Result, image: np.ndarray | None = None) -> Image.Image:
    arr = result.image if image is None else image
    if arr is None:
        raise ValueError("No picture to annotate: pass the decoded image or a Result that keeps it.")
    im = Image.fromarray(arr)  # a copy for RGB (Pillow keeps 3-byte pixels in its own 4-byte layout): the
    if im.mode != "RGB":       # decoded picture is never drawn on, and a second copy is not needed
        im = im.convert("RGB")
    W, H = im.size
    # boxes are in original-picture pixels; the kept picture may be downscaled
    k = W / result.width if result.width else 1.0
    side = max(64, min(W, H))
    lw = max(2, round(side / 200))
    font = _font(max(12, min(48, round(side / 24))))
    d = ImageDraw.Draw(im)
    for i, head in enumerate(result.heads, 1):
        x1, y1, x2, y2 = [v * k for v in head.box]
        color = PALETTE[(i - 1) % len(PALETTE)]
        d.rectangle([x1 - lw, y1 - lw, x2 + lw, y2 + lw], outline=(0, 0, 0), width=lw)
        d.rectangle([x1, y1, x2, y2], outline=color, width=lw)
        text = label_for(i, head)
        left, t, r, b = d.textbbox((0, 0), text, font=font)
        tw, th = r - left + 2 * lw, b - t + 2 * lw
        tx = min(max(0, x1), max(0, W - tw))
        ty = y1 - th - lw if y1 - th - lw >= 0 else min(y2 + lw, max(0, H - th))
        d.rectangle([tx, ty, tx + tw, ty + th], fill=(20, 20, 24), outline=color, width=max(1, lw // 2))
        d.text((tx + lw - left, ty + lw - t), text, fill=(255, 255, 255), font=font)
    return im


def encode(im: Image.Image, fmt: str = "PNG", max_bytes: int | None = None) -> bytes:
    fmt = fmt.upper()
    if fmt not in ("PNG", "JPEG"):
        raise ValueError("fmt must be PNG or JPEG")

    def save(img, f, q=90):
        buf = io.BytesIO()
        if f == "PNG":  # level 1: ~3.5x faster than the default for ~10 % more bytes
            img.save(buf, "PNG", compress_level=1)
        else:  # no `optimize`: it costs 2.5x the time for ~1 % fewer bytes
            img.save(buf, "JPEG", quality=q)
        return buf.getvalue()

    data = save(im, fmt)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    for q in (88, 80, 70):
        data = save(im, "JPEG", q)
        if len(data) <= max_bytes:
            return data
    while len(data) > max_bytes and min(im.size) > 16:
        im = im.resize((max(1, int(im.width * 0.7)), max(1, int(im.height * 0.7))), Image.BILINEAR)
        data = save(im, "JPEG", 75)
    return data


def annotate(result: Result, fmt: str = "PNG", max_bytes: int | None = None, image: np.ndarray | None = None) -> bytes:
    return encode(draw(result, image), fmt, max_bytes)
