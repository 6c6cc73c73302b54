"""Shared data utilities for the trainers: paths to ../shared/data, the face index, post-level splits.

Nothing here writes into the repository; caches go to `runs/` (git-ignored). Other trainers may import
this module read-only.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = (ROOT / ".." / "shared" / "data").resolve()
FACES = DATA / "faces"
UNLABELED = DATA / "unlabeled"
RUNS = ROOT / "runs"


@dataclass(frozen=True)
class FaceRow:
    path: str  # relative to DATA, e.g. "faces/watson_amelia/sytwu-...jpg"
    character: str
    source: str
    post: str
    face: int


def read_face_index(faces_dir: Path = FACES) -> list[FaceRow]:
    with open(faces_dir / "index.csv", newline="") as f:
        rows = [
            FaceRow(r["path"], r["character"], r["source"], r["post"], int(r["face"] or 1)) for r in csv.DictReader(f)
        ]
    rows.sort(key=lambda r: r.path)
    return rows


def post_bucket(post: str, salt: str = "crystal-eyes") -> float:
    """Deterministic value in [0, 1) for a post id: the same post always lands in the same split."""
    h = hashlib.sha1(f"{salt}:{post}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_of(post: str, val_frac: float = 0.15, calib_frac: float = 0.10) -> str:
    """'val' | 'calib' | 'train', decided by post (never by image), so crops of one picture stay together.

    'calib' is carved out of the training data (for temperature / gallery calibration), never from 'val'."""
    u = post_bucket(post)
    if u < val_frac:
        return "val"
    if u < val_frac + calib_frac:
        return "calib"
    return "train"


def imread_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot decode {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_config(cls, path: str | Path):
    """A training run's config: the TOML file at `path` read into the frozen dataclass `cls` (unknown keys refused,
    arrays read as tuples). What the file does not set keeps the dataclass's default, the shipped run's."""
    import tomllib
    from dataclasses import fields

    raw = tomllib.loads(Path(path).read_text())
    extra = set(raw) - {f.name for f in fields(cls)}
    if extra:
        raise SystemExit(f"{path}: unknown keys {sorted(extra)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def seeded(threads: int, seed: int):
    """A training run's torch threads and seeds, set once: (numpy Generator, torch Generator), both from `seed`."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)
