"""Pictures made on the fly for the bot tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(width: int = 320, height: int = 240, colour=(200, 120, 160)) -> bytes:
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = colour
    arr[height // 4 : height // 2, width // 4 : width // 2] = (30, 30, 90)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
