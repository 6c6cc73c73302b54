"""Step 1: build the training set once into `runs/encoder/` (git-ignored).

    python -m training.encoder.data

Decodes every labeled face (../shared/data/faces) and every unlabeled face (../shared/data/unlabeled/*.tar)
once, squashes them to 96x96 RGB uint8 and stores numpy arrays, plus two random line-art renderings
per image (for the line-art augmentation), and `faces_meta.json` with per-image character, post and
split ('train' | 'calib' | 'val', by post). Nothing here is ever committed.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from training.common import DATA, RUNS, UNLABELED, imread_rgb, read_face_index, split_of
from training.encoder.lineart import random_lineart

OUT = RUNS / "encoder"
SIZE = 96
N_LINEART = 2

# Characters left out of encoder training for the open-set evaluation: three big hololive ones and three
# small ones from other sources. Fixed here so every command agrees.
HELDOUT = (
    "mori_calliope",
    "hakos_baelz",
    "shiori_novella",
    "aqua_(konosuba)",
    "iijima_yun",
    "nishikino_maki",
)


def squash(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)


def lineart_stack(imgs: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((len(imgs), N_LINEART, SIZE, SIZE), np.uint8)
    for i in tqdm(range(len(imgs)), desc="line art", mininterval=5):
        for v in range(N_LINEART):
            out[i, v] = random_lineart(imgs[i], rng)[:, :, 0]
    return out


def load_meta() -> dict:
    return json.loads((OUT / "faces_meta.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    rows = read_face_index()
    chars = sorted({r.character for r in rows})
    faces = np.empty((len(rows), SIZE, SIZE, 3), np.uint8)
    for i, r in enumerate(tqdm(rows, desc="faces", mininterval=5)):
        faces[i] = squash(imread_rgb(DATA / r.path))
    meta = {
        "size": SIZE,
        "characters": chars,
        "heldout": list(HELDOUT),
        "paths": [r.path for r in rows],
        "label": [chars.index(r.character) for r in rows],
        "post": [r.post for r in rows],
        "source": [r.source for r in rows],
        "face": [r.face for r in rows],
        "split": [split_of(r.post) for r in rows],
    }
    np.save(OUT / "faces_96.npy", faces)
    # the pretrained encoder's input size (training/general/backbone.py)
    np.save(OUT / "faces_128.npy", np.stack([squash(imread_rgb(DATA / r.path), 128) for r in rows]))
    np.save(OUT / "faces_lineart_96.npy", lineart_stack(faces, args.seed))

    unl = []
    for tar in sorted(UNLABELED.glob("*.tar")):
        with tarfile.open(tar) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(".jpg")),
                             key=lambda m: m.name)
            for m in tqdm(members, desc=tar.name, mininterval=5):
                img = np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"))
                unl.append(squash(img))
    unl = np.stack(unl)
    np.save(OUT / "unlabeled_96.npy", unl)
    np.save(OUT / "unlabeled_lineart_96.npy", lineart_stack(unl, args.seed + 1))
    (OUT / "faces_meta.json").write_text(json.dumps(meta))
    counts = {s: meta["split"].count(s) for s in ("train", "calib", "val")}
    print(f"faces {faces.shape} splits {counts} unlabeled {unl.shape} in {time.time() - t0:.0f}s -> {OUT}")


if __name__ == "__main__":
    main()
