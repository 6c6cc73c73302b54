"""Head verifier: a linear check, on the encoder's embedding of a detected box, that the box shows a head.

    python -m training.detector.verifier [--bundle models] [--reads closed]   # fit, set the threshold, write it in

The detector's confident mistakes on fan art are decorations (paw and flower prints, stars, hands, plush toys).
The encoder already embeds every detected box to name it, and its embedding tells a head from a paw print far
better than the detector's 448 px view does, so one dot product per box removes most of them for nothing.

1. Candidates: the bundle's detector (score >= 0.05) on every training scene. A box is a head when it matches a
   training label at IoU >= 0.5 (teacher labels with the by-eye fixes of `label_fixes.json`, or checked boxes),
   not a head when it overlaps no label and no 'ignore' region at IoU >= 0.3, else unused.
2. More heads: face pictures of every source in `faces/` (the encoder's framing, so the crop a box gets).
3. Every crop also greyscale, turned 90/180/270 degrees and as line art, so that none of these says "no head".
4. A class-balanced L2 logistic regression (Newton steps) on the embeddings of the fitting pictures: 3 in 4
   training scenes by a hash of the path, and the faces outside the checking share. It reads the encoder's
   `closed` block only (`--reads`; `all` for the whole embedding): that block is the one a new general encoder
   leaves unchanged, and a check on the whole embedding refitted on a new general block (g64m) removed fewer
   non-heads (9 of the portraits' 52, against 20).
5. The threshold, set by rule before any held-out look: the highest that keeps 99.5 % of the heads of the
   checking scenes (the other 1 in 4) and 99.5 % of the checking faces. Only the training pictures are used.
6. Whether to write it: on pictures the detector never trained on, the 4,743 MyAnimeList portraits of
   `characters/` (bust or half body, one character each, where the detector boxes brooches, buttons, badges and
   prints). Every box at the served score on a portrait with more than one was looked at by eye
   (`portrait_checked.json`: heads, not heads, ignored); a portrait with one box counts it as its head, a portrait
   with none as one missed head. Rule, set before the check was run: the verifier is written when it does not
   lower the F1 over those portraits. It is written with the checking numbers of both (heads kept, non-heads
   removed, F1 with and without the check); the single boxes it drops are listed for a look by eye.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from training.detector.checked import scene_labels
from training.detector.common import DATA, ROOT, iou_matrix, match_ignoring, path_bucket, read_bgr
from training.detector.data import train_paths

KEEP = 0.995  # share of the checking heads the threshold keeps
PORTRAITS = Path(__file__).resolve().parent / "portrait_checked.json"  # boxes on portraits, checked by eye


def is_checking(path: str) -> bool:
    """1 in 4 pictures (by a hash of the path) is kept out of the fit to set the threshold on."""
    return path_bucket(path, 4) == 0


def augment(crops: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(N, S, S, 3) uint8 RGB square crops -> the same crops greyscale, turned, and as line art."""
    from training.encoder.lineart import random_lineart

    grey = np.repeat(cv2.cvtColor(crops.reshape(-1, crops.shape[2], 3), cv2.COLOR_RGB2GRAY)
                     .reshape(crops.shape[:3])[..., None], 3, axis=3)
    out = {"grey": grey}
    for k in (1, 2, 3):
        out[f"rot{90 * k}"] = np.ascontiguousarray(np.rot90(crops, k, axes=(1, 2)))
    out["lineart"] = np.stack([random_lineart(c, rng) for c in crops]) if len(crops) else crops
    return out


