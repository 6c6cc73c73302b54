"""Put a trained detector into the default bundle: models/detector.onnx + the manifest's detector section.

    python -m training.detector.ship runs/detector/student.onnx [BUNDLE_DIR]   # default: models/
    python -m training.detector.ship runs/detector/v6.onnx --sizes 320,352,384,416 [BUNDLE_DIR]

Defaults (score_threshold, nms_iou) are chosen on TRAINING pictures (teacher-ensemble labels, never the
held-out set): the pair with the best F1 at IoU >= 0.5, ties to the lower threshold.

The net is fully convolutional and its exported graph decodes at whatever size it is fed, so it can be
served at another input size than it was trained at; a larger input shows small heads with more pixels and
costs time. With --sizes the size is chosen like the thresholds, by the best F1 on training material only:
the same 200 training pictures plus 150 mosaics (2x2 and 3x3 grids of other training pictures, so that the
heads are small and many, as in crowded pictures); ties go to the smaller (faster) size, and the score threshold
and NMS IoU are then the best pair of that same calibration at that size (the 200 pictures alone are nearly
solved, recall about 1 at every threshold, so they say little about small heads). The manifest's
`input.size` is the size served; graphs with symbolic height and width are letterboxed into the smallest
canvas of multiples of 32 that holds the picture (`input.pad_multiple`), not the full square. (Graphs exported
before the decoding followed the input's shape have a fixed size: re-export them from their checkpoint with
`training.detector.train.export`.)
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import cv2
import numpy as np

from training.detector.checked import calibration_paths, scene_labels
from training.detector.common import DATA, ROOT, match_ignoring, read_bgr
from training.detector.data import train_paths
from training.detector.model import SIZE, STRIDES, TOPK

MODELS = ROOT / "models"
INPUT = {"name": "images", "size": [SIZE, SIZE], "color": "RGB", "scale": 1 / 255, "mean": [0.0, 0.0, 0.0],
         "std": [1.0, 1.0, 1.0], "resize": "letterbox", "pad_value": 114}


def spec(score: float = 0.3, nms_iou: float = 0.45, metrics: dict | None = None, size: int = SIZE,
         pad_multiple: int = 0) -> dict:
    """`pad_multiple` (graphs with symbolic height and width): letterbox into the smallest canvas of whole
    multiples of the largest stride instead of the full square (inference/preprocess.py)."""
    inp = {**INPUT, "size": [size, size], **({"pad_multiple": pad_multiple} if pad_multiple else {})}
    return {"file": "detector.onnx", "format": "boxes", "input": inp, "score_threshold": score,
            "nms_iou": nms_iou, "max_heads": 50, "outputs_topk": TOPK, "metrics": metrics or {}}


def served_pad(any_size: bool) -> int:
    """The `pad_multiple` a graph is served (and therefore calibrated) with: the largest stride where its height
    and width are symbolic, else 0 (the full square)."""
    return max(STRIDES) if any_size else 0


def onnx_size(onnx_path: Path) -> tuple[int, bool]:
    """(the input size the graph was made for, whether it runs at other sizes too)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in m.metadata_props}
    dim = m.graph.input[0].type.tensor_type.shape.dim[-1]
    if "input_size" in props:  # graphs with symbolic height/width record the size they were made for
        return int(props["input_size"]), not dim.dim_value
    return int(dim.dim_value), not dim.dim_value


