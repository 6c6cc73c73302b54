"""Stage 2 of the pretrained encoder: the frozen backbone's pooled stages for every cached head crop, once.

    python -m training.general.features [--size 128] [--fetched runs/third_party]

Reads the 128 px crops (`runs/encoder/faces_128.npy`, `runs/general/chars_128.npy`, cut by the serving detector in
stage 1) and writes `runs/general/taps_<size>.npz`: per crop and per tapped stage (`backbone.Encoder.pooled`, each
stage unit-RMS) the features of the crop and of its mirror image. The embedding head then trains on these in
seconds a step (training/general/head.py), and the frozen numbers are printed (a whitened linear projection fitted
on the training pictures: PCA, then the within-character spread of characters with two or more pictures).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from training.common import RUNS
from training.encoder.augment import normalize, to_float
from training.general import dataset
from training.general.backbone import Encoder, family_of, load_family

TAPS = ("s4", "s5", "s6", "s7", "head")
# every tap cached per backbone family, and the combinations whose frozen numbers are printed
FAMILY_TAPS = {"lite0": TAPS, "mnv2": ("block6", "block9", "block12", "block13", "block16")}
COMBOS = {
    "lite0": (("s5",), ("s6",), ("s7",), ("head",), ("s5", "s6"), ("s5", "s6", "head"), ("s4", "s5", "s6", "s7"),
              TAPS),
    "mnv2": (("block12",), ("block13",), ("block16",), ("block6", "block13"), ("block12", "block13"),
             ("block9", "block12", "block13"), ("block6", "block13", "block16"), FAMILY_TAPS["mnv2"]),
}
# where each family's package was fetched to (the docstrings of backbone.py and mobilenet.py say how)
FETCHED = {"lite0": RUNS / "third_party", "mnv2": RUNS / "third_party" / "nsfwjs"}


def taps_file(family: str, size: int) -> Path:
    return RUNS / "general" / (f"taps_{size}.npz" if family == "lite0" else f"taps_{family}_{size}.npz")


def to_input(imgs: np.ndarray) -> torch.Tensor:
    """uint8 RGB (N, S, S, 3) -> float (N, 3, S, S) in [-1, 1], as the manifest's scale/mean/std give it (the
    trainer's own conversion, training/encoder/augment.py)."""
    return normalize(to_float(torch.from_numpy(np.ascontiguousarray(imgs))))


class Pooled(torch.nn.Module):
    def __init__(self, enc: Encoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc.pooled(x)


def taps_session(enc: Encoder, path: Path, size: int):
    """The frozen backbone's pooled taps as an ONNX Runtime session (10x faster than torch on these cores), checked
    against torch."""
    import onnxruntime as ort

    enc.eval()
    torch.onnx.export(Pooled(enc).eval(), (torch.zeros(2, 3, size, size),), str(path), input_names=["x"], output_names=["f"],
                      dynamic_axes={"x": {0: "batch"}, "f": {0: "batch"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = torch.rand(4, 3, size, size) * 2 - 1
    with torch.no_grad():
        diff = float(np.abs(sess.run(None, {"x": x.numpy()})[0] - enc.pooled(x).numpy()).max())
    if diff > 1e-3:
        raise SystemExit(f"the exported taps differ from torch by {diff}")
    return sess


def pooled_taps(sess, imgs: np.ndarray, bs: int = 64, flip: bool = False) -> np.ndarray:
    out = []
    for i in range(0, len(imgs), bs):
        x = to_input(imgs[i:i + bs])
        if flip:
            x = x.flip(3)
        out.append(sess.run(None, {"x": x.numpy()})[0].astype(np.float16))
        if (i // bs) % 50 == 0:
            print(f"  {i + len(x)}/{len(imgs)}", flush=True)
    return np.concatenate(out)


def tap_columns(combo: tuple[str, ...], family: str = "lite0") -> np.ndarray:
    """The columns of the taps `combo` in a family's cached features (`FAMILY_TAPS` order)."""
    order = FAMILY_TAPS[family]
    w = family_of(family)[1]
    starts = np.cumsum([0] + [w[t] for t in order])
    return np.concatenate([np.arange(starts[order.index(t)], starts[order.index(t) + 1]) for t in combo])


def whitening(x: np.ndarray, ident: np.ndarray, dims: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) of PCA to `dims`, then whitening by the within-identity covariance (identities with two or
    more rows)."""
    dims = min(dims, x.shape[1])
    mu = x.mean(0)
    xc = x - mu
    _, _, vt = np.linalg.svd(xc[np.random.default_rng(0).permutation(len(xc))[:20000]], full_matrices=False)
    p = vt[:dims].T
    z = xc @ p
    ids, inv, counts = np.unique(ident, return_inverse=True, return_counts=True)
    multi = counts[inv] >= 2
    means = np.zeros((len(ids), dims))
    np.add.at(means, inv, z)
    means /= counts[:, None]
    r = (z - means[inv])[multi]
    cov = r.T @ r / max(len(r), 1) + 1e-3 * np.eye(dims)
    w, v = np.linalg.eigh(cov)
    return mu, p @ (v / np.sqrt(w))


def main() -> None:
    from training.general.evaluate import numbers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--backbone", default="lite0", choices=sorted(FAMILY_TAPS))
    ap.add_argument("--fetched", type=Path, help="where the backbone's package was fetched (default: runs/third_party)")
    a = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(2)
    taps = FAMILY_TAPS[a.backbone]
    enc = load_family(Encoder(taps, family=a.backbone), a.fetched or FETCHED[a.backbone])
    data = dataset.load(size=a.size)
    out = taps_file(a.backbone, a.size)
    if out.exists():
        z = np.load(out)
        f, ff = z["plain"], z["flip"]
    else:
        print(f"{len(data.images)} crops through the frozen backbone ...", flush=True)
        sess = taps_session(enc, dataset.OUT / f"taps_{a.size}.onnx", a.size)
        f = pooled_taps(sess, data.images)
        ff = pooled_taps(sess, data.images, flip=True)
        np.savez(out, plain=f, flip=ff, taps=np.array(taps), widths=np.array([enc.features]))
        print(f"wrote {out} in {time.time() - t0:.0f}s", flush=True)
    report = {}
    for combo in COMBOS[a.backbone]:
        cols = tap_columns(combo, a.backbone)
        x = (f[:, cols].astype(np.float32) + ff[:, cols].astype(np.float32)) / 2
        mu, proj = whitening(x[data.train], data.identity[data.train])
        e = (x - mu) @ proj
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        n = numbers(e, data)
        report["+".join(combo)] = {k: (v["top1"], v["top3"]) for k, v in n.items() if isinstance(v, dict)}
        print("+".join(combo), json.dumps(report["+".join(combo)]), flush=True)


if __name__ == "__main__":
    main()
