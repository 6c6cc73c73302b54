"""Step 3: export the trained encoder to ONNX and check it against torch.

    python -m training.encoder.export --run heldout [--out models/encoder.onnx] [--flip-tta] [--whiten]
    python -m training.encoder.export --run xl,long,final ...      # an ensemble of runs in one graph

Input `input0` (N, 3, S, S) float32 RGB, x / 255, (x - 0.5) / 0.5, dynamic batch; output `embedding` (N, D),
already L2-normalised (inference normalises again, harmlessly). With --flip-tta the graph embeds the crop
and its mirror image and returns the normalised mean (test-time flip inside the model).

With --whiten the graph also applies PCA whitening: e -> normalise((e - mean) @ W), W = V diag(1/sqrt(l + r)) V^T
from the covariance of the encoder's own training faces (its 'train' split, characters it trained on; r is a
ridge of 1e-4 x the mean eigenvalue, for stability only). Metric learning packs the training identities into a
few dominant directions; whitening gives the other directions, which tell *new* characters apart, equal weight
(the embedding is then compared by cosine, as before). It is a fixed linear map inside the graph, so the
classifier, the gallery and serving are unchanged.

With several runs (same input size, same held-out characters) the graph runs each encoder (each with its own
flip and whitening) and returns the normalised concatenation of their embeddings (dim = sum of the dims).
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
from training.encoder.appended import write_info
from training.encoder.augment import eval_views
from training.encoder.data import OUT, load_meta
from training.encoder.model import DEPTHS, Encoder


class Exported(torch.nn.Module):
    def __init__(self, enc: Encoder, flip: bool, size: int) -> None:
        super().__init__()
        self.enc, self.flip = enc, flip
        self.register_buffer("rev", torch.arange(size - 1, -1, -1), persistent=False)
        self.mean: torch.Tensor | None = None
        self.whiten: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = F.normalize(self.enc(x), dim=1)
        if self.flip:
            e = F.normalize(e + F.normalize(self.enc(x.index_select(3, self.rev)), dim=1), dim=1)
        if self.whiten is not None:
            e = F.normalize((e - self.mean) @ self.whiten, dim=1)
        return e

    def set_whitening(self, e: np.ndarray, ridge: float = 1e-4) -> dict:
        """PCA whitening fitted on embeddings `e` (N, D) of this model (before whitening)."""
        e = np.asarray(e, np.float64)
        mean = e.mean(0)
        lam, vec = np.linalg.eigh(np.cov(e - mean, rowvar=False))
        lam = np.clip(lam, 0.0, None)
        w = vec @ np.diag(1.0 / np.sqrt(lam + ridge * lam.mean())) @ vec.T
        self.mean = torch.from_numpy(mean.astype(np.float32))
        self.whiten = torch.from_numpy(w.astype(np.float32))
        return {"faces": len(e), "ridge": ridge, "eigenvalue_ratio": float(lam.max() / max(lam.min(), 1e-12))}


class Ensemble(torch.nn.Module):
    def __init__(self, members: list[Exported]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([m(x) for m in self.members], 1), dim=1)


def whitening_faces(meta: dict, heldout: list[str]) -> np.ndarray:
    """Indices of the encoder's own training faces: 'train' split, characters it was trained on."""
    chars = meta["characters"]
    out = [i for i, (s, y) in enumerate(zip(meta["split"], meta["label"])) if s == "train" and chars[y] not in heldout]
    return np.asarray(out)


def embed_torch(model: torch.nn.Module, faces: np.ndarray, idx: np.ndarray, size: int, bs: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(eval_views(np.asarray(faces[idx[i:i + bs]]), size)).numpy()
                               for i in range(0, len(idx), bs)])


def load_encoder(run: str) -> tuple[Encoder, dict]:
    ck = torch.load(OUT / run / "encoder.pt", map_location="cpu")
    enc = Encoder(depths=tuple(ck.get("depths", DEPTHS)), dim=ck["dim"])
    enc.load_state_dict(ck["state_dict"])
    return enc.eval(), ck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="heldout")
    ap.add_argument("--out", type=Path, default=None, help="default: runs/encoder/<run>/encoder.onnx")
    ap.add_argument("--flip-tta", action="store_true")
    ap.add_argument("--whiten", action="store_true", help="PCA whitening inside the graph (see above)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = args.run.split(",")
    loaded = [load_encoder(r) for r in runs]
    ck = loaded[0][1]
    size = ck["size"]
    if any(c["size"] != size or c["heldout"] != ck["heldout"] for _, c in loaded):
        raise SystemExit("the runs of an ensemble need the same input size and the same held-out characters")
    meta = load_meta()
    faces = np.load(OUT / "faces_96.npy", mmap_mode="r")
    members, whitening = [], []
    for (enc, c), run in zip(loaded, runs):
        member = Exported(enc, args.flip_tta, size).eval()
        if args.whiten:
            idx = whitening_faces(meta, c["heldout"])
            whitening.append(member.set_whitening(embed_torch(member, faces, idx, size)))
            print(f"{run}: whitening fitted on {whitening[-1]['faces']} training faces", flush=True)
        members.append(member)
    model = members[0] if len(members) == 1 else Ensemble(members).eval()
    dim = sum(c["dim"] for _, c in loaded)
    out = args.out or OUT / runs[0] / ("encoder.onnx" if len(runs) == 1 else f"ensemble_{len(runs)}.onnx")
    out = out if out.is_absolute() else ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, size, size)
    torch.onnx.export(model, (dummy,), str(out), input_names=["input0"], output_names=["embedding"],
                      dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))

    val = [i for i, s in enumerate(meta["split"]) if s == "val"][:64]
    x = eval_views(np.asarray(faces[val]), size)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input0": x[i:i + 7].numpy()})[0] for i in range(0, len(x), 7)])
    diff = float(np.abs(got - ref).max())
    cos = float((got * ref).sum(1).min())
    info = {"file": str(out.relative_to(ROOT)), "bytes": out.stat().st_size, "size": size, "dim": dim,
            "flip_tta": args.flip_tta, "whitening": whitening[0] if len(whitening) == 1 else whitening or None,
            "runs": runs, "steps_per_run": [c["steps_done"] for _, c in loaded], "max_abs_diff": diff, "min_cosine": cos, "steps": ck["steps_done"],
            "heldout": ck["heldout"]}
    print(json.dumps(info))
    if diff > 1e-3 or cos < 0.9999:
        raise SystemExit(f"ONNX output differs from torch: max |diff| {diff:.2e}, min cosine {cos:.6f}")
    write_info(out, info)


if __name__ == "__main__":
    main()