def candidates(pipe, paths: list[str], score: float = 0.05) -> dict:
    """Detector boxes on `paths` with their labels (1 head, 0 not a head, -1 unused), crops and embeddings."""
    from inference.crop import crop_heads
    from inference.detect import Detector

    det = Detector(pipe.detector.spec, pipe.detector.session, score_threshold=score, nms_iou=pipe.detector.nms_iou)
    labels = scene_labels(paths)
    emb = pipe.embedder
    rows, crops = [], []
    t0 = time.time()
    for i, p in enumerate(paths):
        img = cv2.cvtColor(read_bgr(DATA / p), cv2.COLOR_BGR2RGB)
        boxes, scores = det(img)
        if not len(boxes):
            continue
        gt = np.asarray(labels[p]["boxes"], np.float32).reshape(-1, 4)
        ign = np.asarray(labels[p]["ignore"], np.float32).reshape(-1, 4)
        iou = iou_matrix(boxes, gt).max(1) if len(gt) else np.zeros(len(boxes))
        iig = iou_matrix(boxes, ign).max(1) if len(ign) else np.zeros(len(boxes))
        y = np.where(iou >= 0.5, 1, np.where((iou < 0.3) & (iig < 0.3), 0, -1))
        crops.append(crop_heads(img, boxes, emb.crop, *emb.size))
        rows += [(i, *boxes[k], scores[k], y[k]) for k in range(len(boxes))]
        if i % 100 == 0:
            print(f"  candidates: {i}/{len(paths)} pictures, {len(rows)} boxes, {time.time() - t0:.0f} s", flush=True)
    r = np.asarray(rows, np.float32).reshape(-1, 7)
    return {"pic": r[:, 0].astype(int), "boxes": r[:, 1:5], "score": r[:, 5], "y": r[:, 6].astype(int),
            "crops": np.concatenate(crops) if crops else np.zeros((0, *emb.size[::-1], 3), np.uint8),
            "paths": paths}


