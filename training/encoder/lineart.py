"""Line-art renderings of a colour face (cv2 + numpy only): XDoG, Canny, adaptive threshold, pencil.

Used twice: as training augmentation (random parameters) and, with fixed parameters, to build the
line-art evaluation set from validation faces. Every function takes and returns uint8 RGB (H, W, 3);
the result is grey lines on a white background, replicated to three channels.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("xdog", "canny", "adaptive", "pencil")


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def xdog(rgb: np.ndarray, sigma: float = 0.8, k: float = 1.6, tau: float = 0.98, eps: float = -0.02,
         phi: float = 60.0) -> np.ndarray:
    """eXtended Difference of Gaussians (Winnemoeller et al. 2012): soft-thresholded DoG."""
    g = _gray(rgb).astype(np.float32) / 255.0
    g1 = cv2.GaussianBlur(g, (0, 0), sigma)
    g2 = cv2.GaussianBlur(g, (0, 0), sigma * k)
    d = g1 - tau * g2
    out = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    return _rgb(np.clip(out * 255.0, 0, 255).astype(np.uint8))


def canny(rgb: np.ndarray, lo: int = 50, hi: int = 150, thick: int = 1, blur: float = 0.7) -> np.ndarray:
    g = _gray(rgb)
    if blur > 0:
        g = cv2.GaussianBlur(g, (0, 0), blur)
    e = cv2.Canny(g, lo, hi)
    if thick > 1:
        e = cv2.dilate(e, np.ones((thick, thick), np.uint8))
    return _rgb(255 - e)


def adaptive(rgb: np.ndarray, block: int = 9, c: int = 5) -> np.ndarray:
    g = cv2.GaussianBlur(_gray(rgb), (3, 3), 0)
    t = cv2.adaptiveThreshold(g, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block | 1, c)
    return _rgb(t)


def pencil(rgb: np.ndarray, sigma: float = 3.0, gamma: float = 2.0) -> np.ndarray:
    """Colour-dodge pencil sketch: grey / blur(inverted grey), darkened by `gamma`."""
    g = _gray(rgb).astype(np.float32)
    inv = cv2.GaussianBlur(255.0 - g, (0, 0), sigma)
    d = np.clip(g * 255.0 / np.maximum(255.0 - inv, 1.0), 0, 255) / 255.0
    return _rgb(np.clip(255.0 * d**gamma, 0, 255).astype(np.uint8))


def render(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Fixed-parameter rendering (the evaluation set)."""
    return {"xdog": xdog, "canny": canny, "adaptive": adaptive, "pencil": pencil}[kind](rgb)


def random_lineart(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random kind and parameters (training augmentation)."""
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "xdog":
        return xdog(rgb, sigma=rng.uniform(0.5, 1.3), k=rng.uniform(1.4, 2.0), tau=rng.uniform(0.95, 0.995),
                    eps=rng.uniform(-0.05, 0.0), phi=rng.uniform(20, 120))
    if kind == "canny":
        lo = int(rng.integers(20, 90))
        return canny(rgb, lo=lo, hi=lo + int(rng.integers(40, 140)), thick=int(rng.integers(1, 3)),
                     blur=rng.uniform(0.0, 1.2))
    if kind == "adaptive":
        return adaptive(rgb, block=int(rng.integers(2, 8)) * 2 + 1, c=int(rng.integers(2, 10)))
    return pencil(rgb, sigma=rng.uniform(1.5, 5.0), gamma=rng.uniform(1.0, 4.0))
