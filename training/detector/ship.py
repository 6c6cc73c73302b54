"""Put a trained detector into the default bundle: models/detector.onnx + the manifest's detector section.

    python -m training.detector.ship runs/detector/student.onnx [BUNDLE_DIR]   # default: models/

Defaults (score_threshold, nms_iou) are chosen on TRAINING pictures (teacher-ensemble labels, never the
held-out set): the pair with the best F1 at IoU >= 0.5, ties to the lower threshold.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from training.detector.common import DATA, ROOT, iou_matrix, load_json, match, read_bgr
from training.detector.data import train_paths
from training.detector.label import RAW, VERIFIED, merge_labels
from training.detector.model import SIZE, TOPK

MODELS = ROOT / "models"
INPUT = {"name": "images", "size": [SIZE, SIZE], "color": "RGB", "scale": 1 / 255, "mean": [0.0, 0.0, 0.0],
         "std": [1.0, 1.0, 1.0], "resize": "letterbox", "pad_value": 114}


def spec(score: float = 0.3, nms_iou: float = 0.45, metrics: dict | None = None) -> dict:
    return {"file": "detector.onnx", "format": "boxes", "input": dict(INPUT), "score_threshold": score,
            "nms_iou": nms_iou, "max_heads": 50, "outputs_topk": TOPK, "metrics": metrics or {}}


def calibrate(onnx_path: Path, n: int = 200, seed: int = 0) -> tuple[float, float, dict]:
    import onnxruntime as ort

    from inference.detect import Detector

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    raw = load_json(RAW)
    verified = load_json(VERIFIED) if VERIFIED.exists() else {}
    paths = train_paths()
    random.Random(seed).shuffle(paths)
    labels = {p: merge_labels(raw[p], verified=verified.get(p)) for p in paths}
    paths = [p for p in paths if labels[p]["boxes"]][:n]  # same labels as training (pictures without heads skipped)
    cache = []
    det = Detector(spec(0.05, 1.0), sess)  # no NMS here: applied per setting below
    from inference.detect import nms

    for p in paths:
        lab = labels[p]
        boxes, scores = det(cv2.cvtColor(read_bgr(DATA / p), cv2.COLOR_BGR2RGB))
        cache.append((boxes, scores, np.asarray(lab["boxes"], np.float32).reshape(-1, 4),
                      np.asarray(lab["ignore"], np.float32).reshape(-1, 4)))
    best = None
    table = {}
    for nms_iou in (0.3, 0.4, 0.5):
        for thr in np.arange(0.15, 0.86, 0.05):
            tp = npred = ngt = 0
            for boxes, scores, gt, ign in cache:
                m = scores >= thr
                b, s = boxes[m], scores[m]
                keep = nms(b, s, nms_iou, 50)
                b = b[keep]
                if len(ign) and len(b):  # predictions on 'ignore' regions count neither way
                    b = b[~((iou_matrix(b, ign).max(1) >= 0.3) & ((iou_matrix(b, gt).max(1) if len(gt) else 0) < 0.5))]
                a, c, d = match(b, gt)
                tp, npred, ngt = tp + a, npred + c, ngt + d
            r, pr = tp / max(1, ngt), tp / max(1, npred)
            f1 = 2 * r * pr / max(1e-9, r + pr)
            table[f"{nms_iou:.1f}/{thr:.2f}"] = (round(r, 3), round(pr, 3))
            if best is None or f1 > best[0] + 1e-9:
                best = (f1, float(round(thr, 2)), nms_iou, r, pr)
    f1, thr, nms_iou, r, pr = best
    print(f"calibration on {len(paths)} training pictures: score >= {thr}, NMS {nms_iou}: recall {r:.3f} "
          f"precision {pr:.3f} (F1 {f1:.3f})")
    return thr, nms_iou, {"train_calibration": {"pictures": len(paths), "recall": round(r, 4),
                                                "precision": round(pr, 4)}}


def ship(onnx_path: Path, bundle: Path = MODELS) -> dict:
    """Into `bundle` (models/ by default; a copy of it to try a detector before shipping it)."""
    from training.manifest import update_section

    thr, nms_iou, metrics = calibrate(onnx_path)
    shutil.copyfile(onnx_path, bundle / "detector.onnx")
    old = {}
    if (bundle / "manifest.json").exists():
        old = json.loads((bundle / "manifest.json").read_text()).get("detector", {}).get("metrics", {})
    keep = {k: v for k, v in old.items() if k not in metrics and not k.startswith("heldout")}
    m = update_section("detector", spec(thr, nms_iou, {**keep, **metrics}), bundle=bundle)
    print(f"wrote {bundle / 'detector.onnx'} and the detector section of {bundle / 'manifest.json'}")
    return m


if __name__ == "__main__":
    ship(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else MODELS)
