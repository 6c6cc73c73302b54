"""Step 4 — embed: head crops -> L2-normalised embeddings, all heads of a picture in one call.

With `encoder.batch = "fixed1"` (the reference system's encoder takes batch 1) it runs once per
head. With `encoder.tta_flip` the embedding of the mirrored crop is averaged in.

The encoder's output may be declared as an ordered list of named blocks (`encoder.blocks`: `[{"name", "dims"}]`,
widths adding up to `dim`): each block is then L2-normalised on its own (e.g. the general embedding that galleries
compare, then the features only the linear classifier reads), instead of the whole vector at once.
"""

from __future__ import annotations

import numpy as np

from .manifest import Block, EncoderSpec


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def block_slices(blocks: tuple[Block, ...]) -> list[tuple[str, slice]]:
    """The declared blocks of an encoder's output as (name, slice) in order; [] when none are declared."""
    out, start = [], 0
    for b in blocks:
        out.append((b.name, slice(start, start + b.dims)))
        start += b.dims
    return out


class Embedder:
    def __init__(self, spec: EncoderSpec, session):
        self.spec = spec
        self.session = session
        self.input = spec.input
        self.input_name = self.input.name or session.get_inputs()[0].name
        self.batched = spec.batched
        self.tta_flip = spec.tta_flip
        self.crop = spec.crop
        self.dim = spec.dim  # found by `Pipeline.embedding_dim` when the manifest has none
        self.blocks = block_slices(spec.blocks)

    def normalize(self, e: np.ndarray) -> np.ndarray:
        if not self.blocks:
            return l2_normalize(e)
        return np.concatenate([l2_normalize(e[:, sl]) for _, sl in self.blocks], axis=1)

    @property
    def size(self) -> tuple[int, int]:
        return self.input.width, self.input.height

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.batched:
            return np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32).reshape(len(x), -1)
        return np.concatenate([np.asarray(self.session.run(None, {self.input_name: x[i:i + 1]})[0],
                                          np.float32).reshape(1, -1) for i in range(len(x))])

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops at the encoder size -> (N, D) unit vectors."""
        if len(crops) == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        x = self.input.to_tensor(crops)
        if self.tta_flip:
            both = self._run(np.concatenate([x, x[..., ::-1].copy()]))
            e = self.normalize(both[: len(x)]) + self.normalize(both[len(x):])
        else:
            e = self._run(x)
        return self.normalize(e)
