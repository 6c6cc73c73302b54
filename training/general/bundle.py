"""Stage 4: the many-character bundle, from an exported general-encoder run and the shipped bundle.

    python -m training.general.bundle RUN [--base models] [--out runs/general/bundle] [--version V]
    python -m training.general.bundle --install runs/general/bundle      # make it the default bundle

1. composes the base bundle's encoder with the run's `general.onnx` (compose.py): output
   [general | closed], declared as `encoder.blocks`; the base linear classifier reads the `closed` block
   (its weights padded with zeros); galleries compare the view `--compares` names (`classifier.gallery_compares`:
   by default the general block, the closed encoder's embedding and its colour histogram, equally weighted);
2. embeds every cached crop (runs/encoder/faces_96.npy, runs/general/chars_96.npy) with the composed graph through
   `inference.embed.Embedder`, the serving code;
3. calibrates the known characters' `scale` and `bias` against the linear classifier on two calibration sets
   (faces/ 'calib' of the 32 classifier characters; half of the held-out outfits, chosen by a hash of the tag),
   maximising the mean top-1 of the two;
4. measures, with prototypes built from the training pictures only: unseen outfits (the other half), the fan-art
   proxy, the 32 characters' faces/ 'val', per source; then writes the bundle with prototypes from *every*
   picture (what the bundle knows), `characters.json` (who each one is) and the numbers in the manifest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from inference.bundle import make_session, sha256_file
from inference.characters import hub_offsets
from inference.classify import Classifier, mix
from inference.embed import Embedder
from inference.manifest import ClassifierSpec, EncoderSpec, HubSpec
from training.common import ROOT, post_bucket
from training.general import dataset
from training.general.compose import compose_files
from training.general.evaluate import prototypes
from training.manifest import write_manifest

VERSION = "2026.12.07.2"
# what galleries compare (classifier.gallery_compares): the mean of three cosines. Chosen on the 'calib' half of the
# unseen outfits only (gallery alone, top-1): general .578, + colour .635, + closed embedding and colour .672
COMPARES = "general,closed.embedding,closed.colour"
# the hubness correction (manifest.HubSpec, inference/characters.py), off by default: each prototype's cosines lowered
# by --hub-weight x (the mean of its --hub-k largest cosines to the other prototypes - their mean). Chosen on the
# 'calib' half only (g64m's cached embeddings; k 10/30/100/300, weight .25/.5/.75): k 100, weight .5 took unseen
# outfits .686 -> .706 there. The report half did not follow (bundle_hub in the model card's "Tried, not shipped":
# unseen outfits .623 -> .619, 10 shots .894/.971 -> .853/.914, known named right .752 -> .738), so no bundle has it
HUB_K, HUB_WEIGHT = 100, 0.0


def embed_crops(emb: Embedder, imgs96: np.ndarray, bs: int = 128) -> np.ndarray:
    w, h = emb.size
    out = []
    for i in range(0, len(imgs96), bs):
        crops = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in imgs96[i:i + bs]])
        out.append(emb(crops))
    return np.concatenate(out)


def scores(lin: np.ndarray, cos: np.ndarray, lin_cols: np.ndarray, scale: float, bias: float,
           mode: str = "joint") -> np.ndarray:
    """Per-name probabilities over the gallery's names (`lin_cols`: gallery column of each linear class), as
    serving computes them (`inference.classify.mix`, the one copy of the formula), the linear classes' mass added
    to their names' columns as serving merges a name's entries."""
    in_labels = np.zeros(cos.shape[1], bool)
    in_labels[lin_cols] = True
    p = mix(lin.astype(np.float64), (scale * cos + bias).astype(np.float64), in_labels, mode)
    out = p[:, lin.shape[1]:].copy()
    np.add.at(out, (slice(None), lin_cols), p[:, : lin.shape[1]])
    return out


def top(p: np.ndarray, y: np.ndarray, k: int = 3) -> dict:
    if len(y) == 0:
        return {"top1": None, "top3": None, "n": 0}
    rank = np.argsort(-p, axis=1)[:, :k]
    hit = rank == y[:, None]
    return {"top1": round(float(hit[:, 0].mean()), 4), "top3": round(float(hit.any(1).mean()), 4), "n": int(len(y))}


def calibrate(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]], lin_cols: np.ndarray) -> dict:
    """(mode, scale, bias) maximising the mean top-1 over `sets` [(linear logits, cosines, true column)], ties broken
    by the mean NLL. Both ways of combining (see `scores`) are tried."""
    best = None
    grid = [("gate", scale, 0.0) for scale in (4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0)]
    grid += [("joint", scale, float(bias)) for scale in (8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 40.0)
             for bias in np.arange(-24.0, 12.01, 1.0)]
    for mode, scale, bias in grid:
        acc, nll = [], []
        for lin, cos, y in sets:
            p = scores(lin, cos, lin_cols, scale, bias, mode)
            acc.append(float((p.argmax(1) == y).mean()))
            nll.append(float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()))
        key = (round(float(np.mean(acc)), 4), -float(np.mean(nll)))
        if best is None or key > best[0]:
            best = (key, mode, scale, bias, acc, nll)
    _, mode, scale, bias, acc, nll = best
    return {"mode": mode, "scale": scale, "bias": bias, "calib_top1": [round(a, 4) for a in acc],
            "calib_nll": [round(v, 4) for v in nll]}


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a known head > score of an unknown one), ties counted half."""
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="mergesort"), kind="mergesort") + 1.0
    # average ranks of ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inv, ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


