"""Shared pre-processing read from a manifest `input` spec: resize, colour order, normalisation, layout."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    name: str | None
    height: int
    width: int
    color: str  # RGB | BGR | GRAY
    scale: float
    mean: np.ndarray  # (C,) in units after `scale`
    std: np.ndarray
    resize: str  # letterbox | squash
    pad_value: float
    # letterbox only. 0: pad to the full size. k > 0: pad only up to the next multiple of k (a rectangle no larger
    # than the full size), for graphs whose height and width are symbolic: a 16:9 picture then costs about
    # 9/16 of the square's work. k is the graph's largest stride, so its cell grid stays whole.
    pad_multiple: int = 0

    @classmethod
    def from_manifest(cls, spec: dict, default_resize: str = "letterbox") -> InputSpec:
        size = spec.get("size")
        h, w = size if isinstance(size, list) and len(size) == 2 else (None, None)
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            raise ValueError(f"input.size must be [height, width], got {spec.get('size')!r}")
        color = spec.get("color", "RGB").upper()
        if color not in ("RGB", "BGR", "GRAY"):
            raise ValueError(f"input.color must be RGB, BGR or GRAY, got {color!r}")
        ch = 1 if color == "GRAY" else 3
        mean = np.asarray(spec.get("mean", [0.0] * ch), np.float32).reshape(-1)
        std = np.asarray(spec.get("std", [1.0] * ch), np.float32).reshape(-1)
        resize = spec.get("resize", default_resize)
        if resize not in ("letterbox", "squash"):
            raise ValueError(f"input.resize must be letterbox or squash, got {resize!r}")
        k = spec.get("pad_multiple", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0 or (k and (h % k or w % k)):
            raise ValueError(f"input.pad_multiple must be 0 or a whole number dividing input.size, got {k!r}")
        if k and resize != "letterbox":
            raise ValueError("input.pad_multiple only applies to resize 'letterbox'")
        return cls(spec.get("name"), h, w, color, float(spec.get("scale", 1 / 255)), mean, std, resize,
                   float(spec.get("pad_value", 114)), k)

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per output channel (gain, bias) with x * gain + bias == (x * scale - mean) / std, computed once."""
        gain = np.broadcast_to(np.float32(self.scale) / self.std, (self.channels,)).astype(np.float32)
        bias = np.broadcast_to(-self.mean / self.std, (self.channels,)).astype(np.float32)
        return gain, bias

    def to_tensor(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB at the model size -> (N, C, H, W) float32, normalised.

        Each output plane is written once, straight from the strided uint8 channel
        (x * (scale / std) - mean / std), instead of an (N, H, W, 3) float copy, two in-place passes and a
        transposing copy: about 10x less time for a 448x256 detector input (1.3 -> 0.13 ms here)."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"to_tensor expects (N, H, W, 3) pictures, got shape {batch.shape}")
        n, h, w = batch.shape[:3]
        gain, bias = self._affine
        if self.color == "GRAY":
            g = batch.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            out = np.empty((n, 1, h, w), np.float32)
            np.multiply(g, gain[0], out=out[:, 0])
            out[:, 0] += bias[0]
            return out
        order = (2, 1, 0) if self.color == "BGR" else (0, 1, 2)
        out = np.empty((n, 3, h, w), np.float32)
        for c, src in enumerate(order):
            np.multiply(batch[..., src], gain[c], out=out[:, c], casting="unsafe")
            out[:, c] += bias[c]
        return out


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking a lot (no aliasing), bilinear otherwise."""
    h, w = image.shape[:2]
    shrink = min(width / w, height / h)
    interp = cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def fit(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Resize to the model size (with `pad_multiple`, to the smallest canvas of whole multiples that holds the
    fitted picture). Returns the resized picture and (sx, sy, pad_x, pad_y) such that
    model_x = x * sx + pad_x, model_y = y * sy + pad_y."""
    h, w = image.shape[:2]
    if spec.resize == "squash":
        return resize(image, spec.width, spec.height), (spec.width / w, spec.height / h, 0.0, 0.0)
    r = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    cw, ch = spec.width, spec.height
    if spec.pad_multiple:
        k = spec.pad_multiple
        cw, ch = min(cw, -(-nw // k) * k), min(ch, -(-nh // k) * k)
    out = np.full((ch, cw, 3), int(spec.pad_value), np.uint8)
    px, py = (cw - nw) // 2, (ch - nh) // 2
    out[py:py + nh, px:px + nw] = resize(image, nw, nh)
    return out, (nw / w, nh / h, float(px), float(py))
