"""Stage 4: the many-character bundle, built from a committed config (training/general/configs/bundle/NAME.toml).

    python -m training.general.bundle training/general/configs/bundle/mnv2t.toml [--out DIR]
    python -m training.general.bundle --install runs/general/bundle_mnv2t8   # make it the default bundle
    python -m training.general.bundle RUN [--base models] [--out DIR] [--version V] [--compares ...] [--hub-k K]
        [--hub-weight W]      # the same build from flags, as the earlier bundles were built (a `Config` of them)

`build` runs the stages, one function each, from the config's run (runs/general/RUN) and base bundle (`base`: its
detector, label list, encoder crop, and for a composed run its encoder and classifier):

1. compose: the bundle's encoder in `out`, and its embeddings of every cached crop (runs/encoder/faces_*.npy,
   runs/general/chars_*.npy) through `inference.embed.Embedder`, the serving code. A pretrained encoder's run
   (`training.general.export RUN` wrote runs/general/RUN/encoder.onnx) is the whole encoder, one block, and the linear
   classifier over the 32 faces/ characters is refitted on its embeddings (`pretrained_encoder`,
   `refitted_classifier`). A from-scratch run (general_export.json) is composed with the base bundle's encoder
   (compose.py): output [general | closed], declared as `encoder.blocks`; the base linear classifier reads the
   `closed` block (its weights padded with zeros) (`composed_encoder`, `closed_classifier`). Galleries compare the
   view `compares` names (`classifier.gallery_compares`; by default a pretrained encoder's one block, or the general
   block, the closed encoder's embedding and its colour histogram, equally weighted);
2. calibrate the known characters' `scale` and `bias` against the linear classifier on two calibration sets
   (faces/ 'calib' of the 32 classifier characters; half of the held-out outfits, chosen by a hash of the tag),
   maximising the mean top-1 of the two (`measuring_gallery`, `scored_heads`, `measuring_sets`, `calibrate`);
3. measure, with prototypes built from the training pictures only: unseen outfits (the other half), the fan-art
   proxy, the 32 characters' faces/ 'val' (`measure_sets`), new characters enrolled with 10 shots
   (`enrolled_shots`), unseen outfits per source (`per_source`);
4. decide: fit the known/unknown decision on both halves' heads and measure it cross-fitted
   (`decision_inputs`, `fit_and_crossfit_decision`), and count what it names of unlabeled crops (`unlabeled_named`);
5. write the bundle with prototypes from *every* picture (what the bundle knows), `characters.json` (who each one
   is), the classifier and the numbers in the manifest (`write_bundle`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from inference.bundle import make_session, sha256_file
from inference.characters import KnownGallery, hub_offsets
from inference.classify import Classifier, mix
from inference.decide import FEATURES, Decision, known_scores
from inference.decide import features as decision_features
from inference.embed import Embedder
from inference.manifest import ClassifierSpec, EncoderSpec, GalleryView, HubSpec
from training.common import ROOT, load_config, post_bucket
from training.general import dataset
from training.general.compose import compose_files
from training.general.evaluate import prototypes
from training.manifest import write_manifest

VERSION = "2026.12.07.2"
# what a composed bundle's galleries compare (classifier.gallery_compares): the mean of three cosines. Chosen on the
# 'calib' half of the unseen outfits only (gallery alone, top-1): general .578, + colour .635, + closed embedding and
# colour .672
COMPARES = ("general", "closed.embedding", "closed.colour")
# the hubness correction (manifest.HubSpec, inference/characters.py), off by default: each prototype's cosines lowered
# by hub_weight x (the mean of its hub_k largest cosines to the other prototypes - their mean). Chosen on the
# 'calib' half only (g64m's cached embeddings; k 10/30/100/300, weight .25/.5/.75): k 100, weight .5 took unseen
# outfits .686 -> .706 there. The report half did not follow (bundle_hub in the model card's "Tried, not shipped":
# unseen outfits .623 -> .619, 10 shots .894/.971 -> .853/.914, known named right .752 -> .738), so no bundle has it
HUB_K, HUB_WEIGHT = 100, 0.0
CONFIGS = ROOT / "training/general/configs/bundle"


@dataclass(frozen=True)
class Config:
    """A bundle build (training/general/configs/bundle/NAME.toml); paths relative to the repository root."""

    run: str  # runs/general/RUN: the exported encoder's run (training/general/configs/RUN.toml trained it)
    out: str = "runs/general/bundle"  # the built bundle (replaced)
    version: str = VERSION
    base: str = "models"  # the bundle it starts from (detector, label list, encoder crop; composed: encoder, classifier)
    # what galleries compare (`classifier.gallery_compares`: blocks or block.part, equally weighted); empty: the
    # encoder's own (a pretrained encoder's embedding, and its colour block at the weight `choose_compares` picks
    # on the 'calib' halves; a composed one's COMPARES)
    compares: tuple[str, ...] = ()
    hub_k: int = HUB_K  # the hubness correction's neighbours
    hub_weight: float = HUB_WEIGHT  # the hubness correction's weight; 0: none

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return load_config(cls, path)

    @property
    def out_dir(self) -> Path:
        return ROOT / self.out

    @property
    def base_dir(self) -> Path:
        return ROOT / self.base

    @property
    def run_dir(self) -> Path:
        return dataset.OUT / self.run


def embed_crops(emb: Embedder, imgs96: np.ndarray, bs: int = 128) -> np.ndarray:
    """Crops `imgs96` (uint8, any square size) resized to the encoder's input and embedded, `bs` at a time."""
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
    """Top-1 and top-`k` accuracy of the scores `p` (one row per picture) against the true columns `y`."""
    if len(y) == 0:
        return {"top1": None, "top3": None, "n": 0}
    rank = np.argsort(-p, axis=1)[:, :k]
    hit = rank == y[:, None]
    return {"top1": round(float(hit[:, 0].mean()), 4), "top3": round(float(hit.any(1).mean()), 4), "n": int(len(y))}


