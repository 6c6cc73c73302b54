"""Contact sheets of the student's candidate heads on the training pictures the teachers found no head in
(training/detector/checked.py says how `checked_boxes.json` was made from them).

    python -m training.detector.sheets [--bundle models]   # numbered candidates -> runs/detector/checked_*.png

Red: the candidates (score >= 0.15, or the 4 best boxes at >= 0.03 where none is that high), numbered; green:
the boxes already checked by eye.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from training.detector.checked import load, scene_labels
from training.detector.common import DATA, ROOT, RUNS, draw, grid, read_bgr
from training.detector.data import train_paths
from training.detector.evaluate import load_detector


def sheets(bundle: Path, per: int = 12) -> None:
    det, _ = load_detector(bundle, score=0.03)
    checked = load()
    empty = [p for p, lab in scene_labels(train_paths()).items() if not lab["boxes"] or p in checked]
    ims = []
    for p in empty:
        img = read_bgr(DATA / p)
        boxes, scores = det(img)
        keep = scores >= 0.15 if (scores >= 0.15).any() else np.argsort(-scores)[:4]
        t = max(1, round(max(img.shape[:2]) / 300))
        img = draw(img, boxes[keep], (0, 0, 255), [f"{i}:{s:.2f}" for i, s in enumerate(scores[keep])], thick=t)
        if p in checked:
            img = draw(img, checked[p], (0, 255, 0), thick=t)
        ims.append(img)
    for s in range(0, len(ims), per):
        out = RUNS / f"checked_{s // per:02d}.png"
        cv2.imwrite(str(out), grid(ims[s:s + per], cell=380))
        print(out, ", ".join(p.split("/")[-1] for p in empty[s:s + per]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models"))
    a = ap.parse_args()
    sheets(Path(a.bundle))


if __name__ == "__main__":
    main()
