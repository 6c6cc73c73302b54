"""Shared helpers for the detector trainer: paths, picture loading, box maths, drawing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "runs" / "detector"
HELDOUT = Path(__file__).resolve().parent / "heldout_boxes.json"


def path_bucket(path: str, n: int) -> int:
    """A fixed pseudo-random bucket in [0, n) for a picture path (sha1 of the path): how scene pictures are split."""
    return int(hashlib.sha1(path.encode()).hexdigest(), 16) % n


def read_bgr(path: Path | str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return img


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None, :] - inter + 1e-9)


def match(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching at IoU >= thr (pred sorted best first). Returns tp, n_pred, n_gt."""
    pred = np.asarray(pred, np.float32).reshape(-1, 4)
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    if not len(pred) or not len(gt):
        return 0, len(pred), len(gt)
    m = iou_matrix(pred, gt)
    used = np.zeros(len(gt), bool)
    tp = 0
    for i in range(len(pred)):
        row = np.where(used, -1, m[i])
        j = int(row.argmax())
        if row[j] >= thr:
            used[j] = True
            tp += 1
    return tp, len(pred), len(gt)


def match_ignoring(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray, thr: float = 0.5) -> tuple[int, int, int]:
    """`match` after dropping the predictions on 'ignore' regions (IoU >= 0.3 with one and < thr with every head):
    they count neither way."""
    pred = np.asarray(pred, np.float32).reshape(-1, 4)
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, np.float32).reshape(-1, 4)
    if len(ignore) and len(pred):
        on_head = iou_matrix(pred, gt).max(1) >= thr if len(gt) else np.zeros(len(pred), bool)
        pred = pred[~((iou_matrix(pred, ignore).max(1) >= 0.3) & ~on_head)]
    return match(pred, gt, thr)


def draw(img: np.ndarray, boxes, color=(0, 255, 0), labels=None, thick: int = 2) -> np.ndarray:
    out = img.copy()
    for i, b in enumerate(np.asarray(boxes).reshape(-1, 4)):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        if labels is not None:
            cv2.putText(out, str(labels[i]), (x1 + 2, y1 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    return out


def grid(images: list[np.ndarray], cell: int = 320, cols: int = 4) -> np.ndarray:
    rows = (len(images) + cols - 1) // cols
    canvas = np.full((rows * cell, cols * cell, 3), 40, np.uint8)
    for k, im in enumerate(images):
        h, w = im.shape[:2]
        r = cell / max(h, w)
        im = cv2.resize(im, (max(1, int(w * r)), max(1, int(h * r))), interpolation=cv2.INTER_AREA)
        y, x = (k // cols) * cell, (k % cols) * cell
        canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
    return canvas


def load_json(path: Path):
    return json.loads(Path(path).read_text())
