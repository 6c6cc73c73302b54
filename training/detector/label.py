"""Pseudo-label the scene pictures with the two teachers (raw outputs cached in runs/detector/).

    python -m training.detector.label            # all scenes -> runs/detector/teacher_raw.json (+ cascade_verified)
Merging into head boxes is `merge_labels` (cheap; re-run with other parameters without the teachers).
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
from tqdm import tqdm

from training.detector.common import DATA, RUNS, read_bgr
from training.teachers.faceboxes import nms

RAW = RUNS / "teacher_raw.json"

# Face (cascade) box -> head box, measured on the scenes by `python -m training.detector.measure_crop`
# (median over cascade faces matched inside a FaceBoxes head box): head side = FACE2HEAD_SCALE * face
# side, head centre = face centre moved by FACE2HEAD_DY * face side (negative = up).
FACE2HEAD_SCALE = 1.21
FACE2HEAD_DY = -0.21


def scene_paths() -> list[str]:
    with open(DATA / "scenes" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    paths = [r["path"] for r in rows]
    misc = sorted(f"scenes/misc/{p.name}" for p in (DATA / "scenes" / "misc").glob("*.jpg"))
    return sorted(set(paths) | set(misc))


def run_teachers(paths: list[str]) -> dict:
    from training.teachers.cascade import CascadeTeacher
    from training.teachers.faceboxes import FaceBoxesTeacher

    fb, cas = FaceBoxesTeacher(threads=1), CascadeTeacher()
    out = json.loads(RAW.read_text()) if RAW.exists() else {}
    for k, p in enumerate(tqdm(paths, desc="teachers", mininterval=10)):
        if p in out:
            continue
        img = read_bgr(DATA / p)
        h, w = img.shape[:2]
        b, s = fb.detect(img, long_sides=(640, 1600, 2048), score=0.2, nms_iou=0.3)
        long_sides = (None, 2 * max(h, w)) if max(h, w) <= 700 else (None,)
        c = cas.detect(img, long_sides=long_sides)
        out[p] = {
            "size": [h, w],
            "fb": [[round(float(v), 1) for v in bb] + [round(float(ss), 4)] for bb, ss in zip(b, s)],
            "cascade": [[round(float(v), 1) for v in bb] for bb in c],
        }
        if k % 50 == 0:
            RAW.write_text(json.dumps(out))
    RAW.write_text(json.dumps(out))
    return out


def face_to_head(face: np.ndarray, scale: float = FACE2HEAD_SCALE, dy: float = FACE2HEAD_DY) -> np.ndarray:
    face = np.asarray(face, np.float32).reshape(-1, 4)
    cx, cy = (face[:, 0] + face[:, 2]) / 2, (face[:, 1] + face[:, 3]) / 2
    side = np.sqrt((face[:, 2] - face[:, 0]) * (face[:, 3] - face[:, 1]))
    cy = cy + dy * side
    half = scale * side / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], 1)


VERIFIED = RUNS / "cascade_verified.json"


def unsupported_faces(entry: dict, fb_score: float = 0.5, cascade_support: float = 0.2) -> list[list[float]]:
    """Cascade faces that merge_labels would leave 'unsure' (in no head, no FaceBoxes support)."""
    fb = np.asarray(entry["fb"], np.float32).reshape(-1, 5)
    heads = fb[fb[:, 4] >= fb_score, :4]
    weak = fb[fb[:, 4] < fb_score]
    faces = np.asarray(entry["cascade"], np.float32).reshape(-1, 4)
    if len(faces):
        faces = faces[nms(faces, faces[:, 2] - faces[:, 0], 0.3)]
    out = []
    for f in faces:
        fcx, fcy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
        if any(b[0] <= fcx <= b[2] and b[1] <= fcy <= b[3] for b in heads):
            continue
        if any(w[4] >= cascade_support and w[0] <= fcx <= w[2] and w[1] <= fcy <= w[3] for w in weak):
            continue
        out.append([float(v) for v in f])
    return out


def verify_cascade(raw: dict) -> dict:
    """Second look by FaceBoxes at each unsupported cascade face: a 3x face-side window around it, enlarged to
    640 px. A box (score >= 0.5) whose centre lies in the face box confirms the head; its box is kept."""
    from training.teachers.faceboxes import FaceBoxesTeacher

    fb = FaceBoxesTeacher(threads=1)
    out = {}
    for p, e in tqdm(raw.items(), desc="verify", mininterval=10):
        faces = unsupported_faces(e)
        if not faces:
            continue
        img = read_bgr(DATA / p)
        h, w = img.shape[:2]
        for f in faces:
            side = f[2] - f[0]
            cx, cy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
            x0, y0 = int(max(0, cx - 1.5 * side)), int(max(0, cy - 1.5 * side))
            x1, y1 = int(min(w, cx + 1.5 * side)), int(min(h, cy + 1.5 * side))
            b, sc = fb.detect(img[y0:y1, x0:x1], long_sides=(640,), score=0.5)
            for bb in b:
                bcx, bcy = (bb[0] + bb[2]) / 2 + x0, (bb[1] + bb[3]) / 2 + y0
                if f[0] <= bcx <= f[2] and f[1] <= bcy <= f[3]:
                    out.setdefault(p, []).append([round(float(v), 1) for v in (bb + [x0, y0, x0, y0])])
                    break
    VERIFIED.write_text(json.dumps(out))
    return out


def merge_labels(entry: dict, fb_score: float = 0.5, cascade_support: float = 0.2, cascade_alone: bool = False,
                 verified: list | None = None) -> dict:
    """Head boxes for one picture from the cached teacher outputs.

    - FaceBoxes boxes with score >= fb_score are heads.
    - A cascade face that lies in no accepted head box becomes a head (face box enlarged by the measured
      face->head transform) when FaceBoxes gives some support there (a box with score >= cascade_support
      that overlaps it), or always with cascade_alone=True; otherwise it is 'ignore'.
    - FaceBoxes boxes with score in [0.2, fb_score) and no head are 'ignore' regions (not penalised).
    Returns {"boxes": [[x1,y1,x2,y2],...], "ignore": [...]} in original pixels.
    """
    h, w = entry["size"]
    fb = np.asarray(entry["fb"], np.float32).reshape(-1, 5)
    heads = fb[fb[:, 4] >= fb_score, :4]
    weak = fb[(fb[:, 4] < fb_score), :]
    faces = np.asarray(entry["cascade"], np.float32).reshape(-1, 4)
    if len(faces):
        keep = nms(faces, (faces[:, 2] - faces[:, 0]), 0.3)
        faces = faces[keep]
    extra, ignore = [], []
    for f in faces:
        fcx, fcy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
        inside = any(b[0] <= fcx <= b[2] and b[1] <= fcy <= b[3] for b in heads)
        if inside:
            continue
        hb = face_to_head(f)[0]
        support = any(
            wb[4] >= cascade_support and (wb[0] <= fcx <= wb[2] and wb[1] <= fcy <= wb[3]) for wb in weak
        )
        (extra if support or cascade_alone else ignore).append(hb)
    if verified:  # heads confirmed by verify_cascade: drop the 'unsure' boxes they cover, add them as heads
        vb = np.asarray(verified, np.float32).reshape(-1, 4)
        ignore = [g for g in ignore if not any(
            v[0] <= (g[0] + g[2]) / 2 <= v[2] and v[1] <= (g[1] + g[3]) / 2 <= v[3] for v in vb)]
        extra += list(vb)
    heads = np.concatenate([heads, np.asarray(extra, np.float32).reshape(-1, 4)])
    for wb in weak:
        cx, cy = (wb[0] + wb[2]) / 2, (wb[1] + wb[3]) / 2
        if not any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in heads):
            ignore.append(wb[:4])
    heads[:, [0, 2]] = heads[:, [0, 2]].clip(0, w)
    heads[:, [1, 3]] = heads[:, [1, 3]].clip(0, h)
    return {"boxes": heads.round(1).tolist(), "ignore": np.asarray(ignore).reshape(-1, 4).round(1).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--verify", action="store_true", help="only the second look at unsupported cascade faces")
    a = ap.parse_args()
    if a.verify:
        verify_cascade(json.loads(RAW.read_text()))
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    paths = scene_paths()
    if a.limit:
        paths = paths[: a.limit]
    raw = run_teachers(paths)
    verify_cascade(raw)


if __name__ == "__main__":
    main()
