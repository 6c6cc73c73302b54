"""Steps 4 + 5: fit the classifier over all known characters, calibrate it, write the bundle files.

    python -m training.encoder.classifier [--encoder models/encoder.onnx]

* Embeds every face with the exported ONNX encoder (the file that ships), plus one line-art rendering of
  each training face (so sketches land near their character).
* Fits a linear softmax on L2-normalised embeddings (numpy, full-batch Adam, L2 penalty, class weights
  ~ 1/sqrt(count)) on the 'train' split -> W (C, D), b (C,).
* Calibrates on the 'calib' split (carved from training data by post; never 'val'):
  - temperature T by NLL, then folded into W and b (the manifest's temperature is 1.0, so the gallery
    calibration below does not depend on where a consumer applies T);
  - gallery_scale / gallery_bias: a classifier fitted without the 6 held-out characters, the held-out ones
    enrolled from 5 training pictures as prototypes, logit = scale * cosine + bias; NLL over calib faces of
    all 32 characters, so enrolled characters compete fairly with the linear classes. Where the encoder
    appends a colour histogram (`training.encoder.colour`), the gallery compares only the embedding before it
    (manifest `gallery_dims`): fitted and calibrated that way here.
* Writes models/classifier.npz, chara.json, manifest sections "encoder" (keeps an existing "crop") and
  "classifier" (with `gallery_compatible`: the encoders before the appending steps, whose galleries stay usable),
  and the top-level "version".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inference.classify import gallery_view
from training.common import ROOT
from training.encoder.appended import info_path
from training.encoder.data import OUT, load_meta
from training.encoder.onnx_embed import MEAN, SCALE, STD, embed, session
from training.manifest import MODELS, sha256_of, update_section

VERSION = "2026.11.30.2"
DEFAULT_CROP = {"scale": 1.0, "shift_y": 0.0, "square": False}


def export_info(encoder: Path) -> dict:
    for cand in (info_path(encoder), OUT / "export_info.json"):
        if cand.exists():
            return json.loads(cand.read_text())
    raise SystemExit(f"no export info next to {encoder}; run training.encoder.export first")


def embeddings(encoder: Path, size: int) -> dict:
    """All face embeddings + line-art (variant 0) embeddings, cached by encoder sha256."""
    sha = sha256_of(encoder)[:16]
    cache = OUT / f"emb_{sha}.npz"
    if cache.exists():
        return dict(np.load(cache))
    faces = np.load(OUT / "faces_96.npy")
    lines = np.load(OUT / "faces_lineart_96.npy", mmap_mode="r")
    sess = session(encoder, threads=2)
    e = embed(sess, faces, size)
    line_rgb = np.repeat(np.asarray(lines[:, 0])[..., None], 3, axis=3)
    el = embed(sess, line_rgb, size)
    np.savez(cache, faces=e, lineart=el)
    return {"faces": e, "lineart": el}


def fit_softmax(x: np.ndarray, y: np.ndarray, n_cls: int, sample_w: np.ndarray | None = None, l2: float = 1e-4,
                iters: int = 400, lr: float = 0.05, scale: float = 16.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, logits = x @ W.T + b; full-batch Adam. Returns W (C, D), b (C,)."""
    n, d = x.shape
    sw = np.ones(n) if sample_w is None else sample_w
    sw = sw / sw.sum()
    w = np.zeros((n_cls, d))
    for c in range(n_cls):  # start from scaled prototypes
        if (y == c).any():
            m = x[y == c].mean(0)
            w[c] = scale * m / (np.linalg.norm(m) + 1e-9)
    b = np.zeros(n_cls)
    params = [w, b]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    onehot = np.eye(n_cls)[y]
    for t in range(1, iters + 1):
        z = x @ w.T + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) * sw[:, None]
        grads = [g.T @ x + 2 * l2 * w, g.sum(0)]
        for i, (prm, gr) in enumerate(zip(params, grads, strict=True)):
            mom[i] = 0.9 * mom[i] + 0.1 * gr
            vel[i] = 0.999 * vel[i] + 0.001 * gr * gr
            prm -= lr * (mom[i] / (1 - 0.9**t)) / (np.sqrt(vel[i] / (1 - 0.999**t)) + 1e-8)
    return w.astype(np.float32), b.astype(np.float32)


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    ts = np.exp(np.linspace(np.log(0.05), np.log(20), 400))
    return float(ts[int(np.argmin([nll(logits / t, y) for t in ts]))])


