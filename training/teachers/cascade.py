"""The LBP anime-face cascade (lbpcascade_animeface, MIT) as a teacher: tight face boxes, no hair."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
XML = ROOT.parent / "shared" / "data" / "reference" / "lbpcascade-animeface" / "lbpcascade_animeface.xml"


class CascadeTeacher:
    def __init__(self, xml: Path = XML):
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError("this opencv has no CascadeClassifier (needs opencv 4.x)")
        self.clf = cv2.CascadeClassifier(str(xml))
        if self.clf.empty():
            raise RuntimeError(f"could not load cascade {xml}")

    def detect(self, bgr: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24,
               long_sides=(None,)) -> np.ndarray:
        """Face boxes x1, y1, x2, y2 in original pixels; optionally at several long sides (merged by caller)."""
        out = []
        h, w = bgr.shape[:2]
        for ls in long_sides:
            r = 1.0 if ls is None else ls / max(h, w)
            img = bgr if r == 1.0 else cv2.resize(bgr, (round(w * r), round(h * r)))
            grey = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
            faces = self.clf.detectMultiScale(grey, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                              minSize=(min_size, min_size))
            for x, y, fw, fh in (faces if len(faces) else []):
                out.append([x / r, y / r, (x + fw) / r, (y + fh) / r])
        return np.asarray(out, np.float32).reshape(-1, 4)
