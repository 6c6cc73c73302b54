"""Step 3b: int8 version of the exported encoder (after `training.encoder.export`, before the classifier).

    python -m training.encoder.quantize models/encoder.onnx            # in place
    python -m training.encoder.quantize runs/encoder/ens.onnx --out models/encoder.onnx

The convolutions, their ReLUs and residual adds become int8 (`training.quantize`: QDQ, per-channel 7-bit
weights); the L2 normalisations and the whitening (MatMul) stay float. Activation ranges come from 512 faces of
the encoder's 'train' split. Afterwards append the colour histogram (`training.encoder.colour`) and fit the
classifier (`training.encoder.classifier`) on the int8 graph's embeddings: it is the graph that is served. On 2 cores it embeds a head about 2x faster than the float graph.
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


def declared_input_size(model) -> int | None:
    """The square input side an ONNX graph (`onnx.ModelProto`) declares (N, 3, S, S), or None where it is symbolic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    h, w = (d.dim_value for d in dims[2:4])
    return h if h and h == w else None


def graph_input_size(model: Path) -> int | None:
    """`declared_input_size` of the exported graph at `model`."""
    import onnx

    return declared_input_size(onnx.load(str(model), load_external_data=False))


def main() -> None:
    ap = argparse.ArgumentParser(description="int8 version of the exported encoder (see the module docstring)")
    ap.add_argument("model", type=Path, help="an exported float encoder (.onnx)")
    ap.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    ap.add_argument("--size", type=int, default=None,
                    help="the encoder's input size (default: the one the graph declares)")
    a = ap.parse_args()
    from training.encoder.data import OUT, load_meta
    from training.quantize import quantize_graph

    size = a.size or graph_input_size(a.model)
    if not size:
        raise SystemExit(f"{a.model} declares no fixed square input size: give --size")
    meta = load_meta()
    faces = np.load(OUT / "faces_96.npy", mmap_mode="r")
    out = a.out or a.model
    quantize_graph(a.model, out, calibration_feeds(faces, meta["split"], size), QUANTIZED_OPS)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
