"""Head boxes checked by eye for training pictures where the teachers found no head.

    python -m training.detector.sheets [--bundle models]   # numbered candidates -> runs/detector/checked_*.png

The teachers miss most heads in small, low-resolution One Piece pictures (113 of 265 training pictures had no
head at all), so `data.load_scenes` used to drop every picture without a teacher head. The student finds many of
those heads with low scores. `sheets.py` draws its candidates (score >= 0.15, or its 4 best boxes at >= 0.03 where
it has none that high); each picture was looked at, and `checked_boxes.json` lists the ones where every head is
boxed by a correct candidate, with those boxes (original pixels). For those pictures the list replaces the
teacher labels (`scene_labels`). A third of them (by a hash of the path, `calibration_only`) is never trained on:
it stays in the calibration that `ship` chooses defaults with, so a model trained with the checked boxes and one
trained without them are compared on checked pictures neither has seen. The other two thirds are trained on and
left out of that calibration.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from training.detector.common import iou_matrix, load_json, path_bucket
from training.detector.label import RAW, VERIFIED, merge_labels

CHECKED = Path(__file__).resolve().parent / "checked_boxes.json"
FIXES = Path(__file__).resolve().parent / "label_fixes.json"


@lru_cache(maxsize=1)
def load() -> dict[str, list[list[float]]]:
    return json.loads(CHECKED.read_text())["pictures"] if CHECKED.exists() else {}


def calibration_only(path: str) -> bool:
    """A checked picture kept out of training, for calibration (1 in 3, by a hash of the path)."""
    return path in load() and path_bucket(path, 3) == 0


def training_paths(paths: list[str]) -> list[str]:
    """`paths` without the checked pictures kept for calibration."""
    return [p for p in paths if not calibration_only(p)]


def calibration_paths(paths: list[str]) -> list[str]:
    """`paths` without the checked pictures that are trained on."""
    return [p for p in paths if p not in load() or calibration_only(p)]


@lru_cache(maxsize=1)
def load_fixes() -> dict[str, dict[str, list]]:
    """`label_fixes.json` by picture: {path: {"not_heads": [...], "heads": [...], "unsure": [...]}}."""
    if not FIXES.exists():
        return {}
    out: dict[str, dict[str, list]] = {}
    for kind, entries in json.loads(FIXES.read_text()).items():
        if kind == "about":
            continue
        for path, box in entries:
            out.setdefault(path, {"not_heads": [], "heads": [], "unsure": []})[kind].append(box)
    return out


def apply_fixes(lab: dict, fix: dict | None) -> dict:
    """Teacher labels with the by-eye fixes: a head box matching (IoU >= 0.5) a 'not_heads' box is dropped (so it
    is background), one matching an 'unsure' box becomes 'ignore' (unsure boxes are ignored in any case), and a
    'heads' box is added where no label box covers it."""
    if not fix:
        return lab
    boxes = np.asarray(lab["boxes"], np.float32).reshape(-1, 4)
    ignore = [list(b) for b in lab["ignore"]]
    for kind in ("not_heads", "unsure"):
        fb = np.asarray(fix[kind], np.float32).reshape(-1, 4)
        if len(fb) and len(boxes):
            hit = iou_matrix(boxes, fb).max(1) >= 0.5
            if kind == "unsure":
                ignore += boxes[hit].tolist()
            boxes = boxes[~hit]
    ignore += [list(b) for b in fix["unsure"]]
    add = np.asarray(fix["heads"], np.float32).reshape(-1, 4)
    if len(add) and len(boxes):
        add = add[iou_matrix(add, boxes).max(1) < 0.5]
    boxes = np.concatenate([boxes, add])
    return {"boxes": boxes.round(1).tolist(), "ignore": np.asarray(ignore, np.float32).reshape(-1, 4).round(1).tolist()}


def scene_labels(paths: list[str]) -> dict[str, dict]:
    """The training labels of scene pictures: {"boxes", "ignore"} in original pixels. Checked boxes where the
    picture has them (nothing ignored), else the merged teacher labels with the by-eye fixes of
    `label_fixes.json` (`apply_fixes`)."""
    raw = load_json(RAW)
    verified = load_json(VERIFIED) if VERIFIED.exists() else {}
    checked = load()
    fixes = load_fixes()
    return {p: {"boxes": [list(b) for b in checked[p]], "ignore": []} if p in checked
            else apply_fixes(merge_labels(raw[p], verified=verified.get(p)), fixes.get(p)) for p in paths}
