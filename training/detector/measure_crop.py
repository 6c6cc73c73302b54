"""Measure how a tight face box (LBP cascade) sits inside a FaceBoxes head box on the scenes.

    python -m training.detector.measure_crop [--write]

Prints the medians of (face side / head side) and (face centre - head centre) / head side, over cascade
faces whose centre lies in exactly one FaceBoxes head (score >= 0.5) and which cover a plausible share of it.
These give (a) the encoder crop (head box -> face crop) written into the manifest with --write and
(b) the inverse (face box -> head box) used for cascade-only heads and pasted face crops.
"""

from __future__ import annotations

import argparse

import numpy as np

from training.detector.common import load_json
from training.detector.label import RAW


def pairs() -> np.ndarray:
    raw = load_json(RAW)
    rows = []
    for p, e in raw.items():
        if p.startswith("scenes/misc/kiyoshimu-head"):
            continue  # 128x128 crops already: the cascade face is cut by the picture border
        fb = np.asarray(e["fb"], np.float32).reshape(-1, 5)
        heads = fb[fb[:, 4] >= 0.5, :4]
        for f in np.asarray(e["cascade"], np.float32).reshape(-1, 4):
            fcx, fcy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
            fs = f[2] - f[0]
            hit = [h for h in heads if h[0] <= fcx <= h[2] and h[1] <= fcy <= h[3]]
            if len(hit) != 1:
                continue
            h = hit[0]
            hs = np.sqrt((h[2] - h[0]) * (h[3] - h[1]))
            hcx, hcy = (h[0] + h[2]) / 2, (h[1] + h[3]) / 2
            rows.append([fs / hs, (fcx - hcx) / hs, (fcy - hcy) / hs, (h[2] - h[0]) / (h[3] - h[1])])
    return np.asarray(rows, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    r = pairs()
    r = r[(r[:, 0] > 0.35) & (r[:, 0] < 1.1)]
    q = np.percentile(r, [25, 50, 75], axis=0)
    print(f"pairs: {len(r)}")
    for name, col in zip(["face/head side", "dx/head", "dy/head", "head w/h"], q.T):
        print(f"  {name:15s} p25 {col[0]:.3f}  median {col[1]:.3f}  p75 {col[2]:.3f}")
    scale, dy = float(q[1, 0]), float(q[1, 2])
    print(f"encoder crop: scale {scale:.3f} shift_y {dy:.3f} square True")
    print(f"face->head: FACE2HEAD_SCALE {1 / scale:.3f} FACE2HEAD_DY {-dy / scale:.3f}")
    if a.write:
        from training.manifest import update_section

        update_section("encoder", {"crop": {"scale": round(scale, 3), "shift_y": round(dy, 3), "square": True}},
                       merge=True)
        print("wrote encoder.crop into models/manifest.json")


if __name__ == "__main__":
    main()
