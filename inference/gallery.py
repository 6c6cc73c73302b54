"""Enrolled characters: a gallery of embeddings, one prototype per character (cosine).

Adding a character takes a few embeddings and no retraining. Galleries are `.npz` files (read with
`allow_pickle=False`), written atomically, and tied to the encoder that made them: a gallery made
with another encoder is refused, since its vectors would be meaningless. The exception is an encoder the
bundle names as making the same gallery embedding (manifest `classifier.gallery_compatible`: one that only
appended other features after it): its vectors are cut to the `dims` the gallery compares, and its characters
are kept.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .embed import l2_normalize
from .errors import GalleryError
from .manifest import GalleryView

_NOT_TAG = re.compile(r"[^\w().:'!?&+\-]+", re.UNICODE)


_SEPARATORS = re.compile(r"[\s・･·•‧=＝]+")


def to_tag(name: str) -> str:
    """What a user types -> a Danbooru-style tag: ``Aqua (Konosuba)`` -> ``aqua_(konosuba)``,
    ``Mori Calliope`` -> ``mori_calliope``, ``モンキー・D・ルフィ`` -> ``モンキー_d_ルフィ`` (a middle dot separates words).
    May be empty (nothing usable was typed); at most 100 characters. The name as typed is kept for display
    (`Gallery.add`)."""
    tag = _SEPARATORS.sub(" ", str(name)).strip().lower()
    tag = re.sub(r"\s*\(\s*", "_(", tag)
    tag = re.sub(r"\s*\)\s*", ")", tag)
    tag = re.sub(r"\s+", "_", tag)
    tag = _NOT_TAG.sub("", tag)
    tag = re.sub(r"_+", "_", tag).strip("_")
    return tag[:100]


def normalize_name(name: str) -> str:
    """`to_tag`, refusing a name with nothing usable in it."""
    tag = to_tag(name)
    if not tag:
        raise GalleryError("A character name needs at least one letter or digit.")
    return tag


class Gallery:
    def __init__(self, encoder_id: str, dim: int, names: list[str] | None = None,
                 vectors: np.ndarray | None = None, view: GalleryView | None = None):
        self.encoder_id = encoder_id
        self.dim = int(dim)
        self.view = view  # what the classifier compares (manifest.GalleryView); None: the whole embedding
        self._names: list[str] = list(names or [])
        self._vectors = np.zeros((0, self.dim), np.float32) if vectors is None else l2_normalize(vectors)
        self._protos: tuple[list[str], np.ndarray] | None = None
        self._display: dict[str, str] = {}  # tag -> the name as it was typed

    def display(self, tag: str) -> str:
        """The name as it was first taught ("モンキー・D・ルフィ"), or the tag's display form for older galleries."""
        from .result import Character

        return self._display.get(tag) or Character.from_tag(tag).title

    def character(self, tag: str):
        from .result import Character

        return Character(tag, self.display(tag))

    def __len__(self) -> int:
        return len(set(self._names))

    @property
    def names(self) -> list[str]:
        return sorted(set(self._names))

    def count(self, name: str) -> int:
        return self._names.count(name)

    def vectors_of(self, tag: str) -> np.ndarray:
        """(n, D) the unit embeddings taught for `tag`, oldest first."""
        return self._vectors[[i for i, n in enumerate(self._names) if n == tag]]

    def names_and_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every taught embedding with its tag, in teaching order (a copy of the names)."""
        return list(self._names), self._vectors

    def add(self, name: str, vectors: np.ndarray) -> str:
        tag = normalize_name(name)
        typed = " ".join(str(name).split())[:100]
        self._display.setdefault(tag, typed)
        v = l2_normalize(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        self._names.extend([tag] * len(v))
        self._vectors = np.concatenate([self._vectors, v])
        self._protos = None
        return tag

    def remove(self, name: str) -> int:
        tag = normalize_name(name)
        keep = [i for i, n in enumerate(self._names) if n != tag]
        removed = len(self._names) - len(keep)
        self._names = [self._names[i] for i in keep]
        self._vectors = self._vectors[keep] if keep else np.zeros((0, self.dim), np.float32)
        self._protos = None
        if removed:
            self._display.pop(tag, None)
        return removed

    def prototypes(self) -> tuple[list[str], np.ndarray]:
        """(names, (G, W) unit prototypes): the mean of each character's embeddings as the classifier compares
        them (their `view`, W its width, pooled by `GalleryView.pool`; without one the whole embedding, W = D)."""
        if self._protos is None:
            names = self.names
            vectors = self._vectors if self.view is None else self.view.apply(self._vectors)
            protos = np.stack([vectors[[i for i, n in enumerate(self._names) if n == name]].mean(0)
                               for name in names]) if names else np.zeros((0, vectors.shape[1]), np.float32)
            self._protos = (names, l2_normalize(protos) if self.view is None else self.view.pool(protos))
        return self._protos

    # -- files -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The gallery as an npz file's bytes (what `save` writes and `load` reads)."""
        buffer = io.BytesIO()
        shown = sorted(self._display.items())
        np.savez(buffer, encoder_id=np.array(self.encoder_id), names=np.array(self._names, dtype=np.str_),
                 vectors=self._vectors.astype(np.float32),
                 display_tags=np.array([t for t, _ in shown], dtype=np.str_),
                 display_names=np.array([d for _, d in shown], dtype=np.str_))
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike | bytes, encoder_id: str, dim: int, dims: int | None = None,
             compatible: tuple[str, ...] | list[str] = (), view: GalleryView | None = None) -> Gallery:
        """A saved gallery (a file, or the bytes of one), made with this encoder or with one in `compatible`
        (then cut to the leading `dims`, see above), compared through `view`."""
        if isinstance(path, bytes | bytearray | memoryview):
            source, path = io.BytesIO(bytes(path)), Path("of this server")
        else:
            source = path = Path(path)
        try:
            with np.load(source, allow_pickle=False) as z:
                made_by = str(z["encoder_id"])
                names = [str(n) for n in z["names"]]
                vectors = np.asarray(z["vectors"], np.float32)
                shown = dict(zip((str(t) for t in z["display_tags"]), (str(d) for d in z["display_names"]))) \
                    if "display_tags" in z else {}
        except FileNotFoundError:
            raise GalleryError(f"Gallery file {path} does not exist.") from None
        except Exception as e:
            raise GalleryError(f"Gallery file {path.name} is unreadable ({type(e).__name__}).") from None
        own = made_by == encoder_id
        if not own and (made_by not in compatible or not dims):
            raise GalleryError(f"Gallery {path.name} was made with another encoder; enroll its characters again.")
        width_ok = vectors.ndim == 2 and (vectors.shape[1] == dim if own else vectors.shape[1] >= dims)
        if not width_ok or len(names) != len(vectors):
            raise GalleryError(f"Gallery {path.name} has wrong shapes ({vectors.shape}, {len(names)} names).")
        gallery = cls(encoder_id, dim, names, vectors if own else _compared(vectors, dims, dim), view)
        gallery._display = {t: d for t, d in shown.items() if t in set(names)}
        return gallery


def _compared(vectors: np.ndarray, dims: int, dim: int) -> np.ndarray:
    """(N, >= dims) embeddings -> (N, dim): their first `dims` dimensions, normalised, then zeros."""
    out = np.zeros((len(vectors), dim), np.float32)
    out[:, :dims] = l2_normalize(np.asarray(vectors, np.float32)[:, :dims])
    return out
