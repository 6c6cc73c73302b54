"""Batched training augmentation in torch (no torchvision): geometry via affine_grid/grid_sample, colour
jitter, greyscale, blur/low-res, and the line-art swap (pre-rendered by `lineart.py` in `data.py`).

Input: uint8 tensors (N, 96, 96, 3) [+ line-art (N, V, 96, 96)], output float (N, 3, S, S) normalised like
serving: x / 255, then (x - 0.5) / 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
ROT_DEG = 12.0  # the rotation range of the recipe's geometry augmentation (a run's config `rot` overrides it)


def to_float(img_u8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return img_u8.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - 0.5) / 0.5


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Squash-resize like serving (bilinear with antialias)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def random_geometry(x: torch.Tensor, size: int, g: torch.Generator, scale=(0.72, 1.18), aspect=0.18,
                    shift=0.10, rot_deg=ROT_DEG, flip=True) -> torch.Tensor:
    """Random resized crop + zoom-out + rotation + flip in one affine warp. `scale` is the crop side relative
    to the image side (>1 zooms out, borders replicate) so the encoder tolerates the serving crop."""
    n = x.shape[0]

    def u(lo, hi):
        return torch.rand(n, generator=g) * (hi - lo) + lo

    s = u(*scale)
    a = torch.exp(u(-aspect, aspect))
    sx, sy = s * a.sqrt(), s / a.sqrt()
    th = u(-rot_deg, rot_deg) * math.pi / 180
    tx, ty = u(-shift, shift) * 2, u(-shift, shift) * 2
    fx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(th), torch.sin(th)
    theta = torch.stack([
        torch.stack([cos * sx * fx, -sin * sy, tx], 1),
        torch.stack([sin * sx * fx, cos * sy, ty], 1),
    ], 1)
    # sample at 2x then area-downsample: cheap antialiasing
    grid = F.affine_grid(theta, (n, 3, size * 2, size * 2), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(y, 2)


def color_jitter(x: torch.Tensor, g: torch.Generator, b=0.25, c=0.3, s=0.35, hue=0.04, p_gray=0.1) -> torch.Tensor:
    """Brightness/contrast/saturation jitter, a small hue rotation (hair colour is identity, so keep it
    small), random greyscale. x in [0, 1], (N, 3, H, W)."""
    n = x.shape[0]

    def u(d):
        return (1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * d)

    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = x * u(b)
    m = gray.mean(dim=(2, 3), keepdim=True)
    x = (x - m) * u(c) + m
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * u(s) + gray
    if hue > 0:  # rotate chroma around the grey axis (YIQ hue rotation)
        ang = (torch.rand(n, generator=g) * 2 - 1) * hue * 2 * math.pi
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        rgb = torch.linalg.inv(yiq)
        cos, sin = torch.cos(ang), torch.sin(ang)
        rot = torch.zeros(n, 3, 3)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        mat = rgb @ rot @ yiq  # (n, 3, 3)
        x = torch.einsum("nij,njhw->nihw", mat, x)
    to_gray = torch.rand(n, 1, 1, 1, generator=g) < p_gray
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = torch.where(to_gray, gray, x)
    return x.clamp_(0, 1)


def random_lowres(x: torch.Tensor, g: torch.Generator, p=0.25, lo=0.35, hi=0.8) -> torch.Tensor:
    """With probability p, downscale to a random fraction and back up (blur / small faces in big pictures)."""
    n, _, h, w = x.shape
    pick = (torch.rand(n, generator=g) < p).nonzero().flatten()
    if len(pick) == 0:
        return x
    f = float(torch.rand(1, generator=g) * (hi - lo) + lo)
    small = F.interpolate(x[pick], size=(max(8, int(h * f)), max(8, int(w * f))), mode="bilinear", antialias=True,
                          align_corners=False)
    x = x.clone()
    x[pick] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x


def _blur3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def random_style(x: torch.Tensor, g: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """With probability `p` per picture, one change of drawing style that keeps who it is (colours, shapes): flat
    cel shading (posterised to 5..8 levels per channel, after a blur so the flats are clean), soft painted shading
    (a strong blur mixed back), hard inked edges (unsharp masking) or a gamma of .6..1.6. x in [0, 1]."""
    n = x.shape[0]
    pick = torch.rand(n, generator=g) < p
    if not pick.any():
        return x
    kind = torch.randint(4, (n,), generator=g)
    u = torch.rand(n, 1, 1, 1, generator=g)
    soft = _blur3(_blur3(x))
    levels = torch.randint(5, 9, (n, 1, 1, 1), generator=g).float() - 1
    flat = torch.round(soft * levels) / levels
    painted = x * (0.4 + 0.3 * u) + soft * (0.6 - 0.3 * u)
    inked = (x + (0.8 + 1.2 * u) * (x - soft)).clamp(0, 1)
    gamma = x.clamp_min(1e-4) ** (0.6 + u)
    out = torch.stack([flat, painted, inked, gamma])[kind, torch.arange(n)]
    return torch.where(pick[:, None, None, None], out, x).clamp_(0, 1)


def make_views(imgs: np.ndarray, lines: np.ndarray | None, size: int, g: torch.Generator,
               p_line: float = 0.25, rot_deg: float = ROT_DEG, zoom: tuple = (0.72, 1.18),
               p_style: float = 0.0) -> torch.Tensor:
    """One augmented view per image. imgs (N, 96, 96, 3) uint8; lines (N, V, 96, 96) uint8 or None.
    `rot_deg`: rotations are drawn uniformly from +-rot_deg; `zoom`: the crop side relative to the image's
    (`random_geometry`'s `scale`: below 1 cuts a tighter face out of a head crop, above 1 frames a face wider);
    `p_style`: the share of colour views whose drawing style changes (`random_style`; 0 draws no random numbers
    for it, so older runs' views are unchanged)."""
    x = to_float(torch.from_numpy(imgs))
    n = x.shape[0]
    is_line = torch.zeros(n, dtype=torch.bool)
    if lines is not None and p_line > 0:
        is_line = torch.rand(n, generator=g) < p_line
        idx = is_line.nonzero().flatten()
        if len(idx):
            v = torch.randint(lines.shape[1], (len(idx),), generator=g).numpy()
            la = torch.from_numpy(lines[idx.numpy(), v]).float().div_(255.0)
            x[idx] = la[:, None].expand(-1, 3, -1, -1)
    x = random_geometry(x, size, g, scale=tuple(zoom), rot_deg=rot_deg)
    col = color_jitter(x, g)
    if p_style > 0:
        col = random_style(col, g, p_style)
    x = torch.where(is_line[:, None, None, None], x, col)
    x = random_lowres(x, g)
    return normalize(x)


def eval_views(imgs: np.ndarray, size: int) -> torch.Tensor:
    """Deterministic serving-like pre-processing: squash-resize the whole crop, normalise."""
    return normalize(resize(to_float(torch.from_numpy(np.ascontiguousarray(imgs))), size))