def class_weights(y: np.ndarray, n_cls: int) -> np.ndarray:
    cnt = np.bincount(y, minlength=n_cls).astype(float)
    return 1.0 / np.sqrt(np.maximum(cnt[y], 1))


def fit_classifier(e: dict, meta: dict, classes: list[int], lineart_w: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fit on 'train' faces (+ their line-art renderings) of `classes`; returns W, b over len(classes)."""
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    sel = (split == "train") & np.isin(lab, classes)
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[c] for c in lab[sel]])
    x = np.concatenate([e["faces"][sel], e["lineart"][sel]])
    yy = np.concatenate([y, y])
    cw = class_weights(y, len(classes))
    sw = np.concatenate([cw, lineart_w * cw])
    return fit_softmax(x, yy, len(classes), sw)


def open_set_classifier(e: dict, meta: dict) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """The classifier the bundle would have without the held-out characters: fitted like the shipped one on the
    others, its 'calib' temperature folded in. Returns W, b, the known class ids (W's rows) and the held-out ids."""
    chars = meta["characters"]
    lab, split = np.array(meta["label"]), np.array(meta["split"])
    held = [chars.index(c) for c in meta["heldout"]]
    known = [c for c in range(len(chars)) if c not in held]
    w, b = fit_classifier(e, meta, known)
    calk = (split == "calib") & np.isin(lab, known)
    remap = {c: i for i, c in enumerate(known)}
    t = fit_temperature(e["faces"][calk] @ w.T + b, np.array([remap[c] for c in lab[calk]]))
    return w / t, b / t, known, held


def step_widths(info: dict) -> dict:
    """The graph's width after each step, from its export info: the embedding, then what `colour` (a histogram of
    prod(bins)), `pooled` and `hires` appended in that order (a step not run adds nothing)."""
    c, p, h = info.get("colour"), info.get("pooled"), info.get("hires")
    hires = int(info["dim"])
    pooled = hires - (h["dims"] if h else 0)
    colour = pooled - (p["dims"] if p else 0)
    return {"embedding": colour - int(np.prod(c["bins"]) if c else 0), "colour": colour, "pooled": pooled,
            "hires": hires}


def gallery_dims(info: dict) -> int | None:
    """How many leading embedding dimensions the gallery compares: all but what `colour`, `pooled` and `hires`
    appended."""
    if not (info.get("colour") or info.get("pooled") or info.get("hires")):
        return None
    return step_widths(info)["embedding"]


def member_saw_heldout(info: dict) -> bool:
    """Whether the graph has a classifier-only member trained on the characters the rest holds out."""
    h = info.get("hires")
    return bool(h) and h.get("heldout") is not None and h["heldout"] != info.get("heldout")


def open_set_view(e: dict, info: dict) -> dict:
    """The embeddings for measuring the open set: without the dimensions of a classifier-only member that was trained
    on the held-out characters (`hires --every-character`), which would know the 'new' characters; renormalised.
    Unchanged for any other graph."""
    if not member_saw_heldout(info):
        return e
    return {k: gallery_view(v, step_widths(info)["pooled"]) for k, v in e.items()}


def calibrate(e: dict, meta: dict, seed: int = 0, dims: int | None = None, open_e: dict | None = None) -> dict:
    """Temperature and 'calib' accuracy from `e`; the gallery's scale and bias from `open_e` (default `e`: see
    `open_set_view`), whose linear part stands in for the served one while the held-out characters are enrolled."""
    chars = meta["characters"]
    lab = np.array(meta["label"])
    split = np.array(meta["split"])
    nc = len(chars)
    cal = split == "calib"
    # full classifier temperature
    w, b = fit_classifier(e, meta, list(range(nc)))
    logits = e["faces"][cal] @ w.T + b
    t_full = fit_temperature(logits, lab[cal])
    top = np.argsort(-logits, 1)[:, :3]  # the 'calib' accuracy of the classifier (never 'val'), to compare encoders
    hits = top == lab[cal][:, None]
    # gallery: classifier without the held-out characters, those enrolled from 5 training shots
    eo = e if open_e is None else open_e
    ws, bs, known, held = open_set_classifier(eo, meta)
    rng = np.random.default_rng(seed)
    rows, ys = [], []
    for _ in range(5):
        protos = []
        for c in held:
            pool = np.where((lab == c) & (split == "train"))[0]
            shots = rng.choice(pool, min(5, len(pool)), replace=False)
            p = eo["faces"][shots].mean(0)
            protos.append(p / np.linalg.norm(p))
        protos = np.stack(protos)
        lin = eo["faces"][cal] @ ws.T + bs
        cos = gallery_view(eo["faces"][cal], dims) @ gallery_view(protos, dims).T  # as the served Classifier
        order = known + held  # column j -> class order[j]
        pos = {c: j for j, c in enumerate(order)}
        rows.append((lin, cos))
        ys.append(np.array([pos[c] for c in lab[cal]]))
    y_all = np.concatenate(ys)

    def loss(s, bias):
        return nll(np.concatenate([np.concatenate([lin, s * cos + bias], 1) for lin, cos in rows]), y_all)

    grid = [(s, bb) for s in np.linspace(2, 60, 59) for bb in np.linspace(-40, 10, 101)]
    s, bias = min(grid, key=lambda p: loss(*p))
    return {"temperature_fitted": t_full, "gallery_scale": float(s), "gallery_bias": float(bias),
            "calib_gallery_nll": loss(s, bias), "calib_faces": int(cal.sum()),
            "calib_top1": round(float(hits[:, 0].mean()), 4), "calib_top3": round(float(hits.any(1).mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", type=Path, default=MODELS / "encoder.onnx")
    ap.add_argument("--bundle", type=Path, default=MODELS)
    args = ap.parse_args()
    enc = args.encoder if args.encoder.is_absolute() else ROOT / args.encoder
    info = export_info(enc)
    meta = load_meta()
    e = embeddings(enc, info["size"])
    chars = meta["characters"]
    dims = gallery_dims(info)
    cal = calibrate(e, meta, dims=dims, open_e=open_set_view(e, info))
    w, b = fit_classifier(e, meta, list(range(len(chars))))
    t = cal["temperature_fitted"]
    w, b = (w / t).astype(np.float32), (b / t).astype(np.float32)  # fold the temperature in
    bundle = args.bundle
    bundle.mkdir(parents=True, exist_ok=True)
    np.savez(bundle / "classifier.npz", W=w, b=b)
    (ROOT / "chara.json").write_text(json.dumps(chars, ensure_ascii=False, indent=1) + "\n")
    manifest_path = bundle / "manifest.json"
    current = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    crop = current.get("encoder", {}).get("crop", DEFAULT_CROP)
    rel = Path(enc).resolve().relative_to(bundle.resolve())
    update_section("encoder", {
        "file": str(rel),
        "input": {"name": "input0", "size": [info["size"], info["size"]], "color": "RGB", "scale": SCALE,
                  "mean": list(MEAN), "std": list(STD), "resize": "squash"},
        "output": "embedding", "dim": info["dim"], "batch": "dynamic", "crop": crop,
    }, bundle=bundle, merge=True)
    update_section("classifier", {
        "file": "classifier.npz", "format": "linear_npz", "temperature": 1.0,
        "gallery_scale": round(cal["gallery_scale"], 4), "gallery_bias": round(cal["gallery_bias"], 4),
        **({"gallery_dims": dims} if dims else {}),
        **({"gallery_compatible": info["gallery_compatible"]} if dims and info.get("gallery_compatible") else {}),
    }, bundle=bundle, version=VERSION)
    (OUT / "calibration.json").write_text(json.dumps(cal, indent=2))
    print(json.dumps(cal))
    print(f"wrote {bundle / 'classifier.npz'} W {w.shape}, {ROOT / 'chara.json'} ({len(chars)} tags), manifest")


if __name__ == "__main__":
    main()
