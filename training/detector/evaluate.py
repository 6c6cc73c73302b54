"""Evaluate the shipped head finding (models/manifest.json) on the checked held-out set.

    python -m training.detector.evaluate [--bundle models] [--teacher]

Prints recall / precision at IoU >= 0.5 against training/detector/heldout_boxes.json (checked by eye),
the kiyoshimu-* and hysts-input counts, and latency per picture (onnxruntime, 2 threads, the full
detect step: letterbox, model, threshold, NMS). Where the bundle has a head verifier (inference/verify.py)
the heads are those the pipeline keeps (detect, crop, embed, verify) and the latency includes the embedding
of every box; the detector alone is reported beside it. --teacher also scores the FaceBoxes teacher alone
(long sides 640, 1600, 2048, score >= 0.5, NMS 0.3) on the same set, as the baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from training.detector.common import DATA, HELDOUT, ROOT, iou_matrix, match, read_bgr


def load_detector(bundle: Path, threads: int = 2, score: float | None = None):
    import onnxruntime as ort

    from inference.detect import Detector
    from inference.manifest import DetectorSpec

    spec = json.loads((bundle / "manifest.json").read_text())["detector"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(bundle / spec["file"]), so, providers=["CPUExecutionProvider"])
    return Detector(DetectorSpec.parse(spec), sess, score_threshold=score), spec


def ensemble_boxes(pictures: dict[str, list]) -> dict[str, list]:
    """The unchecked teacher-ensemble heads of the same pictures (as used for training labels)."""
    from training.detector.label import RAW, merge_labels

    raw = json.loads(RAW.read_text())
    return {p: merge_labels(raw[p])["boxes"] for p in pictures}


def score_set(predict, pictures: dict[str, list], preds: dict | None = None) -> dict:
    tp = npred = ngt = 0
    per = {}
    times = []
    cache = {} if preds is None else preds
    for p, gt in pictures.items():
        if p in cache and preds is not None and len(cache) == len(pictures):
            boxes = cache[p]
        else:
            img = read_bgr(DATA / p)
            t = time.perf_counter()
            boxes = predict(img)
            times.append(time.perf_counter() - t)
            cache[p] = boxes
        a, b, c = match(boxes, np.asarray(gt, np.float32).reshape(-1, 4))
        per[p] = (a, b, c)
        tp, npred, ngt = tp + a, npred + b, ngt + c
    times = times or [0.0]
    return {"recall": tp / max(1, ngt), "precision": tp / max(1, npred), "tp": tp, "pred": npred, "gt": ngt,
            "per": per, "ms_median": 1000 * float(np.median(times)), "ms_p90": 1000 * float(np.percentile(times, 90)),
            "preds": cache}


def report(name: str, r: dict, pictures: dict) -> dict:
    kiyo = [p for p in pictures if "/kiyoshimu-" in p]
    kfound = sum(1 for p in kiyo if r["per"][p][0] >= 1)
    hy = [p for p in pictures if p.endswith("hysts-input.jpg")]
    htp, hpred, hgt = r["per"][hy[0]] if hy else (0, 0, 0)
    print(f"{name}: recall {r['recall']:.3f} ({r['tp']}/{r['gt']})  precision {r['precision']:.3f} "
          f"({r['tp']}/{r['pred']})  on {len(pictures)} held-out pictures")
    print(f"  kiyoshimu-*: head found in {kfound}/{len(kiyo)}; hysts-input: {htp} of {hgt} checked faces matched "
          f"({hpred} detections)")
    print(f"  latency per picture: median {r['ms_median']:.1f} ms, p90 {r['ms_p90']:.1f} ms")
    return {"recall": round(r["recall"], 4), "precision": round(r["precision"], 4), "pictures": len(pictures),
            "heads": r["gt"], "kiyoshimu_found": f"{kfound}/{len(kiyo)}", "hysts_matched": f"{htp}/{hgt}",
            "hysts_detections": hpred, "ms_median": round(r["ms_median"], 1)}


def names_on_boxes(pipe, pictures: dict[str, list]) -> dict:
    """What the whole pipeline says of each box on the held-out pictures: of the heads found (IoU >= 0.5 with a
    label) and of the false boxes, how many are named and how many get "?" (the known/unknown decision,
    inference/decide.py). A false box that gets "?" shows no wrong name."""
    n = {"heads_named": 0, "heads_unknown": 0, "false_named": 0, "false_unknown": 0}
    for path, gt in pictures.items():
        r = pipe.recognize((DATA / path).read_bytes())
        boxes = np.array([h.box for h in r.heads], np.float32).reshape(-1, 4)
        labels = np.array(gt, np.float32).reshape(-1, 4)
        best = iou_matrix(boxes, labels).max(1) if len(boxes) and len(labels) else np.zeros(len(boxes))
        for head, iou in zip(r.heads, best, strict=True):
            n[("heads_" if iou >= 0.5 else "false_") + ("named" if head.sure else "unknown")] += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(ROOT / "models"))
    ap.add_argument("--teacher", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also print recall/precision at other thresholds")
    ap.add_argument("--save", default="", help="write the student's numbers as JSON here")
    ap.add_argument("--write", action="store_true", help="store the numbers in the manifest's detector.metrics")
    ap.add_argument("--names", action="store_true",
                    help="also count, through the whole pipeline, the heads and false boxes named and shown as '?'")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    pictures = json.loads(HELDOUT.read_text())["pictures"]
    from inference.pipeline import Pipeline
    from inference.settings import Settings

    pipe = Pipeline.from_bundle(Path(a.bundle), Settings(ort_threads=2))
    det, spec = pipe.detector, {"file": pipe.bundle.spec.detector.model.file}  # the pipeline's own session
    alone = None
    if pipe.verifier is not None:
        r0 = score_set(lambda im: det(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))[0], pictures)
        alone = report(f"detector alone ({spec['file']}, score >= {det.score_threshold}, NMS {det.nms_iou})",
                       r0, pictures)

    def student(img):
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return det(rgb)[0] if pipe.verifier is None else pipe.find_heads(rgb)[0]

    for _ in range(3):  # warm-up
        student(read_bgr(DATA / next(iter(pictures))))
    r = score_set(student, pictures)
    name = f"student ({spec['file']}, score >= {det.score_threshold}, NMS {det.nms_iou}"
    name += f", verifier >= {pipe.verifier.threshold})" if pipe.verifier is not None else ")"
    res = report(name, r, pictures)
    if alone is not None:
        res["verifier_threshold"] = pipe.verifier.threshold
        res["detector_alone"] = alone
    r2 = score_set(None, ensemble_boxes(pictures), preds=r["preds"])
    print(f"  vs the unchecked teacher-ensemble boxes of the same pictures ({r2['gt']} heads): recall "
          f"{r2['recall']:.3f} precision {r2['precision']:.3f}")
    res["vs_unchecked_ensemble"] = {"recall": round(r2["recall"], 4), "precision": round(r2["precision"], 4)}
    import os

    t0 = os.times()
    t1 = time.perf_counter()
    img = read_bgr(DATA / "scenes/misc/kiyoshimu-test0.jpg")
    for _ in range(20):
        student(img)
    t2, t3 = os.times(), time.perf_counter()
    cpu = (t2.user + t2.system - t0.user - t0.system) / 20 * 1000
    print(f"  one 1024x576 picture x20: wall {(t3 - t1) / 20 * 1000:.1f} ms, CPU time {cpu:.1f} ms per picture "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    res["cpu_ms_per_picture"] = round(cpu, 1)
    if a.names:
        n = names_on_boxes(pipe, pictures)
        print(f"  through the pipeline: heads found named {n['heads_named']}, '?' {n['heads_unknown']}; false boxes "
              f"named {n['false_named']}, '?' {n['false_unknown']}")
        res["names"] = n
    if a.sweep:
        for thr in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            d2, _ = load_detector(Path(a.bundle), score=thr)
            r = score_set(lambda im, d2=d2: d2(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))[0], pictures)
            print(f"  thr {thr}: recall {r['recall']:.3f} precision {r['precision']:.3f}")
    if a.save:
        Path(a.save).write_text(json.dumps(res, indent=1))
    if a.write:
        from training.manifest import update_section

        metrics = json.loads((Path(a.bundle) / "manifest.json").read_text())["detector"].get("metrics", {})
        metrics["heldout"] = {**res, "set": "training/detector/heldout_boxes.json", "iou": 0.5,
                              "latency": "onnxruntime CPU, 2 threads, whole detect step"
                              + (" + embedding and verifying every box" if alone is not None else "")}
        update_section("detector", {"metrics": metrics}, bundle=Path(a.bundle), merge=True)
    if a.teacher:
        import torch

        from training.teachers.faceboxes import FaceBoxesTeacher

        torch.set_num_threads(2)
        fb = FaceBoxesTeacher(threads=2)
        report("teacher FaceBoxes alone (640/1600/2048, score >= 0.5, NMS 0.3; torch, not onnxruntime)",
               score_set(lambda im: fb.detect(im)[0], pictures), pictures)


if __name__ == "__main__":
    main()
