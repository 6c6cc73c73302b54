"""The encoder: a compact ResNet for 80-96 px face crops -> L2-normalisable embedding.

Small on purpose: it trains from scratch on 2 CPU cores within the project's training budget and runs
in a few ms per head in onnxruntime.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = (1, 1, 2, 1)  # basic blocks per stage; every run before the `depths` setting used these


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)), inplace=True)


class Encoder(nn.Module):
    """stem (s2) -> 4 stages (s2 each except the first) -> GAP + GeM-free linear -> BN embedding."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), depths: tuple[int, ...] = DEPTHS,
                 dim: int = 128) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, widths[0] // 2, 3, 2), conv_bn(widths[0] // 2, widths[0], 3, 1))
        layers = []
        cin = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            for j in range(d):
                layers.append(Block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        self.depths = tuple(depths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = x.mean(dim=(2, 3))
        return self.bn(self.fc(x))


class Projector(nn.Module):
    """SSL projection head (training only, not exported)."""

    def __init__(self, dim: int, hidden: int = 256, out: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
