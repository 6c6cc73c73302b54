"""Evaluate the bundle's encoder + classifier; write metrics into the manifest and runs/encoder/eval.json.

    python -m training.encoder.evaluate [--bundle models] [--open-set-encoder models/encoder.onnx]

* known: 'val' faces of all characters through the shipped encoder + classifier: top-1/3/5.
* open set: the held-out characters (never seen by the open-set encoder) are enrolled with k = 1, 5, 10
  pictures (prototype = mean embedding); every character has a prototype (training-split mean for the
  others); queries are the held-out characters' other pictures (no shared post with the shots);
  20 random draws per k; top-1/3 by cosine.
* line art: every 'val' face rendered four ways (XDoG, Canny, adaptive threshold, pencil; fixed
  parameters), classified by the shipped encoder + classifier: top-1/3.
* latency: onnxruntime, 2 threads, one head per call and per head in a batch of 16; file sizes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from inference.classify import gallery_view, softmax
from training.common import ROOT
from training.encoder.classifier import export_info, gallery_dims, member_saw_heldout, open_set_view
from training.encoder.data import OUT, load_meta
from training.encoder.lineart import KINDS, render
from training.encoder.onnx_embed import embed, preprocess, session
from training.manifest import MODELS, update_section


def topk(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == y[:, None]).any(1).mean())


def enrol(e: np.ndarray, lab: np.ndarray, post: np.ndarray, c: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """One draw of the open-set protocol for character c: the mean embedding of k random pictures of it, and its
    query pictures (the others, none from a post that gave a shot)."""
    idx = np.where(lab == c)[0]
    shots = rng.choice(idx, k, replace=False)
    return e[shots].mean(0), idx[~np.isin(post[idx], post[shots])]


def open_set(e: np.ndarray, meta: dict, trials: int = 20, seed: int = 0) -> dict:
    chars = meta["characters"]
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    post = np.array(meta["post"])
    held = [chars.index(c) for c in meta["heldout"]]
    base = np.stack([e[(split == "train") & (lab == c)].mean(0) for c in range(len(chars))])
    rng = np.random.default_rng(seed)
    out = {}
    for k in (1, 5, 10):
        t1, t3, per = [], [], {chars[c]: [] for c in held}
        for _ in range(trials):
            protos = base.copy()
            qs, ys = [], []
            for c in held:
                protos[c], q = enrol(e, lab, post, c, k, rng)
                qs.append(q)
                ys.append(np.full(len(q), c))
            protos /= np.linalg.norm(protos, axis=1, keepdims=True)
            q, y = np.concatenate(qs), np.concatenate(ys)
            s = e[q] @ protos.T
            t1.append(topk(s, y, 1))
            t3.append(topk(s, y, 3))
            hit = np.argmax(s, 1) == y
            for c in held:
                per[chars[c]].append(float(hit[y == c].mean()))
        out[f"k{k}"] = {"top1": float(np.mean(t1)), "top3": float(np.mean(t3)), "top1_std": float(np.std(t1)),
                        "per_character_top1": {c: float(np.mean(v)) for c, v in per.items()}}
    return out


def open_set_serving(e: dict, meta: dict, clf_spec: dict, trials: int = 20, seed: int = 0) -> dict:
    """The open set as the bot scores it: a linear classifier over the characters the encoder trained on
    (fitted like the shipped one, temperature from 'calib'), and the held-out characters enrolled in a
    gallery with k shots (scored by the serving Classifier's gallery_logits, with the manifest's constants).
    Queries: the held-out characters' other pictures (no post shared with a shot); also the known characters'
    'val' faces with that gallery present (does enrolling steal their answers?)."""
    from inference.classify import Classifier
    from inference.manifest import ClassifierSpec
    from training.encoder.classifier import open_set_classifier

    served = Classifier(ClassifierSpec.parse(clf_spec), [])  # only its gallery scoring is used: the linear part is refitted below
    lab, split, post = np.array(meta["label"]), np.array(meta["split"]), np.array(meta["post"])
    w, b, known, held = open_set_classifier(e, meta)
    col = {c: j for j, c in enumerate(known + held)}
    vk = (split == "val") & np.isin(lab, known)
    yk = np.array([col[c] for c in lab[vk]])
    rng = np.random.default_rng(seed)
    out = {}
    for k in (1, 5, 10):
        t1, t3, kn = [], [], []
        for _ in range(trials):
            protos, qs = [], []
            for c in held:
                p, q = enrol(e["faces"], lab, post, c, k, rng)
                protos.append(p / np.linalg.norm(p))
                qs.append(q)
            protos = np.stack(protos)
            q = np.concatenate(qs)

            def logits(x, protos=protos):
                return np.concatenate([x @ w.T + b, served.gallery_logits(x, protos)], 1)

            y = np.array([col[c] for c in lab[q]])
            z = logits(e["faces"][q])
            t1.append(topk(z, y, 1))
            t3.append(topk(z, y, 3))
            kn.append(topk(logits(e["faces"][vk]), yk, 1))
        out[f"k{k}"] = {"top1": float(np.mean(t1)), "top3": float(np.mean(t3)),
                        "known_top1_with_gallery": float(np.mean(kn))}
    return out


def latency(path: Path, size: int) -> dict:
    sess = session(path, threads=2)
    x1 = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    x16 = np.repeat(x1, 16, 0)
    for _ in range(10):
        sess.run(None, {"input0": x1})
    t = []
    for _ in range(200):
        t0 = time.perf_counter()
        sess.run(None, {"input0": x1})
        t.append(time.perf_counter() - t0)
    tb = []
    for _ in range(30):
        t0 = time.perf_counter()
        sess.run(None, {"input0": x16})
        tb.append(time.perf_counter() - t0)
    pre = np.zeros((1, 200, 160, 3), np.uint8)
    t0 = time.perf_counter()
    for _ in range(200):
        preprocess(pre, size)
    return {"ms_per_head_batch1_median": 1000 * float(np.median(t)), "ms_per_head_batch1_p90": 1000 * float(np.percentile(t, 90)),
            "ms_per_head_batch16": 1000 * float(np.median(tb)) / 16,
            "ms_preprocess_per_head": 1000 * (time.perf_counter() - t0) / 200, "threads": 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=MODELS)
    ap.add_argument("--open-set-encoder", type=Path, default=None,
                    help="encoder trained without the held-out characters (default: the bundle's)")
    args = ap.parse_args()
    bundle = args.bundle if args.bundle.is_absolute() else ROOT / args.bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    enc_path = bundle / manifest["encoder"]["file"]
    info = export_info(enc_path)
    size = manifest["encoder"]["input"]["size"][0]
    meta = load_meta()
    chars = meta["characters"]
    assert json.loads((bundle / manifest["labels"]).read_text()) == chars, "chara.json differs from training labels"
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    va = np.where(split == "val")[0]
    faces = np.load(OUT / "faces_96.npy")
    clf = np.load(bundle / manifest["classifier"]["file"])
    w, b, t = clf["W"], clf["b"], manifest["classifier"]["temperature"]
    sess = session(enc_path, threads=2)

    # known characters
    e_va = embed(sess, faces[va], size)
    logits = (e_va @ w.T + b) / t
    y = lab[va]
    prob = softmax(logits)
    pred = np.argmax(logits, 1)
    known = {f"top{k}": topk(logits, y, k) for k in (1, 3, 5)}
    known["n"] = len(va)
    conf = np.zeros((len(chars), len(chars)), int)
    np.add.at(conf, (y, pred), 1)
    per_char = {c: float(conf[i, i] / max(1, conf[i].sum())) for i, c in enumerate(chars)}
    # the characters no part of the graph was trained on ('known' to the linear classifier only)
    heldset = set(meta["heldout"]) if info.get("heldout") and not member_saw_heldout(info) else set()
    known["top1_heldout_chars"] = topk(logits[np.isin(y, [chars.index(c) for c in heldset])],
                                       y[np.isin(y, [chars.index(c) for c in heldset])], 1) if heldset else None
    # sytwu's 2nd+ face of a picture (`face` > 1) may show another character than its label (data README)
    first = np.asarray(meta["face"])[va] == 1
    for name, m in (("first_face", first), ("later_face", ~first)):
        known[f"top1_{name}"] = topk(logits[m], y[m], 1) if m.any() else None
        known[f"top3_{name}"] = topk(logits[m], y[m], 3) if m.any() else None
        known[f"n_{name}"] = int(m.sum())
    # confident, correct examples for the bundle test
    good = [(float(prob[i, pred[i]]), meta["paths"][va[i]], chars[pred[i]]) for i in range(len(va))
            if pred[i] == y[i] and first[i]]
    good.sort(reverse=True)
    by_char, examples = set(), []
    for p, path, c in good:
        if c not in by_char:
            by_char.add(c)
            examples.append({"path": path, "character": c, "prob": round(p, 4)})
    # line art
    line_res = {}
    all_l, all_y = [], []
    for kind in KINDS:
        imgs = np.stack([render(faces[i], kind) for i in va])
        el = embed(sess, imgs, size)
        lg = el @ w.T + b
        line_res[kind] = {"top1": topk(lg, y, 1), "top3": topk(lg, y, 3)}
        all_l.append(lg)
        all_y.append(y)
    lg, yl = np.concatenate(all_l), np.concatenate(all_y)
    line_res["all"] = {"top1": topk(lg, yl, 1), "top3": topk(lg, yl, 3), "n": len(yl)}

    # open set
    os_path = args.open_set_encoder or enc_path
    os_path = os_path if os_path.is_absolute() else ROOT / os_path
    os_info = export_info(os_path)
    if not os_info.get("heldout"):
        raise SystemExit(f"{os_path} was trained on every character: no open-set evaluation possible")
    if os_path == enc_path:  # the classifier step's cache (every face + line art) of this very encoder
        from training.encoder.classifier import embeddings

        e_cache = embeddings(enc_path, size)
        e_all = e_cache["faces"]
    else:
        e_all = embed(session(os_path, threads=2), faces, os_info["size"])
    open_res = open_set(gallery_view(e_all, gallery_dims(os_info)), meta)  # the part a gallery compares
    open_res["heldout"] = meta["heldout"]
    open_res["encoder"] = str(os_path.relative_to(ROOT))
    if os_path == enc_path:
        serving = open_set_serving(open_set_view(e_cache, os_info), meta, manifest["classifier"])
        open_res["serving"] = {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in serving.items()}

    lat = latency(enc_path, size)
    files = {"encoder_bytes": enc_path.stat().st_size, "classifier_bytes": (bundle / manifest["classifier"]["file"]).stat().st_size}
    files["bundle_bytes"] = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and p.name != ".manifest.lock")
    metrics = {
        "known_val": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in known.items()},
        "open_set": {k: ({kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()}
                         if isinstance(v, dict) else v) for k, v in open_res.items()},
        "line_art_val": {k: {kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()}
                         for k, v in line_res.items()},
        "latency": {k: round(v, 3) for k, v in lat.items()},
        "sizes": files,
        "encoder_training": {"steps": info.get("steps"), "heldout_in_shipped_encoder": info.get("heldout"),
                             "flip_tta_in_graph": info.get("flip_tta"), "whitening": info.get("whitening"),
                             "runs": info.get("runs"), "steps_per_run": info.get("steps_per_run"),
                             "colour": info.get("colour"), "pooled": info.get("pooled"), "hires": info.get("hires")},
    }
    cal = OUT / "calibration.json"
    if cal.exists():
        metrics["calibration"] = {k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in json.loads(cal.read_text()).items()}
    update_section("classifier", {}, bundle=bundle, merge=True, metrics=metrics)
    detail = {"metrics": metrics, "per_character_top1": per_char, "confusion": conf.tolist(), "characters": chars,
              "examples": examples, "val_counts": np.bincount(y, minlength=len(chars)).tolist()}
    (OUT / "eval.json").write_text(json.dumps(detail, indent=1))
    print(json.dumps(metrics, indent=1))
    print("confident correct val faces:", json.dumps(examples[:8], indent=1))


if __name__ == "__main__":
    main()
