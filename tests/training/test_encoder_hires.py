"""A member at a larger input size added as classifier-only features (`training.encoder.hires`): the old graph sees
what cv2's INTER_AREA resize to its size would give it (so its output, the part the gallery compares, is unchanged),
and the new member's embedding and pooled features follow, weighted, as the torch model computes them."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch  # the train extra (`make test` installs it)
import torch.nn.functional as F

from training.common import ROOT
from training.encoder import hires
from training.encoder.appended import renamed
from training.encoder.classifier import gallery_dims, member_saw_heldout, open_set_view
from training.encoder.colour import append_colour
from training.encoder.export import Ensemble, Exported, embed_torch
from training.encoder.model import Encoder
from training.encoder.onnx_embed import MEAN, SCALE, STD, preprocess
from training.encoder.pooled import append_pooled
from training.manifest import sha256_of

SMALL, LARGE = 32, 48  # the 64 -> 96 px ratio of the shipped graph


def _faces(n: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, side, side, 3))
    return np.clip(base[rng.integers(0, 4, n)] + rng.normal(0, 30, (n, side, side, 3)), 0, 255).astype(np.uint8)


def _member(seed: int, faces: np.ndarray, size: int) -> Exported:
    torch.manual_seed(seed)
    m = Exported(Encoder(widths=(8, 8, 16, 16), dim=16).eval(), True, size).eval()
    m.set_whitening(embed_torch(m, faces, np.arange(len(faces)), size))
    return m


def _export(model: torch.nn.Module, path, size: int) -> onnx.ModelProto:
    torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(path), input_names=["input0"],
                      output_names=["embedding"], dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return onnx.load(str(path))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_area_matrix_is_cv2_inter_area():
    m = hires.area_matrix(96, 64)
    assert m.shape == (64, 96)
    np.testing.assert_allclose(m.sum(1), 1, atol=1e-6)  # a weighted mean of input pixels
    x = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    np.testing.assert_allclose(m @ x @ m.T, cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA), atol=1e-5)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hires")
    small_faces, large_faces = _faces(60, SMALL, 1), _faces(60, LARGE, 2)
    base_torch = Ensemble([_member(1, small_faces, SMALL), _member(2, small_faces, SMALL)]).eval()
    base = append_pooled(append_colour(_export(base_torch, tmp / "base.onnx", SMALL), list(MEAN), list(STD), SCALE,
                                       (6, 2, 2)))[0]
    big = _member(3, large_faces, LARGE)
    return base, big, _export(big, tmp / "big.onnx", LARGE)


@pytest.fixture(scope="module")
def same_size(graphs, tmp_path_factory):
    """A member of the graph's own input size (as `train --heldout none --size 64` for the shipped graph)."""
    twin = _member(4, _faces(60, SMALL, 3), SMALL)
    return twin, _export(twin, tmp_path_factory.mktemp("same") / "twin.onnx", SMALL)


def test_the_old_graph_sees_the_area_resized_crop_and_the_member_follows(graphs):
    base, big, member = graphs
    merged, added = hires.append_hires(base, member, weight=0.5)
    assert added == 16 + 16  # embedding + pooled features of the member
    assert hires.input_side(merged) == LARGE
    faces = _faces(7, LARGE, 5)
    x = preprocess(faces, LARGE)  # a crop of the larger size, as served
    got = _run(merged, x)
    old = _run(base, preprocess(faces, SMALL))  # the graph before, fed cv2's INTER_AREA resize of the same crop
    assert got.shape == (7, old.shape[1] + added)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    lead = _unit(got[:, :old.shape[1]])
    assert np.min(np.sum(lead * old, 1)) > 0.999  # the same (up to cv2's rounding to uint8 pixels)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        emb = big(xt).numpy()
        pool = sum(big.enc.stages(big.enc.stem(v)).mean(dim=(2, 3)) for v in (xt, torch.flip(xt, dims=[3])))
        pool = F.normalize(pool, dim=1).numpy()
    want = _unit(np.concatenate([_unit(got[:, :old.shape[1]]), 0.5 * emb, 0.5 * pool], 1))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_a_member_of_the_same_size_is_appended_without_a_resize(graphs, same_size):
    base, _, _ = graphs
    twin, member = same_size
    merged, added = hires.append_hires(base, member, weight=0.5)
    assert added == 16 + 16 and hires.input_side(merged) == SMALL
    assert not any(n.output[0].startswith(hires.PREFIX + "input_small") for n in merged.graph.node)  # no resize
    x = preprocess(_faces(5, SMALL, 6), SMALL)
    got, old = _run(merged, x), _run(base, x)
    np.testing.assert_allclose(_unit(got[:, :old.shape[1]]), old, atol=1e-5)  # exactly the graph before
    with torch.no_grad():
        xt = torch.from_numpy(x)
        emb = twin(xt).numpy()
        pool = sum(twin.enc.stages(twin.enc.stem(v)).mean(dim=(2, 3)) for v in (xt, torch.flip(xt, dims=[3])))
        pool = F.normalize(pool, dim=1).numpy()
    np.testing.assert_allclose(got, _unit(np.concatenate([old, 0.5 * emb, 0.5 * pool], 1)), atol=2e-4)


