"""Encoder export: whitening inside the graph, ensembles of runs, and the ONNX graph against torch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch  # the train extra (`make test` installs it)

from training.encoder.augment import eval_views
from training.encoder.export import Ensemble, Exported, embed_torch, whitening_faces
from training.encoder.model import Encoder


def _faces(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, 96, 96, 3))
    return np.clip(base[rng.integers(0, 4, n)] + rng.normal(0, 25, (n, 96, 96, 3)), 0, 255).astype(np.uint8)


def _member(seed: int, dim: int = 16) -> Exported:
    torch.manual_seed(seed)
    return Exported(Encoder(widths=(8, 8, 16, 16), dim=dim).eval(), True, 32).eval()


def test_whitening_makes_the_fitting_embeddings_isotropic():
    member = _member(0)
    faces = _faces(300, 1)
    raw = embed_torch(member, faces, np.arange(len(faces)), 32)
    assert np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-5)
    info = member.set_whitening(raw)
    assert info["faces"] == 300 and info["eigenvalue_ratio"] > 10  # a few directions dominate
    z = (raw - member.mean.numpy()) @ member.whiten.numpy()
    lam = np.linalg.eigvalsh(np.cov(z, rowvar=False))
    assert lam.max() <= 1.01 and lam.min() >= 0.5  # about unit variance in every direction (the ridge shrinks
    assert lam.max() / lam.min() < 2  # the weakest a little)
    out = embed_torch(member, faces, np.arange(len(faces)), 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # the whitened embedding is a different, still deterministic map of the same picture
    assert not np.allclose(out, raw, atol=1e-2)
    np.testing.assert_allclose(out, embed_torch(member, faces, np.arange(len(faces)), 32), atol=1e-6)


def test_an_ensemble_concatenates_its_members_and_exports_to_onnx(tmp_path):
    members = [_member(1), _member(2)]
    faces = _faces(120, 3)
    for m in members:
        m.set_whitening(embed_torch(m, faces, np.arange(len(faces)), 32))
    model = Ensemble(members).eval()
    x = eval_views(faces[:5], 32)
    with torch.no_grad():
        ref = model(x).numpy()
        parts = [m(x).numpy() for m in members]
    assert ref.shape == (5, 32)
    np.testing.assert_allclose(ref, np.concatenate(parts, 1) / np.sqrt(2), atol=1e-5)
    path = tmp_path / "ens.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input0"], output_names=["embedding"],
                      dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_whitening_uses_only_the_encoders_own_training_faces():
    meta = {"characters": ["a", "b", "c"], "split": ["train", "val", "train", "train", "calib"],
            "label": [0, 0, 1, 2, 2]}
    assert whitening_faces(meta, heldout=["c"]).tolist() == [0, 2]