def calibrate(sets: list[tuple], lin_cols: np.ndarray) -> dict:
    """(mode, scale, bias) maximising the mean top-1 over `sets` [(linear logits, cosines, true column)], ties broken
    by the mean NLL. Both ways of combining (see `scores`) are tried. A set may carry its own classifier's gallery
    columns as a fourth element (else `lin_cols`)."""
    best = None
    grid = [("gate", scale, 0.0) for scale in (4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0)]
    grid += [("joint", scale, float(bias)) for scale in (8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 40.0)
             for bias in np.arange(-24.0, 12.01, 1.0)]
    for mode, scale, bias in grid:
        acc, nll = [], []
        for lin, cos, y, *own in sets:
            p = scores(lin, cos, own[0] if own else lin_cols, scale, bias, mode)
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
    """What the decision (known scores `score`, named at `threshold`) does: the share of unknown heads named, of
    known heads named right and named wrong, and the AUROC of known against unknown."""
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



# the pretrained encoder's input: RGB in [-1, 1] (training/general/features.py `to_input`), 128 px, squashed
PRETRAINED_INPUT = {"name": "input0", "color": "RGB", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                    "resize": "squash"}


def fit_linear(x: np.ndarray, y: np.ndarray, classes: int, wd: float = 1e-4, iters: int = 200) -> tuple:
    """Multinomial logistic regression (L-BFGS, a small ridge) of `classes` labels `y` on unit embeddings `x`:
    (W (classes, D), b) as `classifier.npz` holds them."""
    import torch

    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    lin = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():  # from zero, not a random start: the same bundle from the same embeddings (a convex fit)
        lin.weight.zero_()
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin.weight.detach().numpy().astype(np.float32), lin.bias.detach().numpy().astype(np.float32)


# the colour block's weight in what a pretrained encoder's galleries compare, tried in this order (0: the embedding
# alone); the first of equal ones is kept
COLOUR_WEIGHTS = (0.0, 0.15, 0.25, 0.35, 0.5)


def choose_compares(e: np.ndarray, data, blocks: tuple) -> list[dict]:
    """`classifier.gallery_compares` of a pretrained encoder with a colour block (`encoder.blocks` `embedding`,
    `colour`): the colour weight of `COLOUR_WEIGHTS` with the best mean top-1 of the gallery alone on the two
    'calib' halves (faces/ 'calib' of the faces/ characters, the 'calib' half of the unseen outfits), prototypes of
    the training pictures. The 'report' halves are never looked at."""
    ids = np.unique(data.identity[data.train])
    y = np.searchsorted(ids, data.identity)
    split, half = face_splits(data), calib_half(data)
    calib = [(data.origin == "faces") & (split == "calib") & ~data.proxy_query, data.val_variant & half]
    best = None
    for w in COLOUR_WEIGHTS:
        compares = [{"part": "embedding", "weight": round(1.0 - w, 4)}] + ([{"part": "colour", "weight": w}] if w else [])
        view = ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": compares}, blocks).view
        eg = view.apply(e)
        _, protos = prototypes(eg, data, data.train)
        protos = view.pool(protos)
        acc = float(np.mean([top(eg[m] @ protos.T, y[m])["top1"] for m in calib]))
        print(f"colour weight {w}: 'calib' top-1, gallery alone, {acc:.4f}", flush=True)
        if best is None or acc > best[0]:
            best = (acc, compares)
    return best[1]


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


@dataclass(frozen=True)
class Encoder:
    """The bundle's encoder, its graph already in the bundle's folder: its manifest section (less the checksum), the
    serving embedder, what galleries compare, and what made it (the manifest's metrics.general_encoder)."""

    spec: dict
    parsed: EncoderSpec
    embedder: Embedder
    compares: list[dict]
    made_by: dict

    @property
    def view(self) -> GalleryView:
        """What galleries compare of an embedding, and how they pool prototypes (`classifier.gallery_compares`)."""
        return ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": self.compares}, self.parsed.blocks).view