def test_an_ensemble_member_counts_as_one_block(graphs, tmp_path):
    base, _, _ = graphs
    faces = _faces(60, SMALL, 4)
    pair = Ensemble([_member(5, faces, SMALL), _member(6, faces, SMALL)]).eval()  # as export --run A,B
    merged, added = hires.append_hires(base, _export(pair, tmp_path / "pair.onnx", SMALL), weight=1.0)
    assert added == 2 * 16 + 2 * 16
    x = preprocess(_faces(4, SMALL, 7), SMALL)
    got, old = _run(merged, x), _run(base, x)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        emb = pair(xt).numpy()  # unit length: the ensemble's own normalisation
        pools = [F.normalize(sum(m.enc.stages(m.enc.stem(v)).mean(dim=(2, 3)) for v in (xt, torch.flip(xt, dims=[3]))),
                             dim=1).numpy() for m in pair.members]
    pool = np.concatenate(pools, 1) / np.sqrt(2)  # each member unit, the block unit
    np.testing.assert_allclose(got, _unit(np.concatenate([old, emb, pool], 1)), atol=2e-4)


def test_members_that_do_not_fit_are_refused(graphs, same_size):
    base, _, member = graphs
    with pytest.raises(ValueError, match="without appended features"):
        hires.append_hires(base, base)  # a served graph (colour, pooled), not an exported encoder
    with pytest.raises(ValueError, match="smaller"):
        hires.append_hires(member, same_size[1])  # a 32 px member for a 48 px graph
    merged, _ = hires.append_hires(base, member)
    with pytest.raises(ValueError, match="already"):
        hires.append_hires(merged, member)


def test_the_command_writes_the_graph_and_its_info(graphs, tmp_path):
    base, _, member = graphs
    onnx.save(base, str(tmp_path / "enc.onnx"))
    onnx.save(member, str(tmp_path / "big.onnx"))
    dim = _run(base, preprocess(_faces(1, SMALL, 8), SMALL)).shape[1]  # 2 x 16 + 24 colour bins + 2 x 16 pooled
    info = {"size": SMALL, "dim": dim, "flip_tta": True, "heldout": ["x"], "runs": ["a", "b"],
            "colour": {"bins": [6, 2, 2], "weight": 0.35}, "pooled": {"dims": 32, "weight": 1.0, "members": 2},
            "gallery_compatible": ["f" * 64]}
    (tmp_path / "enc_export.json").write_text(json.dumps(info))
    (tmp_path / "big_export.json").write_text(json.dumps({"size": LARGE, "dim": 16, "flip_tta": True,
                                                          "heldout": ["x"], "runs": ["c"], "steps_per_run": [9]}))
    before = sha256_of(tmp_path / "enc.onnx")
    subprocess.run([sys.executable, "-m", "training.encoder.hires", str(tmp_path / "enc.onnx"),
                    str(tmp_path / "big.onnx"), "--out", str(tmp_path / "out.onnx")], check=True, cwd=ROOT)
    new = json.loads((tmp_path / "out_export.json").read_text())
    assert new["size"] == LARGE and new["dim"] == dim + 32
    assert new["hires"] == {"runs": ["c"], "steps": [9], "size": LARGE, "base_size": SMALL, "weight": 0.5, "dims": 32,
                            "heldout": ["x"]}
    assert new["gallery_compatible"] == ["f" * 64, before]  # galleries of the graph before stay usable
    assert gallery_dims(new) == gallery_dims(info) == 2 * 16  # the gallery still compares the two old members
    assert _run(onnx.load(str(tmp_path / "out.onnx")), preprocess(_faces(2, LARGE, 9), LARGE)).shape == (2, dim + 32)