def face_crops(size: tuple[int, int], n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` face pictures (every source), resized to the encoder input, and which are for checking."""
    with open(DATA / "faces" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.permutation(len(rows))[:n]]
    crops, check = [], []
    for r in rows:
        img = cv2.imread(str(DATA / r["path"]))
        if img is None:
            continue
        crops.append(cv2.cvtColor(cv2.resize(img, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        check.append(is_checking(r["path"]))
    return np.stack(crops), np.asarray(check)


def fit_logistic(x: np.ndarray, y: np.ndarray, lam: float = 1.0, iters: int = 30) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Newton steps. Returns (w, b)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    sw = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    reg = lam * np.eye(x1.shape[1])
    reg[-1, -1] = 0.0
    th = np.zeros(x1.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x1 @ th, -30, 30)))
        g = x1.T @ (sw * (p - y)) + reg @ th
        h = (x1 * (sw * p * (1 - p))[:, None]).T @ x1 + reg + 1e-9 * np.eye(len(th))
        d = np.linalg.solve(h, g)
        th -= d
        if np.abs(d).max() < 1e-7:
            break
    return th[:-1].astype(np.float32), float(th[-1])


def f1_at(c: dict, keep: np.ndarray, labels: dict, score: float, pictures: list[int]) -> tuple[float, float, float]:
    """Recall, precision, F1 on the pictures `pictures` (indices into c["paths"]) of the boxes with detector score
    >= `score` and `keep`, against the labels (boxes on 'ignore' regions count neither way, as in
    `ship.calibrate`)."""
    tp = npred = ngt = 0
    for i in pictures:
        p = c["paths"][i]
        m = (c["pic"] == i) & (c["score"] >= score) & keep
        b = c["boxes"][m][np.argsort(-c["score"][m], kind="stable")]
        a, n, g = match_ignoring(b, labels[p]["boxes"], labels[p]["ignore"])
        tp, npred, ngt = tp + a, npred + n, ngt + g
    r, pr = tp / max(1, ngt), tp / max(1, npred)
    return r, pr, 2 * r * pr / max(1e-9, r + pr)


def portrait_boxes(pipe, served: float) -> dict:
    """The detector's boxes at score >= `served` on every MyAnimeList portrait, labelled 1 head, 0 not a head,
    -1 ignored or unchecked (a box that matches no checked box, or a second box on an unchecked portrait: the
    detector changed since `portrait_checked.json` was made; draw and check them again), with their embeddings."""
    from inference.crop import crop_heads
    from inference.detect import Detector

    det = Detector(pipe.detector.spec, pipe.detector.session, score_threshold=served, nms_iou=pipe.detector.nms_iou)
    checked = json.loads(PORTRAITS.read_text())
    with open(DATA / "characters" / "index.csv") as f:
        paths = [f"characters/{r['path']}" for r in csv.DictReader(f) if r["kind"] == "portrait"]
    emb = pipe.embedder
    pic, ys, crops, n_heads = [], [], [], 0
    for i, p in enumerate(paths):
        img = cv2.cvtColor(read_bgr(DATA / p), cv2.COLOR_BGR2RGB)
        boxes, _ = det(img)
        if p in checked:
            lab = checked[p]
            n_heads += len(lab["heads"])
            y = np.full(len(boxes), -1)
            for cls, key in ((1, "heads"), (0, "not_heads")):
                if len(boxes) and lab[key]:
                    y[(iou_matrix(boxes, lab[key]).max(1) >= 0.5) & (y < 0)] = cls
        else:
            n_heads += 1
            y = np.ones(len(boxes), int) if len(boxes) == 1 else np.full(len(boxes), -1)
        if len(boxes):
            crops.append(crop_heads(img, boxes, emb.crop, *emb.size))
            pic += [i] * len(boxes)
            ys += list(y)
    crops = np.concatenate(crops) if crops else np.zeros((0, *emb.size[::-1], 3), np.uint8)
    return {"paths": paths, "pic": np.asarray(pic, int), "y": np.asarray(ys, int), "emb": emb(crops),
            "n_heads": n_heads, "checked": np.asarray([paths[i] in checked for i in pic], bool)}


def portrait_f1(c: dict, keep: np.ndarray) -> tuple[float, float, float]:
    """Recall, precision, F1 of the kept portrait boxes (ignored and unchecked boxes count neither way)."""
    tp, fp = int(((c["y"] == 1) & keep).sum()), int(((c["y"] == 0) & keep).sum())
    r, pr = tp / max(1, c["n_heads"]), tp / max(1, tp + fp)
    return r, pr, 2 * r * pr / max(1e-9, r + pr)


def main() -> None:
    ap = argparse.ArgumentParser(description="fit the head verifier and write it into a bundle (module docstring)")
    ap.add_argument("--bundle", default=str(ROOT / "models"))
    ap.add_argument("--faces", type=int, default=3000)
    ap.add_argument("--lam", type=float, default=1.0, help="L2 strength")
    ap.add_argument("--reads", default="closed", help="the encoder block or part it reads ('all': everything)")
    ap.add_argument("--dry-run", action="store_true", help="print the numbers, write nothing")
    a = ap.parse_args()
    from inference.errors import BundleError
    from inference.manifest import VerifierSpec
    from inference.pipeline import Pipeline
    from inference.settings import Settings
    from inference.verify import Verifier
    from training.manifest import update_section

    cv2.setNumThreads(1)
    bundle = Path(a.bundle)
    pipe = Pipeline.from_bundle(bundle, Settings(verify_heads=False))
    section = {} if a.reads == "all" else {"reads": a.reads}
    try:
        spec = VerifierSpec.parse(section, pipe.bundle.spec.encoder.blocks)  # refuses a block the encoder lacks
    except BundleError as e:
        raise SystemExit(f"{e} Name one with --reads, or fit on the whole embedding: --reads all.") from None
    lo, hi = spec.span or (0, None)
    rng = np.random.default_rng(0)
    paths = train_paths()
    print(f"detector candidates on {len(paths)} training scenes ...", flush=True)
    c = candidates(pipe, paths)
    faces, fcheck = face_crops(pipe.embedder.size, a.faces)
    checking = np.asarray([is_checking(paths[i]) for i in c["pic"]], bool)
    use = c["y"] >= 0
    print(f"{int((c['y'] == 1).sum())} head boxes, {int((c['y'] == 0).sum())} non-head boxes, "
          f"{int((c['y'] < 0).sum())} unused; {len(faces)} face pictures", flush=True)

    t0 = time.time()
    e_scene, e_face = pipe.embedder(c["crops"]), pipe.embedder(faces)  # each crop embedded once
    fit = use & ~checking
    views = list(augment(np.concatenate([c["crops"][fit], faces[~fcheck]]), rng).values())
    x = np.concatenate([e_scene[fit], e_face[~fcheck]] + [pipe.embedder(v) for v in views])[:, lo:hi]
    y = np.tile(np.concatenate([c["y"][fit], np.ones(int((~fcheck).sum()), int)]), len(views) + 1)
    print(f"embedded {len(x)} crops ({len(views) + 1} views) in {time.time() - t0:.0f} s; fitting ...", flush=True)
    w, b = fit_logistic(x, y, a.lam)

    check = Verifier(spec, (w, b))
    p_scene, p_face = check.probability(e_scene), check.probability(e_face[fcheck])
    served = pipe.detector.score_threshold
    chk_head = checking & (c["y"] == 1) & (c["score"] >= served)
    thr = float(min(np.quantile(p_scene[chk_head], 1 - KEEP), np.quantile(p_face, 1 - KEEP)))
    thr = float(np.floor(thr * 1000) / 1000)
    chk_pics = sorted({int(i) for i in c["pic"][checking]})
    labels = scene_labels([paths[i] for i in chk_pics])
    r0, p0, f0 = f1_at(c, np.ones(len(p_scene), bool), labels, served, chk_pics)
    r1, p1, f1 = f1_at(c, p_scene >= thr, labels, served, chk_pics)
    chk_neg = checking & (c["y"] == 0) & (c["score"] >= served)
    metrics = {
        "threshold_rule": f"keeps {KEEP:.1%} of the checking heads (scenes and faces)",
        "checking_scenes": len(chk_pics),
        "checking_faces": int(fcheck.sum()),
        "heads_kept": round(float((p_scene[chk_head] >= thr).mean()), 4),
        "faces_kept": round(float((p_face >= thr).mean()), 4),
        "non_heads_removed": f"{int((p_scene[chk_neg] < thr).sum())}/{int(chk_neg.sum())}",
        "f1_without": round(f0, 4), "f1_with": round(f1, 4),
        "recall_precision_without": [round(r0, 4), round(p0, 4)], "recall_precision_with": [round(r1, 4), round(p1, 4)],
        "fit_crops": int(len(x)),
    }
    print(f"threshold {thr:.3f}: on the checking share, heads kept {metrics['heads_kept']}, faces kept "
          f"{metrics['faces_kept']}, non-head boxes (score >= {served}) removed {metrics['non_heads_removed']}")
    print(f"checking scenes at score >= {served}: without recall {r0:.3f} precision {p0:.3f} F1 {f0:.4f}; "
          f"with recall {r1:.3f} precision {p1:.3f} F1 {f1:.4f}")
    print("portraits (never trained on by the detector): detecting and embedding ...", flush=True)
    pc = portrait_boxes(pipe, served)
    pkeep = check.probability(pc["emb"]) >= thr
    pr0, pp0, pf0 = portrait_f1(pc, np.ones(len(pkeep), bool))
    pr1, pp1, pf1 = portrait_f1(pc, pkeep)
    heads, nots = pc["y"] == 1, pc["y"] == 0
    dropped = sorted({pc["paths"][i] for i in pc["pic"][heads & ~pkeep & ~pc["checked"]]})
    metrics["portraits"] = {
        "pictures": len(pc["paths"]), "checked_by_eye": int(len({int(i) for i in pc["pic"][pc["checked"]]})),
        "heads_kept": f"{int((heads & pkeep).sum())}/{int(heads.sum())}",
        "non_heads_removed": f"{int((nots & ~pkeep).sum())}/{int(nots.sum())}",
        "unlabelled_boxes": int((pc["y"] < 0).sum()),
        "f1_without": round(pf0, 4), "f1_with": round(pf1, 4),
        "recall_precision_without": [round(pr0, 4), round(pp0, 4)],
        "recall_precision_with": [round(pr1, 4), round(pp1, 4)]}
    pm = metrics["portraits"]
    print(f"portraits at score >= {served}: heads kept {pm['heads_kept']}, non-heads removed "
          f"{pm['non_heads_removed']}, {pm['unlabelled_boxes']} boxes ignored or unchecked; without recall "
          f"{pr0:.4f} precision {pp0:.4f} F1 {pf0:.4f}; with recall {pr1:.4f} precision {pp1:.4f} F1 {pf1:.4f}")
    print(f"single portrait boxes the check drops ({len(dropped)}; look at them):", *dropped[:50], sep="\n  ")
    if a.dry_run:
        return
    if pf1 < pf0:
        raise SystemExit("the check lowers the portraits' F1: not written")
    np.savez(bundle / "verifier.npz", w=w[None, :], b=np.asarray([b], np.float32))
    enc = json.loads((bundle / "manifest.json").read_text())["encoder"]
    update_section("verifier", {"file": "verifier.npz", "format": "linear_npz", "threshold": thr, **section,
                                "encoder_sha256": enc["sha256"], "metrics": metrics}, bundle=bundle)
    print(f"wrote {bundle / 'verifier.npz'} and the verifier section of {bundle / 'manifest.json'}")


if __name__ == "__main__":
    main()
