"""Each member's pooled features appended to the encoder graph (`training.encoder.pooled`): the graph finds them by
the names `export` gives them, adds the crop's and the mirror pass's, and returns the normalised concatenation the
numpy reference computes; the gallery still compares only the leading embedding."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.encoder import pooled
from training.encoder.classifier import gallery_dims
from training.manifest import sha256_of

SIZE, CH, DIM = 8, 5, 3


def _member(i: int | None, rng: np.random.Generator, flip: bool) -> tuple[list, list, str]:
    """One member as `export` lays it out: conv + relu, `<member>/enc/ReduceMean` over H, W (keepdims 0), a linear map
    (Gemm); with `flip` the same on the mirror image (`<member>/enc_1/...`), embeddings added and normalised."""
    p = "" if i is None else f"/members.{i}"
    w = numpy_helper.from_array(rng.normal(size=(CH, 3, 3, 3)).astype(np.float32), f"{p}/conv_w")
    fc = numpy_helper.from_array(rng.normal(size=(CH, DIM)).astype(np.float32), f"{p}/fc_w")
    nodes, passes = [], [("", "input0")]
    if flip:
        passes.append(("_1", f"{p}/flipped"))
        nodes.append(helper.make_node("Slice", ["input0", "starts", "ends", "axes", "steps"], [f"{p}/flipped"]))
    embs = []
    for suffix, src in passes:
        q = f"{p}/enc{suffix}"
        nodes += [
            helper.make_node("Conv", [src, w.name], [f"{q}/conv"], pads=[1, 1, 1, 1], name=f"{q}/Conv"),
            helper.make_node("Relu", [f"{q}/conv"], [f"{q}/relu"], name=f"{q}/Relu"),
            helper.make_node("ReduceMean", [f"{q}/relu"], [f"{q}/ReduceMean_output_0"], axes=[2, 3], keepdims=0,
                             name=f"{q}/ReduceMean"),
            helper.make_node("Gemm", [f"{q}/ReduceMean_output_0", fc.name], [f"{q}/fc"], name=f"{q}/Gemm"),
            helper.make_node("LpNormalization", [f"{q}/fc"], [f"{q}/unit"], axis=1, p=2),
        ]
        embs.append(f"{q}/unit")
    if flip:
        nodes.append(helper.make_node("Add", embs, [f"{p}/sum"]))
        embs = [f"{p}/sum"]
    nodes.append(helper.make_node("LpNormalization", embs, [f"{p}/emb"], axis=1, p=2))
    return nodes, [w, fc], f"{p}/emb"


def _encoder(members: int | None, flip: bool = True) -> onnx.ModelProto:
    """A stand-in for the exported graph: one encoder (`members` None) or an ensemble of `members`."""
    rng = np.random.default_rng(0)
    nodes, inits, outs = [], [], []
    for i in [None] if members is None else range(members):
        n, w, out = _member(i, rng, flip)
        nodes += n
        inits += w
        outs.append(out)
    nodes.append(helper.make_node("Concat", outs, ["joined"], axis=1))
    nodes.append(helper.make_node("LpNormalization", ["joined"], ["embedding"], axis=1, p=2))
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
              (("starts", [-1]), ("ends", [-SIZE - 1]), ("axes", [3]), ("steps", [-1]))]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM * len(outs)])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model: onnx.ModelProto, x: np.ndarray, extra: list[str] = ()) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input0": x})


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("members", [None, 1, 3])
def test_appended_output_is_the_normalised_concatenation(members):
    model = _encoder(members)
    groups = pooled.pooled_groups(model)
    n = 1 if members is None else members
    assert len(groups) == n and all(len(g) == 2 for g in groups)
    assert groups[0][0].endswith("/enc/ReduceMean_output_0") and groups[0][1].endswith("/enc_1/ReduceMean_output_0")
    x = np.random.default_rng(1).normal(size=(6, 3, SIZE, SIZE)).astype(np.float32)
    flat = [name for g in groups for name in g]
    before, *feats = _run(model, x, flat)
    out, added = pooled.append_pooled(model, weight=0.8)
    assert added == n * CH
    got = _run(out, x)[0]
    units = np.concatenate([_unit(feats[2 * k] + feats[2 * k + 1]) for k in range(n)], 1)
    want = _unit(np.concatenate([_unit(before), 0.8 / np.sqrt(n) * units], 1))
    assert got.shape == (6, DIM * n + CH * n)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the leading part is still the embedding, and the pooled part carries the weight it was given
    np.testing.assert_allclose(_unit(got[:, :DIM * n]), before, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got[:, DIM * n:], axis=1) / np.linalg.norm(got[:, :DIM * n], axis=1),
                               0.8, rtol=1e-4)
    # the mirror pass is in it: a mirrored picture gets the same pooled part
    mirrored = _run(out, np.ascontiguousarray(x[:, :, :, ::-1]))[0]
    np.testing.assert_allclose(mirrored[:, DIM * n:], got[:, DIM * n:], atol=1e-5)


def test_without_a_mirror_pass_each_member_has_one_pooled_tensor():
    model = _encoder(2, flip=False)
    assert [len(g) for g in pooled.pooled_groups(model)] == [1, 1]
    x = np.random.default_rng(2).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    out, added = pooled.append_pooled(model)
    assert added == 2 * CH and _run(out, x)[0].shape == (3, 2 * DIM + 2 * CH)


def test_refuses_a_graph_without_pooled_features_and_a_second_pass():
    model = _encoder(2)
    for node in model.graph.node:
        if node.op_type == "ReduceMean":
            node.name = node.name.replace("ReduceMean", "Mean")
    with pytest.raises(ValueError, match="no pooled features"):
        pooled.append_pooled(model)
    once, _ = pooled.append_pooled(_encoder(2))
    with pytest.raises(ValueError, match="already"):
        pooled.append_pooled(once)


def test_command_updates_the_export_info_and_the_gallery_keeps_the_embedding(tmp_path, monkeypatch):
    path = tmp_path / "enc.onnx"
    onnx.save(_encoder(2), str(path))
    info = {"dim": 2 * DIM + 4, "colour": {"bins": [2, 2, 1], "weight": 0.35},  # as if `colour` had run
            "gallery_compatible": ["0" * 64]}
    (tmp_path / "enc_export.json").write_text(json.dumps(info))
    before = sha256_of(path)
    monkeypatch.setattr("sys.argv", ["pooled", str(path), "--weight", "0.5"])
    pooled.main()
    new = json.loads((tmp_path / "enc_export.json").read_text())
    assert new["dim"] == 2 * DIM + 4 + 2 * CH and new["pooled"] == {"weight": 0.5, "dims": 2 * CH, "members": 2}
    # galleries made by the graph before (and by those it could use) stay usable: the compared part is unchanged
    assert new["gallery_compatible"] == ["0" * 64, before] and sha256_of(path) != before
    assert gallery_dims(new) == 2 * DIM == gallery_dims(info)
    assert gallery_dims({"dim": 10, "pooled": {"dims": 4}}) == 6 and gallery_dims({"dim": 10}) is None
    monkeypatch.setattr("sys.argv", ["pooled", str(path)])
    with pytest.raises(SystemExit, match="already"):
        pooled.main()


def test_the_card_gives_the_shipped_pooled_step_and_describes_it():
    from training.common import ROOT
    from training.encoder.card import pooled_cmd, pooled_text
    from training.encoder.classifier import step_widths

    info = json.loads((ROOT / "models" / "encoder_export.json").read_text())["blocks"][1]["export"]  # the closed one
    card = (ROOT / "docs" / "experiments" / "closed-encoder.md").read_text()  # what training.encoder.card writes
    assert "python -m training.encoder.pooled models/encoder.onnx --weight 1.0" in pooled_cmd(info["pooled"])
    width = step_widths(info)["pooled"]  # the graph's width right after the pooled step
    assert pooled_cmd(info["pooled"]) in card and pooled_text(info["pooled"], width) in card
    assert pooled_cmd(None) == "" == pooled_text(None, 8)
