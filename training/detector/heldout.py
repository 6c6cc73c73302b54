"""Build the checked held-out box list (training/detector/heldout_boxes.json).

    python -m training.detector.heldout sheets   # numbered candidates -> runs/detector/heldout_*.png (look!)
    python -m training.detector.heldout write    # apply the by-eye decisions below -> heldout_boxes.json

Held-out pictures: scenes/misc/* and ~1/12 of the other scenes (data.is_heldout); never trained on.
Candidates per picture: the teacher-ensemble heads (green, label_ids) and the unsure regions (red).
DECISIONS records what was changed after looking at every sheet: 'drop' ensemble heads that are not
heads (or duplicates), 'add' unsure candidates that are real heads, 'boxes' hand-placed extra heads.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np

from training.detector.common import DATA, HELDOUT, RUNS, draw, grid, load_json, read_bgr
from training.detector.data import is_heldout
from training.detector.label import RAW, merge_labels

# filled in by looking at runs/detector/heldout_*.png
DECISIONS: dict[str, dict] = {
    # cascade-found faces the rule left 'unsure' are real heads; 27 is a false box; 3 heads nobody found
    "scenes/misc/hysts-input.jpg": {"add": [28, 29, 30, 31, 32, 33, 34, 35, 36],
                                    "boxes": [[42, 2, 122, 82], [262, 352, 318, 408], [188, 424, 230, 466]]},
    "scenes/misc/ksasao-sample.jpg": {"add": [1], "boxes": [[455, 292, 562, 395]]},
    "scenes/newgame/jlaoo-5d31de82f82d.jpg": {"drop": [2]},  # background/hair, not a head
    "scenes/newgame/jlaoo-98c010a4f83c.jpg": {"drop": [1]},  # dress, not a head
    "scenes/newgame/jlaoo-d2b001f13ae9.jpg": {"add": [1]},  # upside-down head
    "scenes/newgame/jlaoo-d741a6160887.jpg": {"add": [3]},  # profile head (manga panel)
    # one teacher box over two cheek-to-cheek heads -> two boxes
    "scenes/newgame/jlaoo-c0f48772f86e.jpg": {"drop": [0], "boxes": [[85, 35, 285, 300], [268, 45, 475, 290]]},
    # One Piece: small, low-resolution pictures; the teachers miss most male heads
    "scenes/onepiece/onepiece-2071a2d4d57d.jpg": {"boxes": [[32, 8, 82, 57]]},
    "scenes/onepiece/onepiece-25b89f7eec99.jpg": {"boxes": [[39, 0, 53, 15]]},
    "scenes/onepiece/onepiece-2a18231f2ba5.jpg": {"boxes": [[20, 0, 40, 22]]},
    "scenes/onepiece/onepiece-3e97c89b1ef3.jpg": {"boxes": [[24, 2, 46, 26]]},
    "scenes/onepiece/onepiece-5d712c4a4fe3.jpg": {"boxes": [[62, 18, 196, 156]]},
    "scenes/onepiece/onepiece-9add68bf58d5.jpg": {"boxes": [[27, 0, 56, 31]]},
    "scenes/onepiece/onepiece-b374aa238c3a.jpg": {"add": [0]},
    "scenes/onepiece/onepiece-d1ee5edd24d3.jpg": {"boxes": [[40, 8, 63, 36]]},
    "scenes/onepiece/onepiece-d40ecd4da1f3.jpg": {"boxes": [[28, 2, 45, 22]]},
    "scenes/onepiece/onepiece-d690f850673f.jpg": {"boxes": [[22, 0, 48, 24]]},
    "scenes/onepiece/onepiece-dac6f23ef1ef.jpg": {"add": [0]},
}
EXCLUDE: dict[str, str] = {}


def candidates(entry: dict) -> list[tuple[list[float], str]]:
    lab = merge_labels(entry, fb_score=0.5, cascade_support=0.2, cascade_alone=False)  # ids below depend on it
    return [(b, "head") for b in lab["boxes"]] + [(b, "unsure") for b in lab["ignore"]]


def heldout_paths() -> list[str]:
    raw = load_json(RAW)
    return sorted(p for p in raw if is_heldout(p))


def sheets(per: int = 9) -> None:
    raw = load_json(RAW)
    paths = heldout_paths()
    for s in range(0, len(paths), per):
        ims = []
        for p in paths[s:s + per]:
            img = read_bgr(DATA / p)
            cand = candidates(raw[p])
            heads = [b for b, k in cand if k == "head"]
            uns = [b for b, k in cand if k == "unsure"]
            ids = [str(i) for i, (_, k) in enumerate(cand) if k == "head"]
            uids = [str(i) for i, (_, k) in enumerate(cand) if k == "unsure"]
            t = max(1, round(max(img.shape[:2]) / 300))
            img = draw(img, uns, (0, 0, 255), uids, thick=t)
            img = draw(img, heads, (0, 255, 0), ids, thick=t)
            cv2.putText(img, f"{s // per}:{p.split('/')[-1][:24]}", (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        (255, 0, 255), 2)
            ims.append(img)
        out = RUNS / f"heldout_{s // per:02d}.png"
        cv2.imwrite(str(out), grid(ims, 512, 3))
        print(out, [p.split("/")[-1] for p in paths[s:s + per]])


def write() -> None:
    raw = load_json(RAW)
    pictures = {}
    for p in heldout_paths():
        if p in EXCLUDE:
            continue
        d = DECISIONS.get(p, {})
        cand = candidates(raw[p])
        boxes = [b for i, (b, k) in enumerate(cand) if (k == "head" and i not in d.get("drop", []))
                 or (k == "unsure" and i in d.get("add", []))]
        boxes += d.get("boxes", [])
        pictures[p] = [[round(float(v), 1) for v in b] for b in boxes]
    n = sum(len(v) for v in pictures.values())
    HELDOUT.write_text(json.dumps({
        "about": "Held-out head boxes (x1, y1, x2, y2 in original pixels; paths relative to ../shared/data). "
                 "Teacher-ensemble pseudo-labels (FaceBoxes anime + LBP cascade), each picture checked by eye "
                 "and corrected (training/detector/heldout.py). Never trained on.",
        "excluded": EXCLUDE, "pictures": pictures}, indent=1) + "\n")
    print(f"{HELDOUT}: {len(pictures)} pictures, {n} heads ({len(EXCLUDE)} excluded)")


if __name__ == "__main__":
    {"sheets": sheets, "write": write}[sys.argv[1]]()
    _ = np