@dataclass(frozen=True)
class Linear:
    """The bundle's linear classifier: `measured` (W, b) over the labels `labels` (its rows, in order), what the
    numbers are measured with; `shipped` (W, b), what classifier.npz holds; `section` its manifest section before
    the calibration's keys and the checksum."""

    measured: tuple[np.ndarray, np.ndarray]
    labels: list[str]
    shipped: tuple[np.ndarray, np.ndarray]
    section: dict

    @property
    def temperature(self) -> float:
        return float(self.section.get("temperature", 1.0)) or 1.0

    def logits(self, e: np.ndarray) -> np.ndarray:
        """The measured classifier's logits of embeddings `e`, as inference/classify.py computes them."""
        W, b = self.measured
        return (e @ W.T + b) / self.temperature


def gallery_compares(parts: tuple[str, ...] | list[str]) -> list[dict]:
    """`classifier.gallery_compares` of the blocks or parts `parts`, equally weighted."""
    return [{"part": p, "weight": 1.0} for p in parts]


def is_pretrained(run_dir: Path) -> bool:
    """Whether the run is a pretrained encoder's (its export holds the whole encoder) rather than a from-scratch one
    to compose with the base bundle's."""
    export_info = run_dir / "encoder_export.json"
    return export_info.exists() and "encoder" in json.loads(export_info.read_text())


def fresh_bundle(base_dir: Path, out: Path) -> None:
    """An empty bundle folder `out` (an old one replaced) with the base bundle's detector."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(base_dir / "detector.onnx", out / "detector.onnx")


def graph_key(out: Path) -> str:
    """The bundle's encoder graph's checksum, short: the key of the embedding caches it made."""
    return sha256_file(out / "encoder.onnx")[:12]


def composed_encoder(cfg: Config, base: dict, run_dir: Path, out: Path) -> Encoder:
    """Compose the base bundle's encoder with the from-scratch run's `general.onnx` (compose.py) into
    `out`/encoder.onnx: output [general | closed], declared as `encoder.blocks` (the closed block with its parts);
    its `encoder_export.json` says what made each block."""
    info = json.loads((run_dir / "general_export.json").read_text())
    blocks = compose_files(cfg.base_dir / base["encoder"]["file"], run_dir / "general.onnx", out / "encoder.onnx",
                           base["encoder"]["dim"], info["dim"])
    base_info = json.loads((cfg.base_dir / "encoder_export.json").read_text())
    blocks[1]["parts"] = closed_parts(base_info)
    g_dims, c_dims = blocks[0]["dims"], blocks[1]["dims"]
    spec = {**base["encoder"], "file": "encoder.onnx", "dim": g_dims + c_dims, "blocks": blocks}
    enc = EncoderSpec.parse(spec)
    (out / "encoder_export.json").write_text(json.dumps(export_record(out, blocks, info, base_info), indent=1) + "\n")
    return Encoder(spec, enc, Embedder(enc, make_session(out / "encoder.onnx", 2)),
                   gallery_compares(cfg.compares or COMPARES),
                   {k: info[k] for k in ("run", "steps", "size", "dim", "bytes")})


def closed_classifier(base: dict, base_dir: Path, encoder: Encoder, labels: list[str]) -> Linear:
    """The base bundle's linear classifier, reading the composed embedding's `closed` block (its weights padded with
    zeros over the general block); measured and shipped alike."""
    with np.load(base_dir / base["classifier"]["file"]) as z:
        W, b = np.asarray(z["W"], np.float32), np.asarray(z["b"], np.float32)
    g_dims = encoder.spec["blocks"][0]["dims"]  # the general block, first
    Wp = np.concatenate([np.zeros((len(W), g_dims), np.float32), W], axis=1)
    section = {k: v for k, v in base["classifier"].items() if k not in ("gallery_dims", "gallery_compatible")}
    return Linear((Wp, b), labels, (Wp, b), section)


def pretrained_encoder(cfg: Config, base: dict, run_dir: Path, out: Path) -> Encoder:
    """A pretrained encoder's run: its graph (runs/general/RUN/encoder.onnx, from `training.general.export RUN`),
    copied with its export info, is the whole encoder, one block; its input as the pretrained encoder's
    (`PRETRAINED_INPUT`), its crop (and whole-picture framing) the base bundle's."""
    info = json.loads((run_dir / "encoder_export.json").read_text())
    shutil.copy2(run_dir / "encoder.onnx", out / "encoder.onnx")
    (out / "encoder_export.json").write_text(json.dumps(info, indent=1) + "\n")
    size = int(info["size"])
    spec = {"crop": base["encoder"]["crop"], "file": "encoder.onnx",
            "input": {**PRETRAINED_INPUT, "size": [size, size]}, "output": "embedding", "dim": int(info["dim"]),
            "batch": "dynamic", "blocks": info["blocks"]}
    if "whole_image" in base["encoder"]:  # how a whole picture is framed as a head: the detector's, kept
        spec["whole_image"] = base["encoder"]["whole_image"]
    enc = EncoderSpec.parse(spec)
    return Encoder(spec, enc, Embedder(enc, make_session(out / "encoder.onnx", 2)),
                   gallery_compares(cfg.compares or (info["blocks"][0]["name"],)),
                   {k: info[k] for k in ("run", "steps", "size", "dim", "bytes", "encoder")})


