"""training/general/export.py: one run, or an ensemble of runs side by side, as the graph that is served."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training.encoder.augment import eval_views
from training.encoder.model import Encoder
from training.general import export

SIZE = 32


def save_run(root, name: str, seed: int, dim: int = 6, size: int = SIZE) -> Encoder:
    torch.manual_seed(seed)
    enc = Encoder(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1), dim=dim)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that folding them is tested
        enc.bn.running_mean.uniform_(-0.5, 0.5)
        enc.bn.running_var.uniform_(0.5, 2.0)
    (root / name).mkdir(parents=True)
    torch.save({"state_dict": enc.state_dict(), "steps_done": 10 + seed,
                "config": {"widths": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "dim": dim, "size": size}},
               root / name / "encoder.pt")
    return enc.eval()


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "OUT", tmp_path)
    return tmp_path, save_run(tmp_path, "a", 0), save_run(tmp_path, "b", 1)


def unit_with_mirror(enc: Encoder, x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(enc(x), dim=1) + F.normalize(enc(torch.flip(x, dims=[3])), dim=1)
    return F.normalize(e, dim=1)


def test_an_ensemble_puts_the_members_unit_embeddings_side_by_side(runs):
    _, a, b = runs
    x = eval_views(np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8), SIZE)
    model, size = export.served_module(["a", "b"], ensemble=True)
    with torch.no_grad():
        got = model(x)
        want = torch.cat([unit_with_mirror(a, x), unit_with_mirror(b, x)], 1) / np.sqrt(2)
        one, _ = export.served_module(["a"], ensemble=False)
        alone = one(x)
    assert size == SIZE and got.shape == (5, 12)
    assert torch.allclose(got, want, atol=1e-5)  # folded BatchNorm, same numbers
    # the cosine of two ensemble embeddings is the mean of the members' cosines (never a sum of their spaces)
    cos = (got[0] * got[1]).sum()
    members = [(unit_with_mirror(m, x)[0] * unit_with_mirror(m, x)[1]).sum() for m in (a, b)]
    assert torch.isclose(cos, sum(members) / 2, atol=1e-5)
    assert torch.allclose(alone, unit_with_mirror(a, x), atol=1e-5)


def test_the_exported_ensemble_graph_gives_the_torch_numbers(runs, tmp_path):
    root, _, _ = runs
    model, _ = export.served_module(["a", "b"], ensemble=True)
    path = tmp_path / "e.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, SIZE, SIZE),), str(path), input_names=["input0"],
                      output_names=["embedding"], dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    x = eval_views(np.random.default_rng(1).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8), SIZE)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(got, model(x).numpy(), atol=1e-4)


def test_members_of_different_input_sizes_are_refused(runs):
    root, _, _ = runs
    save_run(root, "c", 2, size=48)
    with pytest.raises(SystemExit, match="different input sizes"):
        export.served_module(["a", "c"], ensemble=True)
