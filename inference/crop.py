"""Step 3 — crop: head boxes -> the encoder's input crops, as the encoder was trained.

The manifest's `encoder.crop` says how a detector box becomes the crop (`scale` of the box side,
`shift_y` of the box height, optional `square`); it must match the crops the encoder was trained on.
One affine warp per box cuts, pads (edge replicate) and resizes in a single pass.
"""

from __future__ import annotations

import cv2
import numpy as np

from .manifest import Crop, WholeImage


def crop_regions(boxes: np.ndarray, crop: Crop | None = None) -> np.ndarray:
    """Boxes (N, 4) -> crop regions (N, 4) x1, y1, x2, y2 (may extend past the picture)."""
    crop = crop or Crop()
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale, shift_y = crop.scale, crop.shift_y
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + shift_y * h
    cw, ch = w * scale, h * scale
    if crop.square:
        cw = ch = np.maximum(cw, ch)
    return np.stack([cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2], axis=1)


def crop_heads(image: np.ndarray, boxes: np.ndarray, crop: Crop, width: int, height: int) -> np.ndarray:
    """(N, height, width, 3) uint8 crops of `image` for the given boxes."""
    regions = crop_regions(boxes, crop)
    out = np.empty((len(regions), height, width, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(regions):
        sx = width / max(float(x2 - x1), 1e-3)
        sy = height / max(float(y2 - y1), 1e-3)
        m = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]], np.float32)
        interp = cv2.INTER_AREA if min(sx, sy) < 0.5 else cv2.INTER_LINEAR
        if interp == cv2.INTER_AREA:
            # warpAffine has no area mode: cut first (clipped, edge-padded), then shrink with resize.
            xi1, yi1 = int(np.floor(x1)), int(np.floor(y1))
            xi2, yi2 = int(np.ceil(x2)), int(np.ceil(y2))
            hh, ww = image.shape[:2]
            patch = image[max(0, yi1):min(hh, yi2), max(0, xi1):min(ww, xi2)]
            if patch.size == 0:
                patch = np.zeros((1, 1, 3), np.uint8)
            patch = cv2.copyMakeBorder(patch, max(0, -yi1), max(0, yi2 - hh), max(0, -xi1), max(0, xi2 - ww),
                                       cv2.BORDER_REPLICATE)
            out[i] = cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA)
        else:
            out[i] = cv2.warpAffine(image, m, (width, height), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return out


def whole_box(width: int, height: int, boxes: np.ndarray, spec: WholeImage) -> np.ndarray:
    """(4,) the head box of a picture given as one head (manifest.WholeImage): the largest detected box when it
    covers at least `spec.min_cover` of the picture, else the box a detector gives for a head crop of that size."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        i = int(np.argmax(areas))
        if areas[i] >= spec.min_cover * width * height:
            return boxes[i]
    return np.asarray(spec.box, np.float32) * np.array([width, height, width, height], np.float32)


def whole_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The whole picture squashed as the single crop (without `encoder.whole_image`, what the encoder sees; with
    it, the second view when `keep_whole`)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if min(width / w, height / h) < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)[None]