def pretrained_embeddings(encoder: Encoder, data, run_dir: Path, out: Path) -> np.ndarray:
    """Every cached crop's embedding by the pretrained encoder: a head run's own (from the cached taps), checked
    against the served graph on 256 crops, else through the served graph (cached by its checksum)."""
    if not (run_dir / "head.pt").exists():
        return embedded(encoder.embedder, data.images, run_dir / f"embeddings_{graph_key(out)}.npy")
    e = np.load(run_dir / "embeddings.npy")
    pick = np.random.default_rng(0).choice(len(e), 256, replace=False)
    served = embed_crops(encoder.embedder, data.images[pick])
    agree = float((served * e[pick]).sum(1).min())
    print(f"served graph vs the head's embeddings, 256 crops: min cosine {agree:.5f}", flush=True)
    if agree < 0.999:
        raise SystemExit("the exported encoder does not give the head's embeddings: export the run again")
    return e


def refitted_classifier(e: np.ndarray, data, base: dict, labels: list[str]) -> Linear:
    """The linear classifier over the 32 faces/ characters `labels`, fitted twice on the pretrained encoder's
    embeddings. Measured: on the training pictures (`data.train`), without the fan-art proxy's characters (known
    from one portrait, they stand for the characters a bundle knows from one picture, which no classifier covers;
    as a class fitted on one portrait, in 'gate' mode the classifier handed their heads to its better-known
    characters). Shipped: on every picture, as the known prototypes are (`ship_mask`)."""
    col = {lab.tag: i for i, lab in enumerate(data.labels)}
    measured = [t for t in labels if not data.proxy_identity[col[t]]]
    W_m, b_m = fit_on(e, data, data.train, [col[t] for t in measured])
    W, b = fit_on(e, data, ship_mask(data), [col[t] for t in labels])
    # the home prior of taught characters is kept; it was chosen for the base encoder's calibration, so
    # `python -m training.general.teach --fit` must check it on this bundle before it ships
    section = {"file": "classifier.npz", "format": "linear_npz", "temperature": 1.0,
               **{k: base["classifier"][k] for k in ("home_prior",) if k in base["classifier"]}}
    return Linear((W_m, b_m), measured, (W, b), section)


@dataclass(frozen=True)
class MeasuringGallery:
    """The known characters as measured: `ids` (identities, sorted) and the unit prototypes of their training
    pictures only (what the encoder and the gallery saw), pooled as a gallery pools them; with a hubness correction
    `hub` and each prototype's offset (`off`, zeros without one)."""

    ids: np.ndarray
    protos: np.ndarray
    off: np.ndarray
    hub: HubSpec | None


def measuring_gallery(eg: np.ndarray, data, view: GalleryView, hub_k: int, hub_weight: float) -> MeasuringGallery:
    """The measuring gallery of the compared embeddings `eg`. The hubness correction (manifest.HubSpec, with
    `hub_weight` > 0): its centre is the measured prototypes' mean, and the shipped offsets use it too, so that the
    calibration holds for them."""
    ids, protos = prototypes(eg, data, data.train)
    protos = view.pool(protos)  # as a gallery pools (inference/gallery.py)
    hub, off = None, np.zeros(len(protos), np.float32)
    if hub_weight > 0:
        raw = hub_offsets(protos, protos, HubSpec(hub_k, 1.0, 0.0), exclude_self=True)  # the k-mean cosines
        hub = HubSpec(hub_k, hub_weight, round(float(raw.mean()), 6))
        off = (hub.weight * (raw - hub.centre)).astype(np.float32)  # = hub_offsets(protos, protos, hub, True)
        print(f"hubness correction: k {hub.k}, weight {hub.weight}, centre {hub.centre}; offsets "
              f"{off.min():.4f} .. {off.max():.4f}", flush=True)
    return MeasuringGallery(ids, protos, off, hub)


@dataclass(frozen=True)
class Heads:
    """Every cached picture as the bundle scores it: `lin` the measured classifier's logits, `cos` the cosines to
    the measuring gallery's prototypes (less their offsets), `y` the column of each picture's identity among the
    gallery's, `lin_cols` the gallery column of each linear class."""

    lin: np.ndarray
    cos: np.ndarray
    y: np.ndarray
    lin_cols: np.ndarray

    def probabilities(self, m: np.ndarray, cal: dict) -> np.ndarray:
        """Per-name probabilities of the pictures `m` under the calibration `cal` (`scores`, serving's formula)."""
        return scores(self.lin[m], self.cos[m], self.lin_cols, cal["scale"], cal["bias"], cal["mode"])


def scored_heads(e: np.ndarray, eg: np.ndarray, clf: Linear, gallery: MeasuringGallery, data) -> Heads:
    """`Heads` of the embeddings `e` (`eg`: what galleries compare of them)."""
    col = {lab.tag: i for i, lab in enumerate(data.labels)}
    return Heads(clf.logits(e), eg @ gallery.protos.T - gallery.off, np.searchsorted(gallery.ids, data.identity),
                 np.searchsorted(gallery.ids, [col[t] for t in clf.labels]))


