"""Step 3: export the trained encoder to ONNX and check it against torch.

    python -m training.encoder.export --run heldout [--out models/encoder.onnx] [--flip-tta]

Input `input0` (N, 3, S, S) float32 RGB, x / 255, (x - 0.5) / 0.5, dynamic batch; output `embedding` (N, D),
already L2-normalised (inference normalises again, harmlessly). With --flip-tta the graph embeds the crop
and its mirror image and returns the normalised mean (test-time flip inside the model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from training.common import ROOT
from training.encoder.augment import eval_views
from training.encoder.data import OUT, load_meta
from training.encoder.model import Encoder


class Exported(torch.nn.Module):
    def __init__(self, enc: Encoder, flip: bool, size: int) -> None:
        super().__init__()
        self.enc, self.flip = enc, flip
        self.register_buffer("rev", torch.arange(size - 1, -1, -1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = F.normalize(self.enc(x), dim=1)
        if self.flip:
            e = F.normalize(e + F.normalize(self.enc(x.index_select(3, self.rev)), dim=1), dim=1)
        return e


def load_encoder(run: str) -> tuple[Encoder, dict]:
    ck = torch.load(OUT / run / "encoder.pt", map_location="cpu")
    enc = Encoder(dim=ck["dim"])
    enc.load_state_dict(ck["state_dict"])
    return enc.eval(), ck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="heldout")
    ap.add_argument("--out", type=Path, default=None, help="default: runs/encoder/<run>/encoder.onnx")
    ap.add_argument("--flip-tta", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc, ck = load_encoder(args.run)
    size = ck["size"]
    model = Exported(enc, args.flip_tta, size).eval()
    out = args.out or OUT / args.run / "encoder.onnx"
    out = out if out.is_absolute() else ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, size, size)
    torch.onnx.export(model, (dummy,), str(out), input_names=["input0"], output_names=["embedding"],
                      dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))

    meta = load_meta()
    faces = np.load(OUT / "faces_96.npy", mmap_mode="r")
    val = [i for i, s in enumerate(meta["split"]) if s == "val"][:64]
    x = eval_views(np.asarray(faces[val]), size)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input0": x[i:i + 7].numpy()})[0] for i in range(0, len(x), 7)])
    diff = float(np.abs(got - ref).max())
    cos = float((got * ref).sum(1).min())
    info = {"file": str(out.relative_to(ROOT)), "bytes": out.stat().st_size, "size": size, "dim": ck["dim"],
            "flip_tta": args.flip_tta, "max_abs_diff": diff, "min_cosine": cos, "steps": ck["steps_done"],
            "heldout": ck["heldout"]}
    print(json.dumps(info))
    if diff > 1e-3 or cos < 0.9999:
        raise SystemExit(f"ONNX output differs from torch: max |diff| {diff:.2e}, min cosine {cos:.6f}")
    (out.parent / (out.stem + "_export.json")).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
