"""FaceBoxes (Zhang et al. 2017, "FaceBoxes: A CPU Real-time Face Detector with High Accuracy").

Own implementation of the published architecture, laid out so that the anime-face state dict in
``../shared/data/reference/faceboxes-anime`` loads into it. Used only as a *teacher* to pseudo-label
pictures; its weights are never shipped or committed.

Facts (data README): BGR input minus mean (104, 117, 123), no scaling, any input size; SSD priors with
steps [32, 64, 128], min sizes [[32, 64, 128], [256], [512]] (size-32 anchors densified 4x4, size-64
2x2), variances (0.1, 0.2).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.detect import nms as detect_nms

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "reference" / "faceboxes-anime" / "FaceBoxes_epoch_90.pth"

MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (32, 64, 128)
MIN_SIZES = ((32, 64, 128), (256,), (512,))
VARIANCES = (0.1, 0.2)


class BasicConv(nn.Module):
    """conv (no bias) -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, p: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class CReLU(nn.Module):
    """conv -> BN -> concat(x, -x) -> ReLU (doubles the channels)."""

    def __init__(self, cin: int, cout: int, k: int, s: int, p: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(torch.cat([x, -x], 1))


class Inception(nn.Module):
    """The FaceBoxes inception block: 128 -> 4 x 32 channels."""

    def __init__(self):
        super().__init__()
        self.branch1x1 = BasicConv(128, 32, 1)
        self.branch1x1_2 = BasicConv(128, 32, 1)
        self.branch3x3_reduce = BasicConv(128, 24, 1)
        self.branch3x3 = BasicConv(24, 32, 3, p=1)
        self.branch3x3_reduce_2 = BasicConv(128, 24, 1)
        self.branch3x3_2 = BasicConv(24, 32, 3, p=1)
        self.branch3x3_3 = BasicConv(32, 32, 3, p=1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch1x1_2(F.avg_pool2d(x, 3, 1, 1))
        c = self.branch3x3(self.branch3x3_reduce(x))
        d = self.branch3x3_3(self.branch3x3_2(self.branch3x3_reduce_2(x)))
        return torch.cat([a, b, c, d], 1)


class FaceBoxes(nn.Module):
    """Rapidly Digested Convolutional Layers + Multiple Scale Convolutional Layers, 2 classes."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = CReLU(3, 24, 7, 4, 3)
        self.conv2 = CReLU(48, 64, 5, 2, 2)
        self.inception1 = Inception()
        self.inception2 = Inception()
        self.inception3 = Inception()
        self.conv3_1 = BasicConv(128, 128, 1)
        self.conv3_2 = BasicConv(128, 256, 3, 2, 1)
        self.conv4_1 = BasicConv(256, 128, 1)
        self.conv4_2 = BasicConv(128, 256, 3, 2, 1)
        anchors = (21, 1, 1)  # 4*4 + 2*2 + 1 at the first level, one at the others
        chans = (128, 256, 256)
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(chans, anchors))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, 1, 1) for c, a in zip(chans, anchors))

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 3, 2, 1)
        x = F.max_pool2d(self.conv2(x), 3, 2, 1)
        x = self.inception3(self.inception2(self.inception1(x)))
        sources = [x]
        x = self.conv3_2(self.conv3_1(x))
        sources.append(x)
        x = self.conv4_2(self.conv4_1(x))
        sources.append(x)
        n = x.shape[0]
        loc = torch.cat([h(s).permute(0, 2, 3, 1).reshape(n, -1, 4) for s, h in zip(sources, self.loc)], 1)
        conf = torch.cat(
            [h(s).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes) for s, h in zip(sources, self.conf)], 1
        )
        return loc, F.softmax(conf, -1)


def priors(height: int, width: int) -> np.ndarray:
    """SSD prior boxes (cx, cy, w, h), normalised to the input size, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        for i, j in itertools.product(range(fh), range(fw)):
            for size in sizes:
                sw, sh = size / width, size / height
                if size == 32:
                    offs = (0.0, 0.25, 0.5, 0.75)
                elif size == 64:
                    offs = (0.0, 0.5)
                else:
                    offs = None
                if offs is None:
                    out.append(((j + 0.5) * step / width, (i + 0.5) * step / height, sw, sh))
                else:
                    for oy, ox in itertools.product(offs, offs):
                        out.append(((j + ox) * step / width, (i + oy) * step / height, sw, sh))
    return np.asarray(out, np.float32)


def decode(loc: np.ndarray, pri: np.ndarray) -> np.ndarray:
    """SSD box decoding -> normalised x1, y1, x2, y2."""
    cxcy = pri[:, :2] + loc[:, :2] * VARIANCES[0] * pri[:, 2:]
    wh = pri[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS on x1, y1, x2, y2 boxes (the serving code's); returns kept indices, best first."""
    return [int(i) for i in detect_nms(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), iou)]


class FaceBoxesTeacher:
    """Runs FaceBoxes at several long sides and merges by NMS. Boxes cover the head (with hair)."""

    def __init__(self, weights: Path = WEIGHTS, threads: int = 1):
        torch.set_num_threads(threads)
        self.net = FaceBoxes()
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        self.net.load_state_dict(sd, strict=True)
        self.net.eval()

    @torch.no_grad()
    def raw(self, bgr: np.ndarray, long_side: int, min_score: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """All boxes (original pixels) with score >= min_score at one scale."""
        h, w = bgr.shape[:2]
        r = long_side / max(h, w)
        nh, nw = max(32, round(h * r)), max(32, round(w * r))
        img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
        x = torch.from_numpy((img.astype(np.float32) - np.float32(MEAN_BGR)).transpose(2, 0, 1)[None].copy())
        loc, conf = self.net(x)
        scores = conf[0, :, 1].numpy()
        keep = scores >= min_score
        boxes = decode(loc[0].numpy()[keep], priors(nh, nw)[keep])
        boxes *= np.array([w, h, w, h], np.float32)
        return boxes, scores[keep]

    def detect(
        self, bgr: np.ndarray, long_sides=(640, 1600, 2048), score: float = 0.5, nms_iou: float = 0.3
    ) -> tuple[np.ndarray, np.ndarray]:
        bs, ss = [], []
        for ls in long_sides:
            b, s = self.raw(bgr, ls, score)
            bs.append(b)
            ss.append(s)
        boxes = np.concatenate(bs) if bs else np.zeros((0, 4), np.float32)
        scores = np.concatenate(ss) if ss else np.zeros((0,), np.float32)
        if not len(boxes):
            return boxes.reshape(0, 4), scores
        keep = nms(boxes, scores, nms_iou)
        return boxes[keep], scores[keep]