def calib_half(data) -> np.ndarray:
    """Each picture's half (True: 'calib', else 'report'), by a hash of its character's tag."""
    return np.array([post_bucket(data.labels[i].tag, "calib-half") < 0.5 for i in data.identity])


def measuring_sets(data, f_split: np.ndarray, half: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """The measured sets (masks), of the pictures whose identity the measuring gallery has (`present`): the faces/
    characters' own splits, without the fan-art proxy's characters (they are measured apart: known from one portrait
    here, as a bundle knows most characters), the unseen outfits' two halves, the fan-art proxy."""
    sets = {
        "faces_calib": (data.origin == "faces") & (f_split == "calib") & ~data.proxy_query,
        "unseen_outfit_calib": data.val_variant & half,
        "unseen_outfit": data.val_variant & ~half,
        "fanart_proxy": data.proxy_query,
        "faces_val": (data.origin == "faces") & (f_split == "val") & ~data.proxy_query,
    }
    return {k: m & present for k, m in sets.items()}


def calibrate_known(heads: Heads, sets: dict[str, np.ndarray], outside: tuple | None = None) -> dict:
    """The known characters' calibration (`calibrate`) on the calibration sets: faces/ 'calib' and the unseen
    outfits' 'calib' half; with `outside` ((`Heads`, mask) of `outside_classifier`), also faces/ 'calib' of
    characters that classifier does not cover."""
    cal = [(heads.lin[m], heads.cos[m], heads.y[m]) for m in (sets["faces_calib"], sets["unseen_outfit_calib"])]
    if outside is not None:
        h, m = outside
        cal.append((h.lin[m], h.cos[m], h.y[m], h.lin_cols))
    return calibrate(cal, heads.lin_cols)


def outside_classifier(e: np.ndarray, eg: np.ndarray, clf: Linear, gallery: MeasuringGallery, data,
                       sets: dict[str, np.ndarray]) -> tuple:
    """A calibration set for what a user meets most: a character no classifier covers, drawn in the style the
    classifier was fitted on (fan art). The measured classifier's characters are split in two by a hash of the tag;
    a classifier fitted on the first half's training pictures scores the second half's faces/ 'calib' pictures,
    which the gallery knows by their training pictures. At a low scale, 'gate' mode hands such heads to the
    classifier's characters (the fan-art proxy: .237 at scale 20, .150 at 12, on mnv2t with colour); this set
    weighs that in. Returns (`Heads` under that classifier, the set's mask); the fan-art proxy is never used."""
    col = {lab.tag: i for i, lab in enumerate(data.labels)}
    inside = [t for t in clf.labels if post_bucket(t, "classifier-half") < 0.5]
    out_ids = [col[t] for t in clf.labels if t not in inside]
    W, b = fit_on(e, data, data.train, [col[t] for t in inside])
    half = Linear((W, b), inside, (W, b), clf.section)
    return scored_heads(e, eg, half, gallery, data), sets["faces_calib"] & np.isin(data.identity, out_ids)


def measure_sets(heads: Heads, sets: dict[str, np.ndarray], cal: dict) -> dict:
    """Top-1/top-3 of each set: the bundle's ranking (classifier and gallery, calibrated by `cal`) as `NAME`, the
    gallery comparison alone as `NAME_gallery_only`."""
    metrics = {}
    for k, m in sets.items():
        metrics[k] = top(heads.probabilities(m, cal), heads.y[m])
        metrics[k + "_gallery_only"] = top(heads.cos[m], heads.y[m])
    return metrics


def enrolled_shots(eg: np.ndarray, data, f_split: np.ndarray, gallery: MeasuringGallery, view: GalleryView,
                   shots: int = 10, draws: int = 5, seed: int = 0) -> dict:
    """New characters enrolled with `shots` shots: the fan-art proxy's faces/ characters (the general encoder never
    saw a face of them; it knows them from one portrait), each taught `shots` of its 'train' faces in place of its
    prototype, queried with its 'val' faces among all known characters (the gallery comparison, as an enrolled
    gallery is compared), `draws` draws; the mean top-1/top-3."""
    rng = np.random.default_rng(seed)
    ids, protos, off, hub = gallery.ids, gallery.protos, gallery.off, gallery.hub
    accs = []
    proxy_ids = [i for i in np.unique(data.identity[data.proxy_query])]
    for _ in range(draws):
        p10, o10 = protos.copy(), off.copy()
        q, qy = [], []
        for c in proxy_ids:
            pool = np.where(data.proxy_query & (data.identity == c) & (f_split == "train"))[0]
            val = np.where(data.proxy_query & (data.identity == c) & (f_split == "val"))[0]
            if len(pool) < shots or not len(val):
                continue
            picked = rng.choice(pool, shots, replace=False)
            v = eg[picked].mean(0)
            j = np.searchsorted(ids, c)
            p10[j] = view.pool(v[None])[0]
            if hub is not None:  # taught: corrected against the known prototypes, as classify.py does
                o10[j] = hub_offsets(p10[j][None], protos, hub)[0]
            q.append(val)
            qy.append(np.full(len(val), j))
        q, qy = np.concatenate(q), np.concatenate(qy)
        accs.append(top(eg[q] @ p10.T - o10, qy))
    return {"top1": round(float(np.mean([a["top1"] for a in accs])), 4),
            "top3": round(float(np.mean([a["top3"] for a in accs])), 4),
            "n": accs[0]["n"], "characters": len(proxy_ids), "draws": len(accs)}


def per_source(p: np.ndarray, y: np.ndarray, source: np.ndarray) -> dict:
    """Top-1/top-3 of the probabilities `p` (true columns `y`) per source of the pictures (`source`), sources
    sorted."""
    return {s: top(p[source == s], y[source == s]) for s in sorted(set(source))}


def decision_probe(encoder: Encoder, clf: Linear, gallery: MeasuringGallery, cal: dict) -> Classifier:
    """The serving classifier (`inference.classify.Classifier`) of the measured classifier and the measuring
    gallery, calibrated by `cal`: what the decision's features are computed with."""
    spec = ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": encoder.compares,
                                 "temperature": clf.temperature}, encoder.parsed.blocks)
    known = KnownGallery([str(i) for i in gallery.ids], gallery.protos, cal["scale"], cal["bias"], cal["mode"],
                         gallery.hub, gallery.off if gallery.hub is not None else None)
    return Classifier(spec, clf.labels, weights=clf.measured, known=known)


