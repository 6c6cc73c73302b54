"""A compact single-class anchor-free head detector (CenterNet-style heatmaps on 3 FPN levels).

Input: RGB / 255, letterboxed to SIZE x SIZE (pad 114). Per level (strides 8, 16, 32) each cell predicts a
head-centre logit and the distances (left, top, right, bottom) to the box edges, in strides (log space).
`Exportable` wraps the net with the decoding, so the ONNX graph returns (1, TOPK, 5) rows
x1, y1, x2, y2, score in model-input pixels (format "boxes" of docs/bundle.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 320
STRIDES = (8, 16, 32)
TOPK = 100


def cbr(cin: int, cout: int, s: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Two 3x3 convs with a residual connection."""

    def __init__(self, c: int):
        super().__init__()
        self.a = cbr(c, c)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.b(self.a(x)))


class HeadNet(nn.Module):
    def __init__(self, w=(16, 32, 64, 96, 128), fpn: int = 64):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, w[0], 2), cbr(w[0], w[1], 2))  # /4
        self.s3 = nn.Sequential(cbr(w[1], w[2], 2), Block(w[2]))  # /8
        self.s4 = nn.Sequential(cbr(w[2], w[3], 2), Block(w[3]), Block(w[3]))  # /16
        self.s5 = nn.Sequential(cbr(w[3], w[4], 2), Block(w[4]), Block(w[4]))  # /32
        self.l3, self.l4, self.l5 = cbr(w[2], fpn, k=1), cbr(w[3], fpn, k=1), cbr(w[4], fpn, k=1)
        self.m3, self.m4 = cbr(fpn, fpn), cbr(fpn, fpn)
        self.head = nn.Sequential(cbr(fpn, fpn))
        self.cls = nn.Conv2d(fpn, 1, 1)
        self.reg = nn.Conv2d(fpn, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)
        nn.init.constant_(self.reg.bias, 1.0)

    def forward(self, x):
        x = self.stem(x)
        c3 = self.s3(x)
        c4 = self.s4(c3)
        c5 = self.s5(c4)
        p5 = self.l5(c5)
        p4 = self.m4(self.l4(c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest"))
        p3 = self.m3(self.l3(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        outs = []
        for p in (p3, p4, p5):
            h = self.head(p)
            outs.append((self.cls(h), self.reg(h)))
        return outs


def level_centres(feat: torch.Tensor, stride: int) -> torch.Tensor:
    """(H*W, 2) cell centres of a (B, C, H, W) level, from its own shape: in the ONNX graph these are computed
    from the input's size (Shape + Range), so one exported graph runs at any input size."""
    h, w = feat.shape[2], feat.shape[3]
    ys = (torch.arange(h, device=feat.device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=feat.device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


def decode(outs) -> torch.Tensor:
    """Net outputs -> (B, M, 5) x1, y1, x2, y2, score over all levels, in input pixels (any input size)."""
    rows = []
    for (cls, reg), s in zip(outs, STRIDES):
        b = cls.shape[0]
        score = torch.sigmoid(cls).reshape(b, -1, 1)
        d = torch.exp(reg.clamp(-6, 6)).reshape(b, 4, -1).transpose(1, 2) * s
        c = level_centres(cls, s)[None]
        rows.append(torch.cat([c - d[..., :2], c + d[..., 2:], score], -1))
    return torch.cat(rows, 1)


def flip_average(net: HeadNet, images: torch.Tensor, mirror_net: HeadNet | None = None):
    """Average the outputs for the picture and its mirror image (left/right distances swapped back). With
    `mirror_net` the mirror image goes through that second net instead (a two-net ensemble at the cost of one
    net with the mirror pass)."""
    a = net(images)
    b = (mirror_net or net)(torch.flip(images, dims=[3]))
    out = []
    for (ca, ra), (cb, rb) in zip(a, b):
        cb = torch.flip(cb, dims=[3])
        rb = torch.flip(rb, dims=[3])[:, [2, 1, 0, 3]]
        out.append(((ca + cb) / 2, (ra + rb) / 2))
    return out


def soup(state_dicts: list[dict]) -> dict:
    """The mean of state dicts of runs from one starting point ("model soup"); integer buffers from the first."""
    out = {}
    for k, v in state_dicts[0].items():
        out[k] = torch.stack([sd[k].float() for sd in state_dicts]).mean(0).to(v.dtype) if v.is_floating_point() else v
    return out


class Exportable(nn.Module):
    def __init__(self, net: HeadNet, topk: int = TOPK, flip: bool = False, mirror_net: HeadNet | None = None):
        super().__init__()
        self.net, self.topk, self.flip, self.mirror_net = net, topk, flip or mirror_net is not None, mirror_net

    def forward(self, images):
        outs = flip_average(self.net, images, self.mirror_net) if self.flip else self.net(images)
        rows = decode(outs)
        _, idx = torch.topk(rows[..., 4], self.topk, dim=1)
        return torch.gather(rows, 1, idx[..., None].expand(-1, -1, 5))
