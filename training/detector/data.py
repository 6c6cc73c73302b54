"""Training samples for the head detector: pseudo-labelled scenes + composites of pasted face crops.

Every sample is a SIZE x SIZE RGB uint8 picture with head boxes and 'ignore' boxes (regions the teachers
were unsure about: not penalised). Augmentations: letterbox / zoom-in crops / zoom-out, flips, small
rotations, colour jitter, greyscale, line-art renderings, blur, 1-3 random coloured circles/ellipses,
optionally patterns of small motifs (stars, hearts, paw prints, flowers, seal stamps, sparkles: the decorations
a detector mistakes for small heads; with `decoys`, also face-like ones: bows, skulls, plush-animal faces,
badges), and pasted face crops (faces/ and the unlabeled 80x80 crops) at many sizes on scenes or synthetic
backgrounds. A pasted crop's box is its head-box equivalent measured with the teacher (paste_box.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import tarfile

import cv2
import numpy as np

from training.detector.checked import scene_labels
from training.detector.common import DATA, RUNS, path_bucket, read_bgr
from training.detector.label import scene_paths

SIZE = 320
PAD = 114
# fallback head boxes of a pasted crop (fractions of the crop side), if paste_box.json is missing
DEFAULT_PASTE = {"sytwu": [-0.05, -0.12, 1.05, 1.0], "swagercode": [-0.1, -0.2, 1.1, 1.0],
                 "jlaoo": [-0.1, -0.2, 1.1, 1.0], "lauslim12": [-0.1, -0.2, 1.1, 1.0],
                 "unlabeled": [-0.05, -0.12, 1.05, 1.0]}


def is_heldout(path: str) -> bool:
    """misc/ (the detector test pictures) and ~1/12 of the other scenes, by a hash of the path."""
    if path.startswith("scenes/misc/"):
        return True
    return path_bucket(path, 12) == 0


def train_paths() -> list[str]:
    return [p for p in scene_paths() if not is_heldout(p)]


def shrink_to(img: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    r = min(1.0, long_side / max(h, w))
    if r < 1.0:
        img = cv2.resize(img, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA)
    return img, r


def load_scenes(paths: list[str], long_side: int = 768, skip_empty: bool = True) -> list[dict]:
    """Scenes with their labels (`checked.scene_labels`: checked boxes where a picture has them, else the merged
    teacher labels). Pictures without any head are skipped: nearly all are misses on small low-resolution
    pictures (113 of 265 One Piece training pictures had no teacher head; 88 of them now have checked boxes),
    and as negatives they would teach the student to miss those heads."""
    labels = scene_labels(paths)
    out = []
    for p in paths:
        lab = labels[p]
        if skip_empty and not lab["boxes"]:
            continue
        img, r = shrink_to(cv2.cvtColor(read_bgr(DATA / p), cv2.COLOR_BGR2RGB), long_side)
        out.append({"path": p, "img": img, "boxes": np.asarray(lab["boxes"], np.float32).reshape(-1, 4) * r,
                    "ignore": np.asarray(lab["ignore"], np.float32).reshape(-1, 4) * r})
    return out


def load_crops(n_faces: int = 2500, n_unlabeled: int = 2500, seed: int = 0) -> list[tuple[np.ndarray, list]]:
    """Face crops (RGB) with the head box each gets when pasted. Held-out scenes share no pixels with these."""
    rng = random.Random(seed)
    pb = dict(DEFAULT_PASTE)
    if (RUNS / "paste_box.json").exists():
        pb.update({k: v["box"] for k, v in json.loads((RUNS / "paste_box.json").read_text()).items()})
    with open(DATA / "faces" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    rng.shuffle(rows)
    out = []
    for r in rows[:n_faces]:
        img = cv2.imread(str(DATA / r["path"]))
        if img is not None:
            out.append((cv2.cvtColor(cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB),
                        pb[r["source"]]))
    per_tar = max(1, n_unlabeled // 3)
    for k in range(3):
        with tarfile.open(DATA / "unlabeled" / f"faces-00{k}.tar") as t:
            ms = [m for m in t.getmembers() if m.isfile()]
            rng.shuffle(ms)
            for m in ms[:per_tar]:
                img = cv2.imdecode(np.frombuffer(io.BytesIO(t.extractfile(m).read()).getvalue(), np.uint8), 1)
                if img is not None:
                    out.append((cv2.cvtColor(img, cv2.COLOR_BGR2RGB), pb["unlabeled"]))
    return out


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def clip_boxes(boxes: np.ndarray, ignore: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the canvas; a head less than half visible becomes an ignore region."""
    if len(boxes):
        a0 = box_area(boxes)
        c = boxes.copy()
        c[:, [0, 2]] = c[:, [0, 2]].clip(0, size)
        c[:, [1, 3]] = c[:, [1, 3]].clip(0, size)
        vis = box_area(c) / np.maximum(a0, 1e-6)
        keep = (vis >= 0.5) & (c[:, 2] - c[:, 0] >= 3) & (c[:, 3] - c[:, 1] >= 3)
        ignore = np.concatenate([ignore, c[(~keep) & (vis > 0)]])
        boxes = c[keep]
    if len(ignore):
        ignore = ignore.copy()
        ignore[:, [0, 2]] = ignore[:, [0, 2]].clip(0, size)
        ignore[:, [1, 3]] = ignore[:, [1, 3]].clip(0, size)
        ignore = ignore[box_area(ignore) > 0]
    return boxes.reshape(-1, 4), ignore.reshape(-1, 4)