def decision_inputs(e: np.ndarray, heads: Heads, cal: dict, probe: Classifier, sets: dict[str, np.ndarray],
                    unknown: np.ndarray, half: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per half ('calib', 'report'): the decision's features (`DECISION_FEATURES`) of its heads, whether each is
    named right, and whether it is unknown. Known heads: faces/ 'calib' or 'val' and the half's unseen outfits;
    unknown: the characters/ characters held out whole (`unknown`: never trained on, not in the gallery)."""
    groups = {"calib": (sets["faces_calib"] | sets["unseen_outfit_calib"], unknown & half),
              "report": (sets["faces_val"] | sets["unseen_outfit"], unknown & ~half)}
    dec_in = {}
    for name, (known_m, unk_m) in groups.items():
        m = known_m | unk_m
        p = heads.probabilities(m, cal)
        correct = np.where(unknown[m], False, p.argmax(1) == heads.y[m])
        f = decision_features(e[m], p.max(1), probe, None, DECISION_FEATURES)
        dec_in[name] = (f, correct, unknown[m])
    return dec_in


def save_decision_inputs(path: Path, dec_in: dict) -> None:
    """The decision's inputs of both halves, for trying other decisions offline."""
    np.savez(path, **{f"{h}_{k}": v for h, t in dec_in.items() for k, v in zip(("features", "correct", "unknown"), t)})


def fit_and_crossfit_decision(dec_in: dict, max_unknown_named: float = MAX_UNKNOWN_NAMED) -> tuple[dict, dict, tuple]:
    """The shipped decision, fitted on both halves' heads (`fit_decision`), and its numbers: in sample; the honest
    estimate, each half scored by the decision fitted on the other half alone (2-fold cross-fitting), with all the
    features and with the first three only; each half's AUROC of the top-1 probability alone; both halves
    cross-fitted together. Returns (the decision's manifest section, its numbers, the 'report' half's cross-fitted
    (known scores, unknown scores, threshold))."""
    both = [np.concatenate([dec_in["calib"][i], dec_in["report"][i]]) for i in range(3)]
    decision = fit_decision(both[0], both[1].astype(float), both[2], max_unknown_named)
    dec = Decision.from_manifest(decision)
    numbers = {"fitted": decision, "max_unknown_named": max_unknown_named,
               "in_sample": decision_numbers(known_scores(dec, both[0]), both[1], both[2], dec.threshold)}
    hist = {}
    for name, other in (("calib", "report"), ("report", "calib")):
        f, correct, unk = dec_in[name]
        fo, co, uo = dec_in[other]
        for suffix, cols, feats in (("", slice(None), DECISION_FEATURES),
                                    ("_first_three_features", slice(0, 3), FEATURES)):
            d = Decision.from_manifest(fit_decision(fo[:, cols], co.astype(float), uo, max_unknown_named, feats))
            sc = known_scores(d, f[:, cols])
            numbers[name + suffix] = decision_numbers(sc, correct, unk, d.threshold)
            if not suffix:
                hist[name] = (sc[~unk], sc[unk], d.threshold)
        numbers[name + "_top1_probability_only"] = {"auroc_known_vs_unknown": round(auroc(f[~unk, 0], f[unk, 0]), 4)}
    named = [(hist[h][0] >= hist[h][2], hist[h][1] >= hist[h][2]) for h in ("calib", "report")]
    right = np.concatenate([dec_in[h][1][~dec_in[h][2]] for h in ("calib", "report")])
    numbers["cross_fitted"] = {  # both halves, each scored by the other's fit
        "unknown_named": round(float(np.concatenate([u for _, u in named]).mean()), 4),
        "known_named_right": round(float((np.concatenate([k for k, _ in named]) & right).mean()), 4),
        "known_named_wrong": round(float((np.concatenate([k for k, _ in named]) & ~right).mean()), 4),
        "unknown_heads": int(sum(len(u) for _, u in named)), "known_heads": int(len(right))}
    return decision, numbers, hist["report"]


def unlabeled_named(eu: np.ndarray, view: GalleryView, clf: Linear, gallery: MeasuringGallery, lin_cols: np.ndarray,
                    cal: dict, probe: Classifier, decision: dict) -> dict:
    """unlabeled/: face crops of game art, no identities (some may be characters the bundle knows; `eu` their
    embeddings): the share the decision names, an upper bound on what it names of heads it should not know."""
    dec = Decision.from_manifest(decision)
    pu = scores(clf.logits(eu), view.apply(eu) @ gallery.protos.T - gallery.off, lin_cols, cal["scale"], cal["bias"],
                cal["mode"])
    su = known_scores(dec, decision_features(eu, pu.max(1), probe, None, DECISION_FEATURES))
    return {"named": round(float((su >= dec.threshold).mean()), 4), "crops": int(len(eu))}


def shipped_gallery(eg: np.ndarray, data, view: GalleryView) -> tuple[list[str], np.ndarray]:
    """The shipped known characters: (tags, pooled unit prototypes) of every picture of every character (faces/: its
    'train' and 'calib' splits; `ship_mask`)."""
    sids, sprotos = prototypes(eg, data, ship_mask(data))
    return [data.labels[i].tag for i in sids], view.pool(sprotos)


def write_bundle(cfg: Config, base: dict, labels: list[str], encoder: Encoder, clf: Linear, known: tuple, hub,
                 cal: dict, decision: dict, metrics: dict, data) -> None:
    """Write the bundle's files beside its encoder and detector (cfg.out): the known characters `known` (names,
    vectors) with the hubness correction `hub`, who they (and the classifier's `labels`) are, the shipped
    classifier, the label list, and the manifest (`write_manifest`: checked as serving parses it) with the
    calibration, the decision and the numbers."""
    out, names = cfg.out_dir, known[0]
    write_known(out / "known.npz", names, known[1], hub)
    write_characters(out / "characters.json", data.labels, set(names) | set(labels))
    W, b = clf.shipped
    np.savez(out / "classifier.npz", W=W, b=b)
    shutil.copy2((cfg.base_dir / base["labels"]).resolve(), out / "chara.json")

    manifest = dict(base)
    manifest["labels"] = "chara.json"
    manifest["version"] = cfg.version
    manifest["encoder"] = {**encoder.spec, "sha256": sha256_file(out / "encoder.onnx")}
    manifest["classifier"] = {**clf.section, "sha256": sha256_file(out / "classifier.npz"),
                              "gallery_scale": cal["scale"], "gallery_bias": cal["bias"],
                              "gallery_compares": encoder.compares}
    manifest["known"] = {"file": "known.npz", "sha256": sha256_file(out / "known.npz"), "characters": len(names),
                         "scale": cal["scale"], "bias": cal["bias"], "mode": cal["mode"]}
    if hub is not None:
        manifest["known"]["hub"] = {"k": hub.k, "weight": hub.weight, "centre": hub.centre}
    manifest["characters"] = {"file": "characters.json", "sha256": sha256_file(out / "characters.json")}
    manifest["decision"] = decision
    manifest["metrics"] = {**base.get("metrics", {}), "coverage": metrics, "general_encoder": encoder.made_by}
    if manifest.pop("verifier", None) is not None:  # fitted on the base encoder's embeddings: it must be refitted
        print(f"the base bundle's head verifier is dropped (another encoder); refit it on this one: "
              f"python -m training.detector.verifier --bundle {out}")
    write_manifest(out / "manifest.json", manifest)


def build(cfg: Config) -> None:
    """Build the bundle of `cfg` in cfg.out, stage by stage."""
    t0 = time.time()
    run_dir, out = cfg.run_dir, cfg.out_dir
    base = json.loads((cfg.base_dir / "manifest.json").read_text())
    labels32 = json.loads((cfg.base_dir / base["labels"]).resolve().read_text())
    fresh_bundle(cfg.base_dir, out)

    # 1. compose: the encoder, every cached crop's embedding, the linear classifier
    if is_pretrained(run_dir):
        encoder = pretrained_encoder(cfg, base, run_dir, out)
        data = dataset.load(size=int(encoder.made_by["size"]))
        e = pretrained_embeddings(encoder, data, run_dir, out)
        if not cfg.compares and "colour" in [b.name for b in encoder.parsed.blocks]:
            encoder = replace(encoder, compares=choose_compares(e, data, encoder.parsed.blocks))
            print("galleries compare", encoder.compares, flush=True)
        clf = refitted_classifier(e, data, base, labels32)
    else:
        encoder = composed_encoder(cfg, base, run_dir, out)
        data = dataset.load()
        e = embedded(encoder.embedder, data.images, run_dir / f"embeddings_{graph_key(out)}.npy")
        clf = closed_classifier(base, cfg.base_dir, encoder, labels32)
    view = encoder.view
    eg = view.apply(e)  # what galleries compare

    # 2. calibrate, on the measuring gallery (the training pictures' prototypes)
    gallery = measuring_gallery(eg, data, view, cfg.hub_k, cfg.hub_weight)
    heads = scored_heads(e, eg, clf, gallery, data)
    f_split, half = face_splits(data), calib_half(data)
    sets = measuring_sets(data, f_split, half, np.isin(data.identity, gallery.ids))
    outside = outside_classifier(e, eg, clf, gallery, data, sets) if is_pretrained(run_dir) else None
    cal = calibrate_known(heads, sets, outside)
    print("calibration:", json.dumps(cal), flush=True)

    # 3. measure
    metrics = {"known_identities_measured": int(len(gallery.ids)), "calibration": cal,
               **measure_sets(heads, sets, cal)}
    metrics["enrolled_10_shots"] = enrolled_shots(eg, data, f_split, gallery, view)
    print("enrolled 10 shots:", metrics["enrolled_10_shots"], flush=True)

    # 4. decide: the characters/ characters held out whole are the unknown heads
    probe = decision_probe(encoder, clf, gallery, cal)
    dec_in = decision_inputs(e, heads, cal, probe, sets, data.heldout_char, half)
    save_decision_inputs(out.parent / f"{out.name}_decision_inputs.npz", dec_in)
    decision, metrics["decision"], report = fit_and_crossfit_decision(dec_in)
    eu = embedded(encoder.embedder, np.load(dataset.FACES_CACHE / "unlabeled_96.npy"),
                  run_dir / f"unlabeled_{graph_key(out)}.npy")
    metrics["decision"]["unlabeled_named"] = unlabeled_named(eu, view, clf, gallery, heads.lin_cols, cal, probe,
                                                             decision)
    print("decision:", json.dumps(metrics["decision"]), flush=True)
    np.savez(run_dir / "decision_scores.npz", known=report[0], unknown=report[1], threshold=report[2])
    m = sets["unseen_outfit"] | sets["unseen_outfit_calib"]
    metrics["unseen_outfit_per_source"] = per_source(heads.probabilities(m, cal), heads.y[m], data.source[m])
    print(json.dumps(metrics, indent=1), flush=True)

    # 5. write: the shipped gallery is every picture of every character
    known = shipped_gallery(eg, data, view)
    write_bundle(cfg, base, labels32, encoder, clf, known, gallery.hub, cal, decision, metrics, data)
    print(f"bundle {out} in {time.time() - t0:.0f}s ({len(known[0])} known characters + {len(labels32)} "
          f"classifier classes)")


def config_of(args: argparse.Namespace, ap: argparse.ArgumentParser) -> Config:
    """The build's config: a committed one (CONFIG.toml; `--out` may put the bundle elsewhere), or one of a run's
    name and the flags (paths relative to the current folder)."""
    flags = {"base": args.base, "version": args.version, "compares": args.compares, "hub_k": args.hub_k,
             "hub_weight": args.hub_weight}
    if args.target.endswith(".toml"):
        given = sorted(k for k, v in flags.items() if v is not None)
        if given:
            ap.error(f"set {', '.join(given)} in the config, not on the command line")
        cfg = Config.load(args.target)
    else:
        if args.base is not None:
            flags["base"] = str(args.base.absolute())
        if args.compares is not None:
            flags["compares"] = tuple(args.compares.split(","))
        cfg = Config(run=args.target, **{k: v for k, v in flags.items() if v is not None})
    return replace(cfg, out=str(args.out.absolute())) if args.out is not None else cfg


def main() -> None:
    """Install a built bundle, or build one from its config."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", metavar="CONFIG.toml | RUN",
                    help="a bundle config (training/general/configs/bundle/), or a run's name with the flags below")
    ap.add_argument("--install", type=Path, metavar="BUILT", help="copy a built bundle into models/ and stop")
    ap.add_argument("--out", type=Path, help="where to build it (default: the config's, else runs/general/bundle)")
    ap.add_argument("--base", type=Path, help="with RUN: the base bundle (default models)")
    ap.add_argument("--version", help=f"with RUN: the bundle's version (default {VERSION})")
    ap.add_argument("--hub-k", type=int, help=f"with RUN: the hubness correction's neighbours (default {HUB_K})")
    ap.add_argument("--hub-weight", type=float,
                    help=f"with RUN: the hubness correction's weight; 0: none (default {HUB_WEIGHT})")
    ap.add_argument("--compares", help="with RUN: the blocks and parts galleries compare, comma-separated, equally "
                                       "weighted (default: the encoder's own)")
    args = ap.parse_args()
    if args.install:
        install(args.install)
        return
    if not args.target:
        ap.error("CONFIG.toml or RUN is required (or --install BUILT)")
    build(config_of(args, ap))


if __name__ == "__main__":
    main()
