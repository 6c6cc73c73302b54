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
    trained, model, size, cks = export.served_modules(["a", "b"], ensemble=True)
    with torch.no_grad():
        got = model(x)
        want = torch.cat([unit_with_mirror(a, x), unit_with_mirror(b, x)], 1) / np.sqrt(2)
        _, one, _, _ = export.served_modules(["a"], ensemble=False)
        alone = one(x)
        assert torch.allclose(trained(x), want, atol=1e-5)
    assert size == SIZE and got.shape == (5, 12) and [ck["steps_done"] for ck in cks] == [10, 11]
    assert torch.allclose(got, want, atol=1e-5)  # folded BatchNorm, same numbers
    # the cosine of two ensemble embeddings is the mean of the members' cosines (never a sum of their spaces)
    cos = (got[0] * got[1]).sum()
    members = [(unit_with_mirror(m, x)[0] * unit_with_mirror(m, x)[1]).sum() for m in (a, b)]
    assert torch.isclose(cos, sum(members) / 2, atol=1e-5)
    assert torch.allclose(alone, unit_with_mirror(a, x), atol=1e-5)


def test_the_exported_ensemble_graph_gives_the_torch_numbers(runs, tmp_path):
    root, _, _ = runs
    _, model, _, _ = export.served_modules(["a", "b"], ensemble=True)
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
        export.served_modules(["a", "c"], ensemble=True)


def test_the_card_names_an_ensembles_members_with_their_configs_and_steps(runs, monkeypatch):
    import json

    from training.general import card

    root, _, _ = runs
    monkeypatch.setattr(card, "OUT", root)
    for name, steps, minutes in (("a", 9547, 105.2), ("b", 8600, 95.0)):
        (root / name / "history.json").write_text(json.dumps({"steps_done": steps, "minutes": minutes}))
    (root / "e").mkdir()
    info = {"run": "e", "dim": 12, "int8_bytes": 6_400_000, "int8_mean_cosine_to_float": 0.9994,
            "members": [{"run": "a", "steps": 9547, "dim": 6}, {"run": "b", "steps": 8600, "dim": 6}]}
    (root / "e" / "general_export.json").write_text(json.dumps(info))
    assert card.members("e") == ["a", "b"]
    text = card.general_text("e", info)
    assert text.startswith("12-d, run `e`: an ensemble of `a` (6-d, config `training/general/configs/a.toml`: "
                           "9,547 steps in 105 min on 2 CPU cores); `b` (6-d, config")
    assert "int8 6.4 MB" in text
    single = {"run": "a", "dim": 6, "int8_bytes": 3_200_000, "int8_mean_cosine_to_float": 0.9995}
    (root / "a" / "general_export.json").write_text(json.dumps(single))
    assert card.members("a") == ["a"]
    assert card.general_text("a", single) == ("6-d, run `a`, config `training/general/configs/a.toml`: 9,547 steps "
                                             "in 105 min on 2 CPU cores, int8 3.2 MB, mean cosine to the float graph "
                                             "0.9995")
