"""Step 3b: int8 version of the exported encoder (after `training.encoder.export`, before the classifier).

    python -m training.encoder.quantize models/encoder.onnx            # in place
    python -m training.encoder.quantize runs/encoder/ens.onnx --out models/encoder.onnx

The convolutions, their ReLUs and residual adds become int8 (`training.quantize`: QDQ, per-channel 7-bit
weights); the L2 normalisations and the whitening (MatMul) stay float. Activation ranges come from 512 faces of
the encoder's 'train' split. Fit the classifier (`training.encoder.classifier`) on the int8 graph's embeddings
afterwards: it is the graph that is served. On 2 cores it embeds a head about 2x faster than the float graph.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

QUANTIZED_OPS = ["Conv", "Relu", "Add"]


def calibration_feeds(faces: np.ndarray, split: list[str], size: int, n: int = 512, batch: int = 32,
                      seed: int = 0) -> list[dict]:
    """`n` random 'train' faces (RGB, any square size), pre-processed as the encoder is fed, in batches."""
    from training.encoder.onnx_embed import preprocess

    train = [i for i, s in enumerate(split) if s == "train"]
    pick = np.sort(np.random.default_rng(seed).choice(train, min(n, len(train)), replace=False))
    chosen = np.asarray(faces[pick])
    return [{"input0": preprocess(chosen[i:i + batch], size)} for i in range(0, len(chosen), batch)]


def main() -> None:
    ap = argparse.ArgumentParser(description="int8 version of the exported encoder (see the module docstring)")
    ap.add_argument("model", type=Path, help="an exported float encoder (.onnx)")
    ap.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    ap.add_argument("--size", type=int, default=64, help="the encoder's input size")
    a = ap.parse_args()
    from training.encoder.data import OUT, load_meta
    from training.quantize import quantize_graph

    meta = load_meta()
    faces = np.load(OUT / "faces_96.npy", mmap_mode="r")
    out = a.out or a.model
    quantize_graph(a.model, out, calibration_feeds(faces, meta["split"], a.size), QUANTIZED_OPS)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
