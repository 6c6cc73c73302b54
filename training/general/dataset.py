"""The general encoder's data, read from the caches of stage 1 (`runs/encoder/faces_96.npy` from
`training.encoder.data`, `runs/general/chars_96.npy` from `training.general.data`) as one set of pictures with one
identity per picture (an index into `labels.build()`'s labels) and the masks every stage agrees on."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from training.common import RUNS
from training.general.labels import Label, build
from training.general.split import assign_splits

OUT = RUNS / "general"
FACES_CACHE = RUNS / "encoder"


@dataclass
class Data:
    images: np.ndarray  # (N, S, S, 3) uint8: faces/ crops, then characters/ head crops
    identity: np.ndarray  # (N,) index into labels
    labels: list[Label]
    origin: np.ndarray  # (N,) 'faces' | 'chars'
    train: np.ndarray  # (N,) bool: used to train the encoder (and as the gallery of what it knows)
    val_variant: np.ndarray  # characters/ pictures of a held-out outfit (the character's others are in train)
    heldout_char: np.ndarray  # characters/ pictures of characters left out whole
    proxy_query: np.ndarray  # faces/ pictures of characters known from one MyAnimeList portrait (fan-art proxy)
    faces_val: np.ndarray  # faces/ 'val' pictures of the other faces/ characters
    portrait: np.ndarray  # (N,) bool: a MyAnimeList portrait
    is_face_identity: np.ndarray  # (L,) bool per label: a faces/ character
    proxy_identity: np.ndarray  # (L,) bool per label: a faces/ character also known from a portrait
    source: np.ndarray  # (N,) where each picture comes from: 'faces', or its characters/ source (myanimelist, ...)


def proxy_tags(labels: list[Label]) -> set[str]:
    return {lab.tag for lab in labels if "faces" in lab.sources and "myanimelist" in lab.sources}


def splits(labels: list[Label], rows) -> list[str]:
    return assign_splits(rows, keep=frozenset(lab.tag for lab in labels if "faces" in lab.sources))


def load(size: int = 96) -> Data:
    """The cached crops at `size` (96: the from-scratch encoder's caches; 128: the pretrained encoder's)."""
    labels, rows, _ = build()
    index = {lab.tag: i for i, lab in enumerate(labels)}
    proxy = proxy_tags(labels)
    fm = json.loads((FACES_CACHE / "faces_meta.json").read_text())
    cm = json.loads((OUT / "chars_meta.json").read_text())
    faces = np.load(FACES_CACHE / f"faces_{size}.npy")
    chars = np.load(OUT / f"chars_{size}.npy")
    f_tag = [fm["characters"][c] for c in fm["label"]]
    f_split = np.array(fm["split"])
    f_proxy = np.array([t in proxy for t in f_tag])
    if cm["paths"] != [r.path for r in rows]:
        raise SystemExit("runs/general/chars_meta.json is stale: run python -m training.general.data again")
    c_split = np.array(splits(labels, rows))
    nf, nc = len(faces), len(chars)
    origin = np.array(["faces"] * nf + ["chars"] * nc)
    identity = np.array([index[t] for t in f_tag] + [index[r.tag] for r in rows])
    is_face_id = np.array(["faces" in lab.sources for lab in labels])
    proxy_id = np.array([lab.tag in proxy for lab in labels])
    pad = np.zeros(nc, bool)
    padf = np.zeros(nf, bool)
    return Data(
        images=np.concatenate([faces, chars]),
        identity=identity,
        labels=labels,
        origin=origin,
        train=np.concatenate([(f_split == "train") & ~f_proxy, c_split == "train"]),
        val_variant=np.concatenate([padf, c_split == "val_variant"]),
        heldout_char=np.concatenate([padf, c_split == "heldout_char"]),
        proxy_query=np.concatenate([f_proxy, pad]),
        faces_val=np.concatenate([(f_split == "val") & ~f_proxy, pad]),
        portrait=np.concatenate([padf, np.array(cm["kind"]) == "portrait"]),
        is_face_identity=is_face_id,
        proxy_identity=proxy_id,
        source=np.array(["faces"] * nf + list(cm["source"])),
    )
