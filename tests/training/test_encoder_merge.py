"""Adding members to an exported ensemble (`training.encoder.merge`): the merged graph computes what the ensemble
export of all the runs computes, its members are named as `export` names them, and members that do not fit are
refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch  # the train extra (`make test` installs it)

from training.encoder import merge, pooled
from training.encoder.augment import eval_views
from training.encoder.colour import append_colour
from training.encoder.export import Ensemble, Exported, embed_torch
from training.encoder.model import Encoder


def _faces(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 96, 96, 3)).astype(np.uint8)


def _member(seed: int, faces: np.ndarray, depths=(1, 1, 2, 1)) -> Exported:
    torch.manual_seed(seed)
    m = Exported(Encoder(widths=(8, 8, 16, 16), depths=depths, dim=16).eval(), True, 32).eval()
    m.set_whitening(embed_torch(m, faces, np.arange(len(faces)), 32))
    return m


def _export(model: torch.nn.Module, path: Path) -> onnx.ModelProto:
    torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), str(path), input_names=["input0"], output_names=["embedding"],
                      dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
    return onnx.load(str(path))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]


def test_merged_graph_equals_the_ensemble_of_all_runs(tmp_path):
    faces = _faces(80, 0)
    a, b, c = _member(1, faces), _member(2, faces), _member(3, faces, depths=(1, 2, 2, 2))
    base = _export(Ensemble([a, b]).eval(), tmp_path / "base.onnx")
    new = _export(c, tmp_path / "new.onnx")
    merged = merge.merge(base, 2, [new])
    x = eval_views(faces[:6], 32)
    with torch.no_grad():
        want = Ensemble([a, b, c]).eval()(x).numpy()
    got = _run(merged, x.numpy())
    assert got.shape == (6, 48)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the new member is named as the ensemble export names its third member: the pooled step finds all three
    groups = pooled.pooled_groups(merged)
    assert [len(g) for g in groups] == [2, 2, 2] and groups[2][0].startswith("/members.2/enc/")
    with_pool, added = pooled.append_pooled(merged)
    assert added == 3 * 16 and _run(with_pool, x.numpy()).shape == (6, 48 + 48)


def test_members_are_added_before_colour_and_must_fit_the_base(tmp_path):
    faces = _faces(40, 1)
    base = _export(_member(1, faces), tmp_path / "one.onnx")
    coloured = append_colour(base, [0.5] * 3, [0.5] * 3, 1 / 255, (4, 2, 2))
    with pytest.raises(ValueError, match="before the colour"):
        merge.merge(coloured, 1, [base])
    info = {"size": 64, "flip_tta": True, "heldout": ["x"], "whitening": {"faces": 9}, "dim": 128, "runs": ["a"],
            "steps_per_run": [10]}
    ok = merge.merged_info({**info, "runs": ["a", "b"], "steps_per_run": [10, 20], "dim": 256,
                            "whitening": [{"faces": 1}, {"faces": 2}]}, [{**info, "runs": ["c"], "steps_per_run": [30]}],
                           tmp_path / "out.onnx")
    assert ok["runs"] == ["a", "b", "c"] and ok["steps_per_run"] == [10, 20, 30] and ok["dim"] == 384
    assert ok["whitening"] == [{"faces": 1}, {"faces": 2}, {"faces": 9}]
    for key, bad in (("size", 80), ("heldout", ["y"]), ("flip_tta", False), ("whitening", None)):
        with pytest.raises(ValueError):
            merge.merged_info(info, [{**info, key: bad}], tmp_path / "out.onnx")


def test_command_writes_the_graph_and_its_export_info(tmp_path, monkeypatch):
    faces = _faces(40, 2)
    info = {"size": 32, "flip_tta": True, "heldout": [], "whitening": {"faces": 40}, "dim": 16}
    for name, seed in (("base", 1), ("new", 2)):
        _export(_member(seed, faces), tmp_path / f"{name}.onnx")
        (tmp_path / f"{name}_export.json").write_text(json.dumps({**info, "runs": [name], "steps_per_run": [seed]}))
    monkeypatch.setattr("sys.argv", ["merge", str(tmp_path / "base.onnx"), str(tmp_path / "new.onnx"),
                                     "--out", str(tmp_path / "out" / "ens.onnx")])
    merge.main()
    out = json.loads((tmp_path / "out" / "ens_export.json").read_text())
    assert out["runs"] == ["base", "new"] and out["dim"] == 32 and out["bytes"] > 0
    got = _run(onnx.load(str(tmp_path / "out" / "ens.onnx")), eval_views(faces[:3], 32).numpy())
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
