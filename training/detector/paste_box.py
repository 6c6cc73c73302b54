"""Head-box equivalent of a pasted face crop, measured with the FaceBoxes teacher.

    python -m training.detector.paste_box      # -> runs/detector/paste_box.json

Each crop source is pasted (resized to 96 px) in the middle of a 384 px grey canvas; the teacher's best
box there, relative to the crop, is recorded. The median per source is the box a pasted crop gets
(x1, y1, x2, y2 as fractions of the crop side), so composite labels match the teacher's head boxes.
"""

from __future__ import annotations

import csv
import io
import json
import random
import tarfile

import cv2
import numpy as np

from training.detector.common import DATA, RUNS


def crops_by_source(n: int = 40, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = random.Random(seed)
    with open(DATA / "faces" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[np.ndarray]] = {}
    for src in ("sytwu", "swagercode", "jlaoo", "lauslim12"):
        rs = [r for r in rows if r["source"] == src]
        rng.shuffle(rs)
        out[src] = [cv2.imread(str(DATA / r["path"])) for r in rs[:n]]
    with tarfile.open(DATA / "unlabeled" / "faces-000.tar") as t:
        ms = [m for m in t.getmembers() if m.isfile()]
        rng.shuffle(ms)
        out["unlabeled"] = [
            cv2.imdecode(np.frombuffer(io.BytesIO(t.extractfile(m).read()).getvalue(), np.uint8), 1) for m in ms[:n]
        ]
    return out


def main() -> None:
    from training.teachers.faceboxes import FaceBoxesTeacher

    fb = FaceBoxesTeacher(threads=1)
    res = {}
    side, canvas = 96, 384
    o = (canvas - side) // 2
    for src, crops in crops_by_source().items():
        rel = []
        for c in crops:
            img = np.full((canvas, canvas, 3), 200, np.uint8)
            img[o:o + side, o:o + side] = cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA)
            b, s = fb.detect(img, long_sides=(640,), score=0.3)
            if len(b):
                rel.append((b[0] - o) / side)
        rel = np.asarray(rel)
        med = np.median(rel, 0) if len(rel) else np.array([0.0, 0.0, 1.0, 1.0])
        res[src] = {"box": [round(float(v), 3) for v in med], "found": f"{len(rel)}/{len(crops)}"}
        print(src, res[src])
    (RUNS / "paste_box.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
