"""Annotated sample sheets of the pseudo-labels (runs/detector/*.png), to look at.

    python -m training.detector.viz misc            # the 9 misc pictures
    python -m training.detector.viz sample 24 0     # 24 random scenes, seed 0
Green: FaceBoxes heads; yellow: heads from cascade faces; red: ignore regions; blue: raw cascade faces.
"""

from __future__ import annotations

import random
import sys

import cv2
import numpy as np

from training.detector.common import DATA, RUNS, draw, grid, load_json, read_bgr
from training.detector.label import RAW, merge_labels


def sheet(paths: list[str], out: str, cell: int = 480, cols: int = 3) -> None:
    raw = load_json(RAW)
    ims = []
    for p in paths:
        e = raw[p]
        lab = merge_labels(e)
        img = read_bgr(DATA / p)
        fb = np.asarray(e["fb"], np.float32).reshape(-1, 5)
        fbh = fb[fb[:, 4] >= 0.5, :4]
        img = draw(img, e["cascade"], (255, 0, 0), thick=1)
        img = draw(img, lab["ignore"], (0, 0, 255), thick=2)
        extra = [b for b in lab["boxes"] if not any(np.allclose(b, f, atol=0.2) for f in fbh.clip(0))]
        img = draw(img, lab["boxes"], (0, 255, 0), thick=3)
        img = draw(img, extra, (0, 255, 255), thick=3)
        cv2.putText(img, p.split("/")[-1][:28], (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        ims.append(img)
    cv2.imwrite(str(RUNS / out), grid(ims, cell, cols))
    print(RUNS / out)


def main() -> None:
    raw = load_json(RAW)
    if sys.argv[1] == "misc":
        paths = [p for p in raw if p.startswith("scenes/misc/")]
        sheet(paths, "misc.png", 480, 3)
    else:
        n, seed = int(sys.argv[2]), int(sys.argv[3])
        paths = sorted(p for p in raw if not p.startswith("scenes/misc/"))
        random.Random(seed).shuffle(paths)
        sheet(paths[:n], f"sample_{seed}.png", 400, 4)


if __name__ == "__main__":
    main()