def warp_boxes(b: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Affine-map boxes by their centre and (rotation-free) scale: keeps head boxes tight under small rotations."""
    if not len(b):
        return b.reshape(-1, 4)
    c = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, np.ones(len(b))], 1) @ m.T
    s = math.sqrt(abs(np.linalg.det(m[:, :2])))
    hw, hh = (b[:, 2] - b[:, 0]) * s / 2, (b[:, 3] - b[:, 1]) * s / 2
    return np.stack([c[:, 0] - hw, c[:, 1] - hh, c[:, 0] + hw, c[:, 1] + hh], 1).astype(np.float32)


def synthetic_background(rng: random.Random, size: int = SIZE) -> np.ndarray:
    kind = rng.random()
    if kind < 0.35:
        c0 = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
        c1 = np.array([rng.randint(0, 255) for _ in range(3)], np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        img = (c0 * (1 - t) + c1 * t).repeat(size, 1)
    elif kind < 0.7:
        small = np.random.default_rng(rng.randint(0, 1 << 30)).integers(0, 255, (rng.randint(2, 12),) * 2 + (3,))
        img = cv2.resize(small.astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    else:
        img = np.full((size, size, 3), [rng.randint(150, 255)] * 3, np.float32)
        for _ in range(rng.randint(3, 15)):
            col = tuple(rng.randint(0, 255) for _ in range(3))
            p1 = (rng.randint(0, size), rng.randint(0, size))
            p2 = (rng.randint(0, size), rng.randint(0, size))
            if rng.random() < 0.5:
                cv2.line(img, p1, p2, col, rng.randint(1, 6))
            else:
                cv2.rectangle(img, p1, p2, col, -1 if rng.random() < 0.5 else rng.randint(1, 4))
    return np.clip(img, 0, 255).astype(np.uint8)


MOTIFS = ("star", "heart", "paw", "flower", "stamp", "sparkle")
# face-like decorations (a second, accent colour for eyes, holes and details): the kind of small thing a head
# detector fires on in prints, on clothing and among props; added to MOTIFS by `train --decoys`
DECOYS = ("bow", "skull", "critter", "badge")


def _star(k: int, inner: float, outer: float = 1.0) -> np.ndarray:
    """A k-pointed star centred at the origin, points at `outer`, notches at `inner`, the first point up."""
    t = np.linspace(0, 2 * math.pi, 2 * k, endpoint=False) - math.pi / 2
    rad = np.where(np.arange(2 * k) % 2 == 0, outer, inner)
    return np.stack([rad * np.cos(t), rad * np.sin(t)], 1)


def _bar(x0: float, y0: float, x1: float, y1: float, half: float) -> np.ndarray:
    """A thick segment as a quadrilateral."""
    d = np.array([x1 - x0, y1 - y0])
    n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d))) * half
    return np.array([[x0 + n[0], y0 + n[1]], [x1 + n[0], y1 + n[1]], [x1 - n[0], y1 - n[1]], [x0 - n[0], y0 - n[1]]])


def motif_polys(kind: str, cx: float, cy: float, r: float, angle: float,
                rs: random.Random) -> list[tuple[np.ndarray, bool, bool]]:
    """A motif of radius r centred at (cx, cy), rotated by `angle` (radians): a list of (polygon, filled,
    accent), drawn in order (accent parts in the second colour). `rs` draws the variable parts (a stamp's
    outline and strokes; a decoy's ears, spikes and emblem) and is only used by those kinds."""
    def ring(n, rad, ox=0.0, oy=0.0, rx=1.0, ry=1.0):
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return np.stack([ox + rad * rx * np.cos(t), oy + rad * ry * np.sin(t)], 1)

    parts: list[tuple[np.ndarray, bool, bool]] = []
    if kind in ("star", "sparkle"):
        parts.append((_star(5 if kind == "star" else 4, 0.42 if kind == "star" else 0.18), True, False))
    elif kind == "heart":
        t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        parts.append((np.stack([x, y], 1) / 17.0, True, False))
    elif kind == "paw":
        parts.append((ring(24, 0.5, 0, 0.3, 1.1, 0.85), True, False))
        for ox, oy in ((-0.62, -0.25), (-0.22, -0.65), (0.22, -0.65), (0.62, -0.25)):
            parts.append((ring(16, 0.2, ox, oy, 1.0, 1.25), True, False))
    elif kind == "flower":
        for j in range(5):
            a = 2 * math.pi * j / 5
            parts.append((ring(16, 0.36, 0.55 * math.cos(a), 0.55 * math.sin(a)), True, False))
        parts.append((ring(16, 0.28), True, False))
    elif kind == "stamp":  # a square or round seal with a few strokes inside
        square = ring(4, 1.0) @ np.array([[0.7071, 0.7071], [-0.7071, 0.7071]])
        parts.append((square if rs.random() < 0.5 else ring(28, 1.0), False, False))
        for _ in range(3):
            parts.append((np.array([[rs.uniform(-0.6, 0.6) for _ in range(2)] for _ in range(2)]), False, False))
    elif kind == "bow":  # two wings, two tails, a knot
        for sx in (-1, 1):
            parts.append((np.array([[0.0, 0.0], [sx * 0.95, -0.55], [sx * 0.95, 0.3]]), True, False))
            parts.append((np.array([[0.0, 0.05], [sx * 0.45, 0.85], [sx * 0.2, 0.9]]), True, False))
        parts.append((ring(14, 0.2), True, rs.random() < 0.5))
    elif kind == "skull":  # cranium and jaw, eye sockets and nose in the accent colour, maybe crossbones
        if rs.random() < 0.4:
            parts.append((_bar(-0.68, -0.68, 0.68, 0.68, 0.08), True, False))
            parts.append((_bar(-0.68, 0.68, 0.68, -0.68, 0.08), True, False))
        parts.append((ring(28, 0.62, 0, -0.18), True, False))
        parts.append((np.array([[-0.36, 0.25], [0.36, 0.25], [0.3, 0.72], [-0.3, 0.72]]), True, False))
        for sx in (-1, 1):
            parts.append((ring(14, 0.17, sx * 0.25, -0.12, 1.0, 1.2), True, True))
        parts.append((np.array([[0.0, 0.1], [0.08, 0.28], [-0.08, 0.28]]), True, True))
    elif kind == "critter":  # a plush / mascot animal face: ears (round or pointed, maybe spikes), eyes, nose
        if rs.random() < 0.3:  # spikes all round (hedgehog, lion's mane)
            parts.append((_star(11, 0.72), True, rs.random() < 0.5))
        for sx in (-1, 1):
            if rs.random() < 0.5:
                parts.append((ring(14, 0.24, sx * 0.45, -0.5), True, False))
            else:
                parts.append((np.array([[sx * 0.15, -0.3], [sx * 0.6, -0.78], [sx * 0.62, -0.12]]), True, False))
        parts.append((ring(28, 0.6, 0, 0.12, 1.0, 0.9), True, False))
        for sx in (-1, 1):
            parts.append((ring(10, 0.09, sx * 0.22, 0.02), True, True))
        parts.append((ring(10, 0.08, 0, 0.28, 1.3, 1.0), True, True))
    elif kind == "badge":  # a round badge: a rim, a filled disc, an emblem (star, cross or two dots) inside
        parts.append((ring(32, 0.98), False, False))
        parts.append((ring(32, 0.8), True, False))
        u = rs.random()
        if u < 0.4:
            parts.append((_star(5, 0.22, 0.5), True, True))
        elif u < 0.7:
            parts.append((_bar(-0.45, 0.0, 0.45, 0.0, 0.12), True, True))
            parts.append((_bar(0.0, -0.45, 0.0, 0.45, 0.12), True, True))
        else:
            for sx in (-1, 1):
                parts.append((ring(10, 0.12, sx * 0.25, -0.1), True, True))
    else:
        raise ValueError(f"unknown motif {kind!r}")
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [(pts @ rot.T * r + (cx, cy), filled, accent) for pts, filled, accent in parts]


class Sampler:
    def __init__(self, scenes: list[dict], crops: list, seed: int = 0, size: int = SIZE, p_motifs: float = 0.0,
                 motif_kinds: tuple[str, ...] = MOTIFS):
        self.scenes, self.crops, self.size = scenes, crops, size
        self.p_motifs, self.motif_kinds = p_motifs, motif_kinds
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)

    # --- geometry -------------------------------------------------------------------------------------
    def place_scene(self, sc: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng, size = self.rng, self.size
        img = sc["img"]
        h, w = img.shape[:2]
        fit = size / max(h, w)
        u = rng.random()
        if u < 0.45:
            z = 1.0 if rng.random() < 0.6 else rng.uniform(0.5, 1.0)  # letterbox as served / zoom out
        else:
            z = math.exp(rng.uniform(0.0, math.log(3.0)))  # zoom in
        s = fit * z
        nw, nh = w * s, h * s
        tx = (size - nw) / 2 if nw <= size and u < 0.3 else rng.uniform(min(0, size - nw), max(0, size - nw))
        ty = (size - nh) / 2 if nh <= size and u < 0.3 else rng.uniform(min(0, size - nh), max(0, size - nh))
        if u > 0.88 and len(sc["boxes"]):  # one big head near the middle (head-only pictures)
            b = sc["boxes"][rng.randrange(len(sc["boxes"]))]
            bs = max(4.0, math.sqrt((b[2] - b[0]) * (b[3] - b[1])))
            s = rng.uniform(110, 330) * size / SIZE / bs
            tx = size / 2 - s * (b[0] + b[2]) / 2 + rng.uniform(-0.15, 0.15) * size
            ty = size / 2 - s * (b[1] + b[3]) / 2 + rng.uniform(-0.15, 0.15) * size
        m = np.array([[s, 0, tx], [0, s, ty]], np.float64)
        if rng.random() < 0.5:  # flip
            m = np.array([[-1, 0, size], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
        if rng.random() < 0.3:  # rotation about the canvas centre
            r = cv2.getRotationMatrix2D((size / 2, size / 2), rng.gauss(0, 10), 1.0)
            m = r @ np.vstack([m, [0, 0, 1]])
        interp = cv2.INTER_AREA if s < 0.7 else cv2.INTER_LINEAR
        if s < 0.7:  # pre-shrink for anti-aliasing, then warp at about 1:1
            small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            m2 = m @ np.array([[w / small.shape[1], 0, 0], [0, h / small.shape[0], 0], [0, 0, 1]])
            out = cv2.warpAffine(small, m2, (size, size), flags=cv2.INTER_LINEAR, borderValue=(PAD,) * 3)
        else:
            out = cv2.warpAffine(img, m, (size, size), flags=interp, borderValue=(PAD,) * 3)
        return out, warp_boxes(sc["boxes"], m), warp_boxes(sc["ignore"], m)

    def paste_faces(self, img: np.ndarray, boxes: np.ndarray, n: int) -> np.ndarray:
        rng, size = self.rng, self.size
        new = []
        occupied = [b for b in boxes]
        small_bias = rng.random() < 0.5
        for _ in range(n * 4):
            if len(new) >= n:
                break
            crop, rel = self.crops[rng.randrange(len(self.crops))]
            side = math.exp(rng.uniform(math.log(12), math.log(40 if small_bias else 130)))
            side = int(round(side))
            x, y = rng.uniform(-0.1 * side, size - 0.9 * side), rng.uniform(-0.1 * side, size - 0.9 * side)
            hb = np.array([x + rel[0] * side, y + rel[1] * side, x + rel[2] * side, y + rel[3] * side], np.float32)
            if any(_overlap(hb, o) > 0.05 for o in occupied):
                continue
            c = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if side < 96 else cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                c = c[:, ::-1]
            _blend(img, c, int(round(x)), int(round(y)), feather=rng.random() < 0.5)
            occupied.append(hb)
            new.append(hb)
        return np.asarray(new, np.float32).reshape(-1, 4)

    # --- appearance -----------------------------------------------------------------------------------
    def circles(self, img: np.ndarray, boxes: np.ndarray) -> None:
        rng, size = self.rng, self.size
        for _ in range(rng.randint(1, 3)):
            for _try in range(5):
                r = int(math.exp(rng.uniform(math.log(5), math.log(70))))
                ax = (r, max(2, int(r * rng.uniform(0.6, 1.4))))
                cx, cy = rng.randint(0, size), rng.randint(0, size)
                eb = np.array([cx - ax[0], cy - ax[1], cx + ax[0], cy + ax[1]], np.float32)
                if any(_overlap(b, eb) > 0.2 for b in boxes):
                    continue
                col = tuple(rng.randint(0, 255) for _ in range(3))
                thick = -1 if rng.random() < 0.6 else rng.randint(1, 5)
                cv2.ellipse(img, (cx, cy), ax, rng.uniform(0, 180), 0, 360, col, thick, cv2.LINE_AA)
                if thick == -1 and rng.random() < 0.3:  # a highlight or two, like an eye
                    cv2.circle(img, (cx - r // 3, cy - r // 3), max(1, r // 4), (255, 255, 255), -1)
                break

    def motifs(self, img: np.ndarray, boxes: np.ndarray) -> None:
        """A pattern of one small motif, 2-14 copies, scattered or on a jittered grid, on top of the picture
        (background, not heads: copies overlapping a head or ignore box are skipped)."""
        rng, size = self.rng, self.size
        kind = rng.choice(self.motif_kinds)
        r = math.exp(rng.uniform(math.log(4), math.log(32)))
        col = tuple(rng.randint(0, 255) for _ in range(3))
        acc = col
        if kind in DECOYS:  # (no extra draws for the older kinds: runs without decoys replay unchanged)
            r = math.exp(rng.uniform(math.log(6), math.log(48)))
            acc = tuple(255 - c for c in col) if rng.random() < 0.5 else tuple(rng.randint(0, 255) for _ in range(3))
        thick = max(1, int(round(r / rng.uniform(5, 10))))
        n = rng.randint(2, 14)
        if rng.random() < 0.5:
            step = rng.uniform(2.5, 5.0) * r
            ox, oy = rng.uniform(0, step), rng.uniform(0, step)
            cols = max(1, int((size - ox) // step) + 1)
            centres = [(ox + (i % cols) * step + rng.uniform(-r, r), oy + (i // cols) * step + rng.uniform(-r, r))
                       for i in range(n * 3)]
            rng.shuffle(centres)
        else:
            centres = [(rng.uniform(0, size), rng.uniform(0, size)) for _ in range(n * 3)]
        drawn = 0
        for cx, cy in centres:
            if drawn >= n:
                break
            mb = np.array([cx - r, cy - r, cx + r, cy + r], np.float32)
            if any(_overlap(b, mb) > 0.1 for b in boxes):
                continue
            for pts, filled, accent in motif_polys(kind, cx, cy, r, rng.uniform(-0.6, 0.6), rng):
                q = np.round(pts).astype(np.int32)
                if filled:
                    cv2.fillPoly(img, [q], acc if accent else col, cv2.LINE_AA)
                else:
                    cv2.polylines(img, [q], True, acc if accent else col, thick, cv2.LINE_AA)
            drawn += 1

    def colour(self, img: np.ndarray) -> np.ndarray:
        rng = self.rng
        u = rng.random()
        if u < 0.08:  # line art
            g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            if rng.random() < 0.5:
                e = cv2.adaptiveThreshold(cv2.GaussianBlur(g, (3, 3), 0), 255, cv2.ADAPTIVE_THRESH_MEAN_C,
                                          cv2.THRESH_BINARY, rng.choice([7, 9, 11]), rng.uniform(3, 8))
            else:
                e = 255 - cv2.Canny(g, 50, 150)
                e = cv2.erode(e, np.ones((2, 2), np.uint8)) if rng.random() < 0.5 else e
            img = cv2.cvtColor(e, cv2.COLOR_GRAY2RGB)
            if rng.random() < 0.5:  # paper tint (sketch-like)
                tint = np.array([rng.randint(200, 255), rng.randint(190, 245), rng.randint(160, 230)], np.float32)
                img = (img.astype(np.float32) / 255 * tint).astype(np.uint8)
            return img
        if u < 0.18:
            g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            img = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
        else:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + rng.randint(-12, 12)) % 180
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
            hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.7, 1.3), 0, 255)
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        a, b = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        img = np.clip(img.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
        if rng.random() < 0.1:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
        if rng.random() < 0.1:
            _, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(25, 70)])
            img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
        return img

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        u = rng.random()
        if u < 0.15:
            img = synthetic_background(rng, self.size)
            boxes, ignore = np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)
            npaste = rng.randint(1, 16)
        else:
            img, boxes, ignore = self.place_scene(self.scenes[rng.randrange(len(self.scenes))])
            boxes, ignore = clip_boxes(boxes, ignore, self.size)
            npaste = rng.randint(1, 10) if u < 0.4 else 0
        if npaste:
            img = np.ascontiguousarray(img)
            new = self.paste_faces(img, np.concatenate([boxes, ignore]), npaste)
            boxes = np.concatenate([boxes, new])
            boxes, ignore = clip_boxes(boxes, ignore, self.size)
        if rng.random() < 0.5:
            self.circles(img, np.concatenate([boxes, ignore]))
        if self.p_motifs > 0 and rng.random() < self.p_motifs:  # no draw at 0: older runs replay unchanged
            self.motifs(img, np.concatenate([boxes, ignore]))
        img = self.colour(np.ascontiguousarray(img))
        return img, boxes, ignore


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    sa = (a[2] - a[0]) * (a[3] - a[1])
    sb = (b[2] - b[0]) * (b[3] - b[1])
    return float(w * h / max(1e-6, min(sa, sb)))


def _blend(img: np.ndarray, crop: np.ndarray, x: int, y: int, feather: bool) -> None:
    h, w = crop.shape[:2]
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    c = crop[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    if feather:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
        a = np.clip((1.15 - d) / 0.3, 0, 1)[y0 - y:y1 - y, x0 - x:x1 - x, None]
    else:
        a = 1.0
    img[y0:y1, x0:x1] = (c * a + img[y0:y1, x0:x1].astype(np.float32) * (1 - a)).astype(np.uint8)