def mosaic(items: list[tuple[np.ndarray, dict]], k: int, cell: int = 384) -> tuple[np.ndarray, dict]:
    """k x k training pictures, each letterboxed into a cell x cell tile; their labels moved along."""
    canvas = np.full((k * cell, k * cell, 3), 114, np.uint8)
    out = {"boxes": [], "ignore": []}
    for i, (img, lab) in enumerate(items[:k * k]):
        h, w = img.shape[:2]
        r = cell / max(h, w)
        im = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
        y, x = (i // k) * cell, (i % k) * cell
        canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
        for key in out:
            for b in lab[key]:
                out[key].append([b[0] * r + x, b[1] * r + y, b[2] * r + x, b[3] * r + y])
    return canvas, out


def calibration_set(n: int = 200, seed: int = 0, mosaics: bool = False) -> list[tuple[np.ndarray, dict]]:
    """(picture BGR, labels) of training pictures with at least one head, the same labels as training; the checked
    pictures that are trained on are left out, the ones kept for calibration are in (`checked.calibration_paths`)."""
    paths = calibration_paths(train_paths())
    random.Random(seed).shuffle(paths)
    labels = scene_labels(paths)
    paths = [p for p in paths if labels[p]["boxes"]]
    out = [(read_bgr(DATA / p), labels[p]) for p in paths[:n]]
    if mosaics:
        rest = paths[n:]
        rng = random.Random(seed + 1)
        for k, count in ((2, 100), (3, 50)):
            for _ in range(count):
                pick = rng.sample(rest, k * k)
                out.append(mosaic([(read_bgr(DATA / p), labels[p]) for p in pick], k))
    return out


def calibrate(onnx_path: Path, n: int = 200, seed: int = 0, pictures: list | None = None,
              size: int | None = None) -> tuple[float, float, dict]:
    import onnxruntime as ort

    from inference.detect import Detector
    from inference.manifest import DetectorSpec

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    pictures = calibration_set(n, seed) if pictures is None else pictures
    cache = []
    made_for, any_size = onnx_size(onnx_path)
    size = size or made_for
    if size != made_for and not any_size:
        raise SystemExit(f"{onnx_path} has a fixed {made_for} px input: re-export it from its checkpoint to try {size}")
    det = Detector(DetectorSpec.parse(spec(0.05, 1.0, size=size, pad_multiple=served_pad(any_size))), sess)  # NMS: per setting below
    from inference.detect import nms

    for img, lab in pictures:
        boxes, scores = det(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
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
                a, c, d = match_ignoring(b[keep], gt, ign)
                tp, npred, ngt = tp + a, npred + c, ngt + d
            r, pr = tp / max(1, ngt), tp / max(1, npred)
            f1 = 2 * r * pr / max(1e-9, r + pr)
            table[f"{nms_iou:.1f}/{thr:.2f}"] = (round(r, 3), round(pr, 3))
            if best is None or f1 > best[0] + 1e-9:
                best = (f1, float(round(thr, 2)), nms_iou, r, pr)
    f1, thr, nms_iou, r, pr = best
    print(f"calibration on {len(pictures)} training pictures: score >= {thr}, NMS {nms_iou}: recall {r:.3f} "
          f"precision {pr:.3f} (F1 {f1:.3f})")
    return thr, nms_iou, {"train_calibration": {"pictures": len(pictures), "recall": round(r, 4),
                                                "precision": round(pr, 4), "f1": round(f1, 4)}}


def choose_size(onnx_path: Path, sizes: list[int]) -> tuple[int, dict, tuple[float, float, dict]]:
    """The input size (of `sizes`) with the best calibration F1 on training pictures + mosaics (ties: smaller),
    with that calibration's (score threshold, NMS IoU, metrics): the defaults to serve it with."""
    pictures = calibration_set(mosaics=True)
    results, calib = {}, {}
    for size in sorted(sizes):
        print(f"input {size}: ", end="", flush=True)
        calib[size] = calibrate(onnx_path, pictures=pictures, size=size)
        results[size] = calib[size][2]["train_calibration"]["f1"]
    best = max(results, key=lambda z: (results[z], -z))
    print(f"chosen input size {best} (calibration F1 by size: {', '.join(f'{z}: {f:.3f}' for z, f in results.items())})")
    return best, {"size_choice": {str(z): f for z, f in results.items()}}, calib[best]


def ship(onnx_path: Path, bundle: Path = MODELS, extra: dict | None = None, size: int | None = None,
         calib: tuple[float, float, dict] | None = None) -> dict:
    """Into `bundle` (models/ by default; a copy of it to try a detector before shipping it), served at `size`
    (default: the size the graph was made for) with the score threshold and NMS IoU of `calib` (from
    `choose_size`: training pictures + mosaics) or, without it, of the 200 training pictures."""
    from training.manifest import update_section

    made_for, any_size = onnx_size(onnx_path)
    size = size or made_for
    thr, nms_iou, metrics = calib if calib else calibrate(onnx_path, size=size)
    metrics = {**metrics, **(extra or {})}
    shutil.copyfile(onnx_path, bundle / "detector.onnx")
    old = {}
    if (bundle / "manifest.json").exists():
        old = json.loads((bundle / "manifest.json").read_text()).get("detector", {}).get("metrics", {})
    keep = {k: v for k, v in old.items() if k not in metrics and not k.startswith("heldout")}
    m = update_section("detector", spec(thr, nms_iou, {**keep, **metrics}, size=size,
                                        pad_multiple=served_pad(any_size)), bundle=bundle)
    print(f"wrote {bundle / 'detector.onnx'} and the detector section of {bundle / 'manifest.json'}")
    return m


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="ship a detector into a bundle (see the module docstring)")
    ap.add_argument("model", help="an exported detector (.onnx)")
    ap.add_argument("bundle", nargs="?", default=str(MODELS))
    ap.add_argument("--sizes", default="", help="input sizes to choose from (multiples of 32), e.g. 320,352,384,416")
    a = ap.parse_args()
    model, size, extra, calib = Path(a.model), None, {}, None
    if a.sizes:
        size, extra, calib = choose_size(model, [int(z) for z in a.sizes.split(",")])
    ship(model, Path(a.bundle), extra, size, calib)


if __name__ == "__main__":
    main()