def test_a_member_that_saw_the_held_out_characters_needs_the_flag_and_leaves_the_open_set(graphs, same_size, tmp_path):
    base, _, _ = graphs
    onnx.save(base, str(tmp_path / "enc.onnx"))
    onnx.save(same_size[1], str(tmp_path / "all.onnx"))
    dim = _run(base, preprocess(_faces(1, SMALL, 8), SMALL)).shape[1]
    info = {"size": SMALL, "dim": dim, "flip_tta": True, "heldout": ["x"], "runs": ["a", "b"],
            "colour": {"bins": [6, 2, 2], "weight": 0.35}, "pooled": {"dims": 32, "weight": 1.0, "members": 2}}
    (tmp_path / "enc_export.json").write_text(json.dumps(info))
    (tmp_path / "all_export.json").write_text(json.dumps({"size": SMALL, "dim": 16, "flip_tta": True, "heldout": [],
                                                          "runs": ["all"], "steps_per_run": [9]}))
    cmd = [sys.executable, "-m", "training.encoder.hires", str(tmp_path / "enc.onnx"), str(tmp_path / "all.onnx"),
           "--out", str(tmp_path / "out.onnx")]
    refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "heldout" in refused.stderr and not (tmp_path / "out.onnx").exists()
    subprocess.run([*cmd, "--every-character"], check=True, cwd=ROOT)
    new = json.loads((tmp_path / "out_export.json").read_text())
    assert new["hires"]["heldout"] == [] and new["size"] == SMALL and new["dim"] == dim + 32
    assert member_saw_heldout(new) and not member_saw_heldout(info)
    assert gallery_dims(new) == 2 * 16  # the gallery never sees the member
    e = {"faces": _run(onnx.load(str(tmp_path / "out.onnx")), preprocess(_faces(3, SMALL, 9), SMALL))}
    view = open_set_view(e, new)["faces"]  # what the open-set measurements use: the graph before, renormalised
    np.testing.assert_allclose(view, _unit(e["faces"][:, :dim]), atol=1e-6)
    np.testing.assert_allclose(view, _run(base, preprocess(_faces(3, SMALL, 9), SMALL)), atol=1e-5)
    assert open_set_view(e, info) is e


def test_an_ensemble_member_exported_with_the_same_symbolic_dims_runs(graphs, tmp_path):
    """Exporters name unknown sizes `unk__<n>` in every graph; put together, one name would stand for two sizes and
    onnxruntime refuses to run (as the real 4 + 2 member graphs did). `renamed` gives the member's its own names."""
    base, _, _ = graphs
    faces = _faces(60, SMALL, 4)
    pair = _export(Ensemble([_member(7, faces, SMALL), _member(8, faces, SMALL)]).eval(), tmp_path / "p.onnx", SMALL)
    pair = onnx.shape_inference.infer_shapes(pair)  # as quantize leaves it: value_info with unk__ sizes

    def params(g):
        return {d.dim_param for v in [*g.value_info, *g.output] for d in v.type.tensor_type.shape.dim if d.dim_param}

    sub = renamed(pair, "hires/member", {"input0"})
    assert params(sub) - {"batch"} and not (params(sub) - {"batch"}) & params(pair.graph)
    merged, added = hires.append_hires(onnx.shape_inference.infer_shapes(base), pair, weight=1.0)
    assert _run(merged, preprocess(_faces(3, SMALL, 2), SMALL)).shape[1] == _run(base, preprocess(
        _faces(1, SMALL, 2), SMALL)).shape[1] + added
