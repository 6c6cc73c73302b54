"""Stage 1 of the general encoder: cut the head of every picture in ../shared/data/characters, as serving will.

    python -m training.general.data [--bundle models]

Each picture goes through the bundle's own head detector (the serving detector: the crops are what a user's
picture will give), and the largest head is cut with the bundle's `encoder.crop` rule into a 96x96 RGB crop.
Where the detector finds no head the picture's kind decides: a game `icon` or an `art-head` is already a head
(square, with a margin), so it is used whole, like `whois --whole-image`; a MyAnimeList `portrait` with no head
is kept whole too but marked (`how` = 'whole'), so evaluation can tell. Writes, into `runs/general/`
(git-ignored, never committed): `chars_96.npy` and `chars_meta.json` (per picture: tag, source, kind, variant,
split, how). Splits (deterministic, by hash of the tag and variant, see `split.py`): 'train', 'val_variant'
(one held-out outfit of a character that keeps others in training) and 'heldout_char' (every picture of a
character left out: for the open-set measurement).
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from tqdm import tqdm

from inference.bundle import Bundle
from inference.crop import crop_heads
from inference.detect import Detector
from inference.manifest import Crop
from training.common import DATA, ROOT, RUNS, imread_rgb
from training.general.dataset import splits as assign_splits
from training.general.labels import build

OUT = RUNS / "general"
SIZE = 96
# the pretrained encoder's input (training/general/backbone.py) is cut in the same pass, from the same box
SIZES = (96, 128)


def head_crop(det: Detector, crop: Crop, rgb: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, str, float]:
    """The largest detected head, cut as serving cuts it -> (crop, 'head' | 'whole', score)."""
    crops, how, score = head_crops(det, crop, rgb, (size,))
    return crops[0], how, score


def head_crops(det: Detector, crop: Crop, rgb: np.ndarray,
               sizes: tuple[int, ...]) -> tuple[list[np.ndarray], str, float]:
    """`head_crop` at several sizes from one detection -> ([crop per size], 'head' | 'whole', score)."""
    boxes, scores = det(rgb)
    if len(boxes):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        i = int(np.argmax(areas * np.sqrt(scores)))
        return [crop_heads(rgb, boxes[i:i + 1], crop, s, s)[0] for s in sizes], "head", float(scores[i])
    h, w = rgb.shape[:2]
    return [cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA if min(h, w) > s else cv2.INTER_CUBIC)
            for s in sizes], "whole", 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(ROOT / "models"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    bundle = Bundle.load(args.bundle, threads=2)
    det = Detector(bundle.spec.detector, bundle.sessions.get("detector"), cascade_path=bundle.files["detector"].path)
    crop = bundle.spec.encoder.crop
    labels, rows, _ = build()
    splits = assign_splits(labels, rows)
    crops = {s: np.empty((len(rows), s, s, 3), np.uint8) for s in SIZES}
    how, score = [], []
    for i, r in enumerate(tqdm(rows, desc="heads", mininterval=10)):
        cs, h, s = head_crops(det, crop, imread_rgb(DATA / "characters" / r.path), SIZES)
        for size, c in zip(SIZES, cs):
            crops[size][i] = c
        how.append(h)
        score.append(round(s, 3))
    meta = {
        "size": SIZE,
        "paths": [r.path for r in rows],
        "tag": [r.tag for r in rows],
        "source": [r.source for r in rows],
        "kind": [r.kind for r in rows],
        "variant": [r.variant for r in rows],
        "split": splits,
        "how": how,
        "score": score,
    }
    for size, c in crops.items():
        np.save(OUT / f"chars_{size}.npy", c)
    (OUT / "chars_meta.json").write_text(json.dumps(meta))
    found = {k: sum(1 for h, kk in zip(how, meta["kind"]) if kk == k and h == "head") for k in set(meta["kind"])}
    total = {k: meta["kind"].count(k) for k in found}
    print(f"{len(rows)} pictures in {time.time() - t0:.0f}s; head found per kind: "
          + ", ".join(f"{k} {found[k]}/{total[k]}" for k in sorted(found))
          + "; splits: " + ", ".join(f"{s} {splits.count(s)}" for s in sorted(set(splits))))


if __name__ == "__main__":
    main()
