"""Step 2 — detect: an RGB picture -> head boxes (x1, y1, x2, y2) with scores.

The backend is chosen by the manifest's `detector.format`:
- `boxes`: the project's own detector; the ONNX graph decodes itself to rows x1, y1, x2, y2, score.
- `yolov5`: the reference system's format, rows cx, cy, w, h, objectness, class scores.
- `cascade`: an OpenCV cascade XML (e.g. an LBP anime-face cascade); face boxes enlarged to heads.
Letterbox resize by default, squash when the manifest says so. Thresholds come from the manifest and
can be overridden by configuration. A picture without heads yields no heads.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from .manifest import DetectorSpec
from .preprocess import fit


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression, vectorised over the remaining boxes. Returns kept indices,
    best score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if max_keep and len(keep) >= max_keep:
            break
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


class Detector:
    def __init__(self, spec: DetectorSpec, session=None, cascade_path=None, *, score_threshold: float | None = None,
                 nms_iou: float | None = None):
        self.format = spec.format
        self.score_threshold = float(score_threshold if score_threshold is not None else spec.score_threshold)
        self.nms_iou = float(nms_iou if nms_iou is not None else spec.nms_iou)
        self.max_heads = spec.max_heads
        self.spec = spec
        self.session = session
        if self.format == "cascade":
            self._cascade_path = str(cascade_path)
            self._local = threading.local()  # CascadeClassifier is not thread-safe: one per thread
            self.min_size, self.scale_factor = spec.min_size, spec.scale_factor
            self.min_neighbors, self.box_expand = spec.min_neighbors, spec.box_expand
            if cv2.CascadeClassifier(self._cascade_path).empty():
                raise ValueError(f"{cascade_path} is not a readable OpenCV cascade")
        else:
            self.input = spec.input
            self.input_name = self.input.name or session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns boxes (N, 4) float32 in the picture's pixels and scores (N,), best first."""
        if self.format == "cascade":
            boxes, scores = self._cascade(image)
        else:
            boxes, scores = self._onnx(image)
        h, w = image.shape[:2]
        if len(boxes):
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            ok = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
            boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, self.nms_iou, self.max_heads)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)

    def _onnx(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        resized, (sx, sy, px, py) = fit(image, self.input)
        x = self.input.to_tensor(resized[None])
        out = np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32)
        rows = out.reshape(-1, out.shape[-1])
        if self.format == "yolov5":
            if rows.shape[1] < 6:
                raise ValueError(f"yolov5 output rows need >= 6 values, got {rows.shape[1]}")
            scores = rows[:, 4] * rows[:, 5:].max(axis=1)
            cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        else:  # boxes
            if rows.shape[1] != 5:
                raise ValueError(f"'boxes' detector output rows must have 5 values, got {rows.shape[1]}")
            boxes, scores = rows[:, :4].copy(), rows[:, 4].copy()
        m = scores >= self.score_threshold
        boxes, scores = boxes[m], scores[m]
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - px) / sx
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - py) / sy
        return boxes, scores

    def _cascade(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(self._cascade_path)
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(self.min_size, self.min_size))
        if len(found) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        f = np.asarray(found, np.float32)
        cx, cy = f[:, 0] + f[:, 2] / 2, f[:, 1] + f[:, 3] / 2
        hw, hh = f[:, 2] * self.box_expand / 2, f[:, 3] * self.box_expand / 2
        boxes = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
        return boxes, np.ones(len(boxes), np.float32)