# The decision's features (inference/decide.py). Chosen on the 'calib' half only (the AUROC there: the first three
# alone .875, with the classifier's two .902, all ten .908); the 'report' half is measured, never chosen on.
DECISION_FEATURES = ("top1_probability", "top1_cosine", "cosine_margin", "linear_max_logit", "linear_top1_probability",
                     "gallery_top1_probability@16", "gallery_top1_probability@30", "gallery_top1_probability@50",
                     "gallery_energy@16", "gallery_energy@30")


# the share of never-seen characters' heads the threshold lets be named where it is fitted: the target is <= .05 on
# hidden characters, and a threshold set at exactly .05 on ~430 heads misses it about half the time (binomial sd about
# one point), so it is set a point lower
MAX_UNKNOWN_NAMED = 0.04


def fit_decision(feats: np.ndarray, y: np.ndarray, unknown: np.ndarray, max_unknown_named: float = 0.05,
                 names: tuple[str, ...] = DECISION_FEATURES) -> dict:
    """Logistic regression (Newton steps, class-balanced, a small ridge) of y = 'named right' on the features
    (`names`, one column each); the threshold is the lowest at which at most `max_unknown_named` of the unknown
    heads (`unknown` mask) are named."""
    x = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    w = np.zeros(x.shape[1])
    cw = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        g = x.T @ (cw * (p - y)) + 1e-3 * w
        h = (x * (cw * p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    score = 1 / (1 + np.exp(-x @ w))
    neg = np.sort(score[unknown])
    k = int(np.floor(max_unknown_named * len(neg)))
    threshold = float(neg[len(neg) - k - 1] + 1e-6) if k < len(neg) else 0.0
    return {"features": list(names), "weights": [round(float(v), 5) for v in w[:-1]], "bias": round(float(w[-1]), 5),
            "threshold": round(min(max(threshold, 0.0), 1.0), 4)}


def decision_numbers(score: np.ndarray, correct: np.ndarray, unknown: np.ndarray, threshold: float) -> dict:
    known = ~unknown
    return {"unknown_named": round(float((score[unknown] >= threshold).mean()), 4),
            "known_named_right": round(float(((score >= threshold) & correct)[known].mean()), 4),
            "known_named_wrong": round(float(((score >= threshold) & ~correct)[known].mean()), 4),
            "auroc_known_vs_unknown": round(auroc(score[known], score[unknown]), 4),
            "unknown_heads": int(unknown.sum()), "known_heads": int(known.sum())}


SHIPPED = ("encoder.onnx", "encoder_export.json", "classifier.npz", "known.npz", "characters.json", "detector.onnx")


def closed_parts(info: dict) -> list[dict]:
    """What the closed graph's output holds, in order ({name, dims}), from its export info: the metric embedding,
    then what each appending step (colour, pooled, hires) declared it added. Declared once here, at build time, in
    `encoder.blocks[].parts`, so nothing later finds a width by subtraction."""
    from training.encoder.classifier import step_widths

    w = step_widths(info)
    ends = [("embedding", w["embedding"]), ("colour", w["colour"]), ("pooled", w["pooled"]), ("hires", w["hires"])]
    parts, start = [], 0
    for name, end in ends:
        if end > start:
            parts.append({"name": name, "dims": int(end - start)})
            start = end
    if start != int(info["dim"]):
        raise SystemExit(f"the closed graph's parts add up to {start}, not its width {info['dim']}")
    return parts


def export_record(out: Path, blocks: list[dict], general: dict, closed: dict) -> dict:
    """`encoder_export.json` of the composed graph: its file, size and width, and per block what made it."""
    keep = ("run", "steps", "size", "dim", "flip_tta", "int8_bytes", "int8_mean_cosine_to_float", "config")
    return {"file": "encoder.onnx", "bytes": (out / "encoder.onnx").stat().st_size,
            "dim": sum(b["dims"] for b in blocks),
            "blocks": [{**blocks[0], "export": {k: general[k] for k in keep if k in general}},
                       {**blocks[1], "export": closed}]}


def write_known(path: Path, names: list[str], vectors: np.ndarray, hub: HubSpec | None) -> None:
    """The known characters' prototypes (float16) and, with a hubness correction, their offsets, computed on the
    vectors as they ship (float16, renormalised as inference/characters.py loads them)."""
    shipped = {"names": np.array(names, dtype=np.str_), "vectors": np.asarray(vectors).astype(np.float16)}
    if hub is not None:
        v16 = shipped["vectors"].astype(np.float32)
        v16 /= np.maximum(np.linalg.norm(v16, axis=1, keepdims=True), 1e-12)
        shipped["offsets"] = hub_offsets(v16, v16, hub, exclude_self=True)
    np.savez_compressed(path, **shipped)


def write_characters(path: Path, labels: list, tags: set[str]) -> None:
    """characters.json: who each character of `tags` is (tag, display name, work, MyAnimeList page)."""
    index = [{k: v for k, v in lab.to_json().items() if k != "sources"} for lab in labels if lab.tag in tags]
    path.write_text(json.dumps(index, ensure_ascii=False, indent=0))


def install(built: Path, models: Path = ROOT / "models") -> None:
    """Copy a built bundle's files into `models/` (the default bundle; its label list stays ../chara.json)."""
    manifest = json.loads((built / "manifest.json").read_text())
    if json.loads((built / "chara.json").read_text()) != json.loads((ROOT / "chara.json").read_text()):
        raise SystemExit("the built bundle's label list is not chara.json's")
    # the head verifier too, when it was refitted on the built bundle (training.detector.verifier --bundle BUILT)
    verifier = [manifest["verifier"]["file"]] if manifest.get("verifier") else []
    for f in (*SHIPPED, *verifier):
        shutil.copy2(built / f, models / f)
    manifest["labels"] = "../chara.json"
    write_manifest(models / "manifest.json", manifest)
    print(f"installed {built} into {models} (version {manifest['version']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?")
    ap.add_argument("--install", type=Path, metavar="BUILT", help="copy a built bundle into models/ and stop")
    ap.add_argument("--base", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=dataset.OUT / "bundle")
    ap.add_argument("--version", default=VERSION)
    ap.add_argument("--hub-k", type=int, default=HUB_K, help="the hubness correction's neighbours (%(default)s)")
    ap.add_argument("--hub-weight", type=float, default=HUB_WEIGHT,
                    help="the hubness correction's weight; 0: none (default %(default)s)")
    ap.add_argument("--compares", default=COMPARES,
                    help="the blocks and parts galleries compare, comma-separated, equally weighted (default %(default)s)")
    args = ap.parse_args()
    if args.install:
        install(args.install)
        return
    if not args.run:
        ap.error("RUN is required (or --install BUILT)")
    run_dir = dataset.OUT / args.run
    export_info = run_dir / "encoder_export.json"
    if export_info.exists() and "encoder" in json.loads(export_info.read_text()):  # a pretrained encoder: one block
        build_pretrained(args, run_dir)
        return
    base = json.loads((args.base / "manifest.json").read_text())
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in ("detector.onnx",):
        shutil.copy2(args.base / f, out / f)
    info = json.loads((run_dir / "general_export.json").read_text())
    blocks = compose_files(args.base / base["encoder"]["file"], run_dir / "general.onnx", out / "encoder.onnx",
                           base["encoder"]["dim"], info["dim"])
    base_info = json.loads((args.base / "encoder_export.json").read_text())
    blocks[1]["parts"] = closed_parts(base_info)
    g_dims, c_dims = blocks[0]["dims"], blocks[1]["dims"]
    enc_spec = {**base["encoder"], "file": "encoder.onnx", "dim": g_dims + c_dims, "blocks": blocks}
    enc = EncoderSpec.parse(enc_spec)
    emb = Embedder(enc, make_session(out / "encoder.onnx", 2))
    compares = [{"part": p, "weight": 1.0} for p in args.compares.split(",")]

    data = dataset.load()
    e = embedded(emb, data.images, run_dir / f"embeddings_{sha256_file(out / 'encoder.onnx')[:12]}.npy")
    with np.load(args.base / base["classifier"]["file"]) as z:
        W, b = np.asarray(z["W"], np.float32), np.asarray(z["b"], np.float32)
    Wp = np.concatenate([np.zeros((len(W), g_dims), np.float32), W], axis=1)  # the classifier reads `closed`
    (out / "encoder_export.json").write_text(json.dumps(export_record(out, blocks, info, base_info), indent=1) + "\n")
    base_clf = {k: v for k, v in base["classifier"].items() if k not in ("gallery_dims", "gallery_compatible")}
    measure_and_write(args, base, enc_spec, enc, emb, compares, data, e, Wp, b, base_clf, run_dir,
                      {k: info[k] for k in ("run", "steps", "size", "dim", "bytes")})


# the pretrained encoder's input: RGB in [-1, 1] (training/general/features.py `to_input`), 128 px, squashed
PRETRAINED_INPUT = {"name": "input0", "color": "RGB", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                    "resize": "squash"}


def fit_linear(x: np.ndarray, y: np.ndarray, classes: int, wd: float = 1e-4, iters: int = 200) -> tuple:
    """Multinomial logistic regression (L-BFGS, a small ridge) of `classes` labels `y` on unit embeddings `x`:
    (W (classes, D), b) as `classifier.npz` holds them."""
    import torch

    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    lin = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin.weight.detach().numpy().astype(np.float32), lin.bias.detach().numpy().astype(np.float32)


def build_pretrained(args, run_dir: Path) -> None:
    """The bundle of a pretrained encoder's run: its graph (runs/general/RUN/encoder.onnx, from
    `training.general.export RUN`) is the whole encoder, one block; the linear classifier over the 32 faces/
    characters is refitted on its embeddings of the training pictures (the pictures `data.train` marks, so the
    fan-art proxy's characters are known from their portrait only, as for the gallery)."""
    base = json.loads((args.base / "manifest.json").read_text())
    info = json.loads((run_dir / "encoder_export.json").read_text())
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(args.base / "detector.onnx", out / "detector.onnx")
    shutil.copy2(run_dir / "encoder.onnx", out / "encoder.onnx")
    (out / "encoder_export.json").write_text(json.dumps(info, indent=1) + "\n")
    size = int(info["size"])
    enc_spec = {"crop": base["encoder"]["crop"], "file": "encoder.onnx",
                "input": {**PRETRAINED_INPUT, "size": [size, size]}, "output": "embedding", "dim": int(info["dim"]),
                "batch": "dynamic", "blocks": info["blocks"]}
    if "whole_image" in base["encoder"]:  # how a whole picture is framed as a head: the detector's, kept
        enc_spec["whole_image"] = base["encoder"]["whole_image"]
    enc = EncoderSpec.parse(enc_spec)
    emb = Embedder(enc, make_session(out / "encoder.onnx", 2))
    compares = [{"part": info["blocks"][0]["name"], "weight": 1.0}]
    data = dataset.load(size=size)
    if (run_dir / "head.pt").exists():
        e = np.load(run_dir / "embeddings.npy")  # the head's, from the cached taps: checked through the served graph
        pick = np.random.default_rng(0).choice(len(e), 256, replace=False)
        served = embed_crops(emb, data.images[pick])
        agree = float((served * e[pick]).sum(1).min())
        print(f"served graph vs the head's embeddings, 256 crops: min cosine {agree:.5f}", flush=True)
        if agree < 0.999:
            raise SystemExit("the exported encoder does not give the head's embeddings: export the run again")
    else:
        e = embedded(emb, data.images, run_dir / f"embeddings_{sha256_file(out / 'encoder.onnx')[:12]}.npy")
    labels32 = json.loads((args.base / base["labels"]).resolve().read_text())
    col = {lab.tag: i for i, lab in enumerate(data.labels)}
    # two fits of the linear classifier over the 32 faces/ characters. Measured: on the training pictures, without
    # the fan-art proxy's characters (known from one portrait, they stand for the characters a bundle knows from one
    # picture, which no classifier covers; as a class fitted on one portrait, in 'gate' mode the classifier handed
    # their heads to its better-known characters). Shipped: on every picture, as the known prototypes are
    measured = [t for t in labels32 if not data.proxy_identity[col[t]]]
    W_m, b_m = fit_on(e, data, data.train, [col[t] for t in measured])
    W, b = fit_on(e, data, ship_mask(data), [col[t] for t in labels32])
    # the home prior of taught characters is kept; it was chosen for the base encoder's calibration, so
    # `python -m training.general.teach --fit` must check it on this bundle before it ships
    base_clf = {"file": "classifier.npz", "format": "linear_npz", "temperature": 1.0,
                **{k: base["classifier"][k] for k in ("home_prior",) if k in base["classifier"]}}
    measure_and_write(args, base, enc_spec, enc, emb, compares, data, e, W_m, b_m, base_clf, run_dir,
                      {k: info[k] for k in ("run", "steps", "size", "dim", "bytes", "encoder")},
                      measured_labels=measured, shipped=(W, b))


def fit_on(e: np.ndarray, data, mask: np.ndarray, classes: list[int]) -> tuple:
    """The linear classifier over the identities `classes` (its rows, in order), fitted on their pictures in
    `mask`."""
    row = {int(c): j for j, c in enumerate(classes)}
    m = mask & np.isin(data.identity, classes)
    return fit_linear(e[m], np.array([row[int(i)] for i in data.identity[m]]), len(classes))


def ship_mask(data) -> np.ndarray:
    """The pictures a bundle knows its characters by: every characters/ picture, and the faces/ 'train' and
    'calib' splits (the 'val' split stays for measuring)."""
    split = face_splits(data)
    return (data.origin == "chars") | ((data.origin == "faces") & np.isin(split, ["train", "calib"]))


def face_splits(data) -> np.ndarray:
    """Each picture's faces/ split ('' for characters/ pictures)."""
    faces_meta = json.loads((dataset.FACES_CACHE / "faces_meta.json").read_text())
    return np.array(faces_meta["split"] + [""] * (len(data.identity) - len(faces_meta["split"])))


def embedded(emb: Embedder, images: np.ndarray, cache: Path) -> np.ndarray:
    """`images` through the bundle's encoder (the serving Embedder), cached by the graph's checksum."""
    if cache.exists():
        return np.load(cache)
    print(f"embedding {len(images)} crops ...", flush=True)
    e = embed_crops(emb, images)
    np.save(cache, e)
    return e


def measure_and_write(args, base: dict, enc_spec: dict, enc: EncoderSpec, emb: Embedder, compares: list[dict],
                      data, e: np.ndarray, Wp: np.ndarray, b: np.ndarray, base_clf: dict, run_dir: Path,
                      made_by: dict, measured_labels: list[str] | None = None, shipped: tuple | None = None) -> None:
    """Calibrate, measure and write the bundle in `args.out` (its encoder.onnx and encoder_export.json already
    there): `e` every cached crop's embedding, `Wp`/`b` the linear classifier over the whole embedding that is
    measured, over `measured_labels` (default: the bundle's labels); `shipped` the (W, b) written (default: the
    measured one)."""
    t0 = time.time()
    out = args.out
    view = ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": compares}, enc.blocks).view
    eg = view.apply(e)  # what galleries compare
    labels32 = json.loads((args.base / base["labels"]).resolve().read_text())
    labels_m = list(measured_labels) if measured_labels is not None else labels32
    temperature = float(base_clf.get("temperature", 1.0)) or 1.0
    lin = (e @ Wp.T + b) / temperature  # the linear logits as inference/classify.py computes them

    tags = [lab.tag for lab in data.labels]
    col = {t: i for i, t in enumerate(tags)}
    f_split = face_splits(data)
    half = np.array([post_bucket(data.labels[i].tag, "calib-half") < 0.5 for i in data.identity])

    # measurement: prototypes of the training pictures only (what the encoder and the gallery saw)
    ids, protos = prototypes(eg, data, data.train)
    protos = view.pool(protos)  # as a gallery pools (inference/gallery.py)
    # the hubness correction (manifest.HubSpec): its centre is the measured prototypes' mean, and the shipped
    # offsets use it too, so that the calibration below holds for them
    hub, off = None, np.zeros(len(protos), np.float32)
    if args.hub_weight > 0:
        raw = hub_offsets(protos, protos, HubSpec(args.hub_k, 1.0, 0.0), exclude_self=True)  # the k-mean cosines
        hub = HubSpec(args.hub_k, args.hub_weight, round(float(raw.mean()), 6))
        off = (hub.weight * (raw - hub.centre)).astype(np.float32)  # = hub_offsets(protos, protos, hub, True)
        print(f"hubness correction: k {hub.k}, weight {hub.weight}, centre {hub.centre}; offsets "
              f"{off.min():.4f} .. {off.max():.4f}", flush=True)
    cos = eg @ protos.T - off
    y_col = np.searchsorted(ids, data.identity)  # column of the true identity among `ids` (if present)
    present = np.isin(data.identity, ids)
    lin_cols_m = np.searchsorted(ids, [col[t] for t in labels_m])
    sets = {
        # the faces/ characters' own splits, without the fan-art proxy's characters (they are measured apart: known
        # from one portrait here, as a bundle knows most characters)
        "faces_calib": (data.origin == "faces") & (f_split == "calib") & ~data.proxy_query,
        "unseen_outfit_calib": data.val_variant & half,
        "unseen_outfit": data.val_variant & ~half,
        "fanart_proxy": data.proxy_query,
        "faces_val": (data.origin == "faces") & (f_split == "val") & ~data.proxy_query,
    }
    for k, m in sets.items():
        sets[k] = m & present
    cal = calibrate([(lin[m], cos[m], y_col[m]) for m in (sets["faces_calib"], sets["unseen_outfit_calib"])],
                    lin_cols_m)
    print("calibration:", json.dumps(cal), flush=True)
    metrics = {"known_identities_measured": int(len(ids)), "calibration": cal}
    for k, m in sets.items():
        p = scores(lin[m], cos[m], lin_cols_m, cal["scale"], cal["bias"], cal["mode"])
        metrics[k] = top(p, y_col[m])
        metrics[k + "_gallery_only"] = top(cos[m], y_col[m])
    # new characters enrolled with 10 shots: the faces/ characters the general encoder never saw a face of (it
    # knows them from one portrait), taught 10 training faces each, queried with their 'val' faces among all
    # known characters (general embedding, as an enrolled gallery is compared), 5 draws
    rng = np.random.default_rng(0)
    accs = []
    proxy_ids = [i for i in np.unique(data.identity[data.proxy_query])]
    for _ in range(5):
        p10, o10 = protos.copy(), off.copy()
        q, qy = [], []
        for c in proxy_ids:
            pool = np.where(data.proxy_query & (data.identity == c) & (f_split == "train"))[0]
            val = np.where(data.proxy_query & (data.identity == c) & (f_split == "val"))[0]
            if len(pool) < 10 or not len(val):
                continue
            shots = rng.choice(pool, 10, replace=False)
            v = eg[shots].mean(0)
            j = np.searchsorted(ids, c)
            p10[j] = view.pool(v[None])[0]
            if hub is not None:  # taught: corrected against the known prototypes, as classify.py does
                o10[j] = hub_offsets(p10[j][None], protos, hub)[0]
            q.append(val)
            qy.append(np.full(len(val), j))
        q, qy = np.concatenate(q), np.concatenate(qy)
        accs.append(top(eg[q] @ p10.T - o10, qy))
    metrics["enrolled_10_shots"] = {"top1": round(float(np.mean([a["top1"] for a in accs])), 4),
                                    "top3": round(float(np.mean([a["top3"] for a in accs])), 4),
                                    "n": accs[0]["n"], "characters": len(proxy_ids), "draws": len(accs)}
    print("enrolled 10 shots:", metrics["enrolled_10_shots"], flush=True)

    # the known/unknown decision: characters/ held out whole (never trained on, not in the gallery) are unknown
    from inference.characters import KnownGallery
    from inference.decide import features as decision_features
    from inference.decide import known_scores

    probe_spec = ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": compares,
                                       "temperature": temperature}, enc.blocks)
    probe = Classifier(probe_spec, labels_m,
                       weights=(Wp, b),
        known=KnownGallery([str(i) for i in ids], protos, cal["scale"], cal["bias"], cal["mode"], hub,
                           off if hub is not None else None))
    unknown_m = data.heldout_char
    groups = {"calib": (sets["faces_calib"] | sets["unseen_outfit_calib"], unknown_m & half),
              "report": (sets["faces_val"] | sets["unseen_outfit"], unknown_m & ~half)}
    dec_in = {}
    for name, (known_m, unk_m) in groups.items():
        m = known_m | unk_m
        p = scores(lin[m], cos[m], lin_cols_m, cal["scale"], cal["bias"], cal["mode"])
        correct = np.where(unknown_m[m], False, p.argmax(1) == y_col[m])
        f = decision_features(e[m], p.max(1), probe, None, DECISION_FEATURES)
        dec_in[name] = (f, correct, unknown_m[m])
    np.savez(out.parent / f"{out.name}_decision_inputs.npz",  # for trying other decisions offline
             **{f"{h}_{k}": v for h, t in dec_in.items() for k, v in zip(("features", "correct", "unknown"), t)})
    from inference.decide import FEATURES, Decision

    # shipped: the decision fitted on both halves' heads; its honest estimate: each half scored by the decision
    # fitted on the other half alone (2-fold cross-fitting)
    both = [np.concatenate([dec_in["calib"][i], dec_in["report"][i]]) for i in range(3)]
    decision = fit_decision(both[0], both[1].astype(float), both[2], MAX_UNKNOWN_NAMED)
    dec = Decision.from_manifest(decision)
    metrics["decision"] = {"fitted": decision, "max_unknown_named": MAX_UNKNOWN_NAMED, "in_sample": decision_numbers(known_scores(dec, both[0]), both[1],
                                                                            both[2], dec.threshold)}
    hist = {}
    for name, other in (("calib", "report"), ("report", "calib")):
        f, correct, unk = dec_in[name]
        fo, co, uo = dec_in[other]
        for suffix, cols, feats in (("", slice(None), DECISION_FEATURES), ("_first_three_features", slice(0, 3),
                                                                            FEATURES)):
            d = Decision.from_manifest(fit_decision(fo[:, cols], co.astype(float), uo, MAX_UNKNOWN_NAMED, feats))
            sc = known_scores(d, f[:, cols])
            metrics["decision"][name + suffix] = decision_numbers(sc, correct, unk, d.threshold)
            if not suffix:
                hist[name] = (sc[~unk], sc[unk], d.threshold)
        metrics["decision"][name + "_top1_probability_only"] = {
            "auroc_known_vs_unknown": round(auroc(f[~unk, 0], f[unk, 0]), 4)}
    named = [(hist[h][0] >= hist[h][2], hist[h][1] >= hist[h][2]) for h in ("calib", "report")]
    right = np.concatenate([dec_in[h][1][~dec_in[h][2]] for h in ("calib", "report")])
    metrics["decision"]["cross_fitted"] = {  # both halves, each scored by the other's fit
        "unknown_named": round(float(np.concatenate([u for _, u in named]).mean()), 4),
        "known_named_right": round(float((np.concatenate([k for k, _ in named]) & right).mean()), 4),
        "known_named_wrong": round(float((np.concatenate([k for k, _ in named]) & ~right).mean()), 4),
        "unknown_heads": int(sum(len(u) for _, u in named)), "known_heads": int(len(right))}
    # unlabeled/: 12,000 face crops of game art, no identities (some may be characters the bundle knows): how many
    # are named at the threshold, an upper bound on what the decision names of heads it should not know
    eu = embedded(emb, np.load(dataset.FACES_CACHE / "unlabeled_96.npy"),
                  run_dir / f"unlabeled_{sha256_file(out / 'encoder.onnx')[:12]}.npy")
    pu = scores((eu @ Wp.T + b) / temperature, view.apply(eu) @ protos.T - off, lin_cols_m, cal["scale"],
                cal["bias"], cal["mode"])
    su = known_scores(dec, decision_features(eu, pu.max(1), probe, None, DECISION_FEATURES))
    metrics["decision"]["unlabeled_named"] = {"named": round(float((su >= dec.threshold).mean()), 4),
                                              "crops": int(len(eu))}
    print("decision:", json.dumps(metrics["decision"]), flush=True)
    np.savez(run_dir / "decision_scores.npz", known=hist["report"][0], unknown=hist["report"][1],
             threshold=hist["report"][2])

    src = data.source
    m = sets["unseen_outfit"] | sets["unseen_outfit_calib"]
    p_all = scores(lin[m], cos[m], lin_cols_m, cal["scale"], cal["bias"], cal["mode"])
    per = {}
    for s in sorted(set(src[m])):
        sm = src[m] == s
        per[s] = top(p_all[sm], y_col[m][sm])
    metrics["unseen_outfit_per_source"] = per
    print(json.dumps(metrics, indent=1), flush=True)

    # the shipped gallery: every picture of every character (faces/: its train and calib splits)
    sids, sprotos = prototypes(eg, data, ship_mask(data))
    sprotos = view.pool(sprotos)
    names = [tags[i] for i in sids]
    write_known(out / "known.npz", names, sprotos, hub)
    write_characters(out / "characters.json", data.labels, set(names) | set(labels32))
    W_ship, b_ship = shipped if shipped is not None else (Wp, b)
    np.savez(out / "classifier.npz", W=W_ship, b=b_ship)
    shutil.copy2((args.base / base["labels"]).resolve(), out / "chara.json")

    manifest = dict(base)
    manifest["labels"] = "chara.json"
    manifest["version"] = args.version
    manifest["encoder"] = {**enc_spec, "sha256": sha256_file(out / "encoder.onnx")}
    manifest["classifier"] = {**base_clf, "sha256": sha256_file(out / "classifier.npz"),
                              "gallery_scale": cal["scale"], "gallery_bias": cal["bias"], "gallery_compares": compares}
    manifest["known"] = {"file": "known.npz", "sha256": sha256_file(out / "known.npz"), "characters": len(names),
                         "scale": cal["scale"], "bias": cal["bias"], "mode": cal["mode"]}
    if hub is not None:
        manifest["known"]["hub"] = {"k": hub.k, "weight": hub.weight, "centre": hub.centre}
    manifest["characters"] = {"file": "characters.json", "sha256": sha256_file(out / "characters.json")}
    manifest["decision"] = decision
    manifest["metrics"] = {**base.get("metrics", {}), "coverage": metrics,
                           "general_encoder": made_by}
    if manifest.pop("verifier", None) is not None:  # fitted on the base encoder's embeddings: it must be refitted
        print(f"the base bundle's head verifier is dropped (another encoder); refit it on this one: "
              f"python -m training.detector.verifier --bundle {out}")
    write_manifest(out / "manifest.json", manifest)
    print(f"bundle {out} in {time.time() - t0:.0f}s ({len(names)} known characters + {len(labels32)} "
          f"classifier classes)")


if __name__ == "__main__":
    main()
