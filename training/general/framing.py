"""Does a picture given as one head read like a detected head? (issue 53, point 1)

    python -m training.general.framing [--bundle models] [--limit N] [--json]
    python -m training.general.framing --fit [--limit N]

Measure (the default): top-1/top-3 among all the bundle's characters of
- held-out outfits: the 'val_variant' pictures of ../shared/data/characters whose kind is `icon` or `art-head`
  (128x128 head crops already; split.py), through the detector (`whois`, the head that ranks the truth best, as
  `eval` does), as a whole picture before (squashed whole, the bundle without `encoder.whole_image`) and after
  (`Pipeline.whole_views`, as the manifest says);
- face-only crops: the faces/ 'val' pictures (tight faces, by post, training.common.split_of), whole before and
  after.

`--fit` measures, on the 'train' split's head crops only (never on what the measurement reports), the box the
detector gives for a head crop (median of each side as a fraction of the picture) and how much of the picture it
covers: what `encoder.whole_image` `box` and `min_cover` are set from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from inference.pipeline import Pipeline
from inference.settings import Settings
from training.common import DATA, ROOT, imread_rgb, read_face_index, split_of
from training.general.dataset import splits
from training.general.labels import build


def head_crops(split: str) -> list[tuple[str, str]]:
    """(path, tag) of the characters/ head crops (kinds icon, art-head) of one split."""
    labels, rows, _ = build()
    return [(str(DATA / "characters" / r.path), r.tag) for r, s in zip(rows, splits(labels, rows), strict=True)
            if s == split and r.kind in ("icon", "art-head")]


def faces_val() -> list[tuple[str, str]]:
    return [(str(DATA / r.path), r.character) for r in read_face_index() if split_of(r.post) == "val"]


def subsample(items: list, limit: int | None, seed: int = 0) -> list:
    if not limit or len(items) <= limit:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    return [items[i] for i in keep]


def rank_of(result, truth: str) -> int:
    """The best rank of `truth` over the result's heads (99: not among any head's candidates, or no head)."""
    return min((next((i for i, c in enumerate(h.candidates) if c.name == truth), 99) for h in result.heads),
               default=99)


def measure(pipe: Pipeline, items: list[tuple[str, str]], ways: tuple[str, ...], what: str) -> dict:
    """{way: {top1, top3, n}} for the ways 'detector', 'whole_before', 'whole_after' and 'whole_framed_only' (the
    framed view alone, without the whole picture as a second view: `keep_whole` false)."""
    spec = pipe.embedder.spec
    framed = dataclasses.replace(spec.whole, keep_whole=False) if spec.whole is not None else None
    specs = {"whole_before": dataclasses.replace(spec, whole=None),
             "whole_framed_only": dataclasses.replace(spec, whole=framed)}
    ranks = {w: [] for w in ways}
    t0 = time.perf_counter()
    for done, (path, truth) in enumerate(items, 1):
        image = imread_rgb(path)
        for way in ways:
            pipe.embedder.spec = specs.get(way, spec)
            try:
                r = pipe.recognize_array(image, top_k=3, whole=way != "detector")
            finally:
                pipe.embedder.spec = spec
            ranks[way].append(rank_of(r, truth))
        if done % 200 == 0 or done == len(items):
            print(f"{what}: {done}/{len(items)} ({done / (time.perf_counter() - t0):.1f}/s)", file=sys.stderr,
                  flush=True)
    out = {}
    for way, r in ranks.items():
        r = np.array(r)
        out[way] = {"top1": round(float((r < 1).mean()), 4), "top3": round(float((r < 3).mean()), 4), "n": len(r)}
    return out


def unknown_named(pipe: Pipeline, items: list[tuple[str, str]], ways: tuple[str, ...]) -> dict:
    """{way: share of the pictures named}: head crops of characters the bundle is made not to know (their classifier
    rows and prototypes taken out, training.general.teach.without), whole before and after."""
    from training.general.teach import without

    clf, spec = pipe.classifier, pipe.embedder.spec
    pipe.classifier = without(clf, frozenset(t for _, t in items))
    named = {w: 0 for w in ways}
    try:
        for path, _ in items:
            image = imread_rgb(path)
            for way in ways:
                pipe.embedder.spec = dataclasses.replace(spec, whole=None) if way == "whole_before" else spec
                named[way] += any(h.sure for h in pipe.recognize_array(image, top_k=1, whole=way != "detector").heads)
    finally:
        pipe.classifier, pipe.embedder.spec = clf, spec
    return {w: round(n / max(len(items), 1), 4) for w, n in named.items()} | {"n": len(items)}


def fit(pipe: Pipeline, items: list[tuple[str, str]]) -> dict:
    """The detector's largest box on head crops, as fractions of the picture: its median sides and its cover."""
    fr, cover, none = [], [], 0
    for path, _ in items:
        image = imread_rgb(path)
        h, w = image.shape[:2]
        boxes, _ = pipe.detector(image)
        if not len(boxes):
            none += 1
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        i = int(np.argmax(areas))
        fr.append(boxes[i] / np.array([w, h, w, h], np.float32))
        cover.append(areas[i] / (w * h))
    fr, cover = np.array(fr), np.array(cover)
    return {"pictures": len(items), "no_head": none, "box": [round(float(v), 3) for v in np.median(fr, 0)],
            "cover_percentiles": {str(q): round(float(np.percentile(cover, q)), 3) for q in (1, 2, 5, 25, 50, 75)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(ROOT / "models"))
    ap.add_argument("--limit", type=int, default=None, help="at most this many pictures per set (a fixed sample)")
    ap.add_argument("--fit", action="store_true", help="measure the box on the 'train' split's head crops")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pipe = Pipeline.from_bundle(args.bundle, Settings.from_env())
    if args.fit:
        report = fit(pipe, subsample(head_crops("train"), args.limit))
    else:
        if pipe.embedder.spec.whole is None:
            print("note: this bundle has no encoder.whole_image: 'after' is 'before'", file=sys.stderr)
        report = {
            "held_out_outfits": measure(pipe, subsample(head_crops("val_variant"), args.limit),
                                        ("detector", "whole_before", "whole_after", "whole_framed_only"),
                                        "held-out outfits"),
            "faces_val": measure(pipe, subsample(faces_val(), args.limit),
                                 ("whole_before", "whole_after", "whole_framed_only"),
                                 "faces val"),
        }
        report["unknown_named"] = unknown_named(pipe, subsample(head_crops("heldout_char"), args.limit),
                                                ("detector", "whole_before", "whole_after"))
        o = report["held_out_outfits"]
        report["gap_top1_after"] = round(o["detector"]["top1"] - o["whole_after"]["top1"], 4)
        report["gap_top1_before"] = round(o["detector"]["top1"] - o["whole_before"]["top1"], 4)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
