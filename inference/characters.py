"""Who the bundle knows: its character index (tag -> display name, work, page) and the known-character gallery.

A bundle may ship, besides the classifier's label list:
- `characters` (manifest section): a JSON index, one entry per known character,
  ``{"tag": "mal_118763", "display": "Rem", "series": "Re:Zero kara Hajimeru Isekai Seikatsu",
  "url": "https://myanimelist.net/character/118763"}``; tags not in it are described from the tag itself;
- `known` (manifest section): an `.npz` of prototypes (`names`, `vectors` (G, dims) float16), one per character
  the bundle knows by its picture(s) rather than by the classifier. They are compared like an enrolled gallery
  (cosine on the gallery part of the embedding), with their own `scale` and `bias` calibrated in training; with a
  hubness correction (`known.hub`) each prototype's cosines are lowered by its `offsets` (`hub_offsets`).

`search` is what the CLI's `characters` command and the bot's `/characters` use.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError
from .manifest import HubSpec, KnownSpec
from .result import Character


def hub_offsets(protos: np.ndarray, vectors: np.ndarray, hub: HubSpec, exclude_self: bool = False,
                chunk: int = 1024) -> np.ndarray:
    """(P,) how much each of `protos` (P, W unit rows) is a hub among the known prototypes `vectors` (G, W):
    `hub.weight` x (the mean of its `hub.k` largest cosines to them - `hub.centre`). `exclude_self`: `protos` are
    `vectors` themselves, and each row's cosine to itself is left out. What the bundle ships for its known
    characters (`known.npz` `offsets`) and what an enrolled character gets (`KnownGallery.offsets_for`)."""
    protos = np.asarray(protos, np.float32)
    out = np.zeros(len(protos), np.float32)
    if not len(protos) or not len(vectors):
        return out
    k = min(hub.k, len(vectors) - (1 if exclude_self else 0))
    if k < 1:
        return out
    for i in range(0, len(protos), chunk):
        s = protos[i:i + chunk] @ vectors.T
        if exclude_self:
            s[np.arange(len(s)), np.arange(i, i + len(s))] = -np.inf
        out[i:i + chunk] = -np.partition(-s, k - 1, axis=1)[:, :k].mean(1)
    return (hub.weight * (out - hub.centre)).astype(np.float32)


@dataclass(frozen=True)
class KnownGallery:
    names: list[str]
    vectors: np.ndarray  # (G, dims) unit rows
    scale: float
    bias: float
    mode: str = "joint"  # how they combine with the classifier: "joint" softmax or "gate" (inference/classify.py)
    hub: HubSpec | None = None  # the hubness correction (manifest.HubSpec), if the bundle has one
    offsets: np.ndarray | None = None  # (G,) what the correction takes off each prototype's cosines (with `hub`)

    def offsets_for(self, protos: np.ndarray) -> np.ndarray | None:
        """(P,) the correction of other prototypes (enrolled characters) against these, or None without one."""
        return None if self.hub is None else hub_offsets(protos, self.vectors, self.hub)

    @classmethod
    def load(cls, path: Path, spec: KnownSpec, dims: int) -> KnownGallery:
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                vectors = np.asarray(z["vectors"], np.float32)
                offsets = np.asarray(z["offsets"], np.float32) if spec.hub is not None else None
        except Exception as e:
            raise BundleError(f"Known-character gallery {path.name} is unreadable: {e}") from None
        if vectors.ndim != 2 or len(names) != len(vectors) or vectors.shape[1] != dims:
            raise BundleError(f"Known-character gallery {path.name} has wrong shapes: {vectors.shape} for "
                              f"{len(names)} names, expected (G, {dims}).")
        if offsets is not None and (offsets.shape != (len(names),) or not np.isfinite(offsets).all()):
            raise BundleError(f"Known-character gallery {path.name}: its offsets have shape {offsets.shape}, expected "
                              f"one finite number per name ({len(names)},).")
        if len(set(names)) != len(names):
            raise BundleError(f"Known-character gallery {path.name} has duplicate names.")
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return cls(names, vectors, spec.scale, spec.bias, spec.mode, spec.hub, offsets)


# what fan-art channels call a work where its name does not contain it (folded, one word): a query word that is one
# also matches the work it stands for ("kancolle" finds Kantai Collection's characters)
WORK_NICKNAMES = {
    "kancolle": "kantai collection",
    "imas": "idolmaster",
    "fgo": "fate grand order",
    "hsr": "honkai star rail",
    "lovelive": "love live",
    "umamusume": "uma musume",
    "azurlane": "azur lane",
    "bluearchive": "blue archive",
}


def _fold(text: str) -> str:
    """Case, accents and punctuation folded away: "Mikoto Misaka" and "misaka_mikoto" both -> "mikoto misaka"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


class CharacterIndex:
    """Every character a bundle knows, with who each one is."""

    def __init__(self, entries: dict[str, Character], order: list[str]):
        self._entries = entries
        self.tags = order
        self._keys = {t: (_fold(f"{c.display} {c.tag}"), _fold(c.series or "")) for t, c in entries.items()}

    @classmethod
    def build(cls, tags: list[str], path: Path | None = None) -> CharacterIndex:
        """`tags` (the classifier's labels, then the known gallery's), described by the JSON index at `path`."""
        described: dict[str, Character] = {}
        if path is not None:
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
                for r in rows:
                    described[r["tag"]] = Character(str(r["tag"]), str(r.get("display") or r["tag"]),
                                                    r.get("series") or None, r.get("url") or None)
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise BundleError(f"Character index {path.name} is unreadable: {e}") from None
        order = list(dict.fromkeys(tags))
        return cls({t: described.get(t) or Character.from_tag(t) for t in order}, order)

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, tag: str) -> bool:
        return tag in self._entries

    def get(self, tag: str) -> Character:
        return self._entries.get(tag) or Character.from_tag(tag)

    @property
    def series_count(self) -> int:
        return len({c.series for c in self._entries.values() if c.series})

    def search(self, query: str = "", limit: int | None = None) -> list[Character]:
        """Characters whose name, tag or work contains every word of `query` (case, accents and punctuation
        ignored; a work's nickname, `WORK_NICKNAMES`, stands for the work). Best first: the name starts with the
        query, the name contains it, the work contains it, then the words are found apart; by name within each. An
        empty query lists everyone."""
        phrase = _fold(query)
        words = phrase.split()
        hits = []
        for t in self.tags:
            name, series = self._keys[t]
            if all(w in name or w in series or WORK_NICKNAMES.get(w, "\0") in series for w in words):
                tier = 0 if name.startswith(phrase) else 1 if phrase in name else 2 if (
                    phrase in series or WORK_NICKNAMES.get(phrase, "\0") in series) else 3
                hits.append((tier, name, t))
        hits.sort()
        out = [self._entries[h[2]] for h in hits]
        return out[:limit] if limit else out
