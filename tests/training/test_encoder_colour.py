"""The colour histogram appended to the encoder graph (`training.encoder.colour`): the ONNX branch computes exactly
what the numpy reference does, the joined output is the normalised concatenation, and the histogram means colour."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.encoder import colour

MEAN, STD, SCALE = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 1 / 255


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the encoder input (N, 3, H, W), as `training.encoder.onnx_embed.preprocess`."""
    x = rgb.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(SCALE)
    return (x - np.float32(0.5)) / np.float32(0.5)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _toy_encoder(dim: int = 8, size: int = 16) -> onnx.ModelProto:
    """A stand-in encoder: global average pool, a fixed linear map, L2 normalisation (output 'embedding')."""
    w = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input0"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["lin"]),
        helper.make_node("LpNormalization", ["lin"], ["embedding"], axis=1, p=2),
    ]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 3, size, size])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _hist_graph(bins=colour.BINS, size: int = 16) -> onnx.ModelProto:
    nodes, inits = colour.colour_nodes("x", "out", MEAN, STD, SCALE, bins, 1.0)
    g = helper.make_graph(nodes, "hist", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, size, size])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", int(np.prod(bins))])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _pictures(n: int = 24, size: int = 16) -> np.ndarray:
    """Random pictures plus the cases that sit on bin edges: greys, pure hues, 1/3 and 2/3 levels, near-red wrap."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    imgs[0] = 128
    imgs[1] = (255, 0, 0)
    imgs[2] = (85, 170, 255)
    imgs[3, :, :8] = (255, 0, 1)  # hue just below 360 degrees
    imgs[3, :, 8:] = (255, 1, 0)
    imgs[4] = rng.choice([0, 85, 170, 255], (size, size, 3)).astype(np.uint8)
    return imgs


def test_the_graph_branch_matches_the_numpy_reference_exactly():
    imgs = _pictures()
    x = _normalise(imgs)
    got = _session(_hist_graph()).run(None, {"x": x})[0]
    want = colour.colour_hist(x, MEAN, STD, SCALE)
    assert got.shape == (len(imgs), 216)
    # same bins for every pixel: only float rounding in the final normalisation may differ
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_the_histogram_follows_colour_and_ignores_a_mirror_flip():
    size = 16
    red = np.zeros((1, size, size, 3), np.uint8)
    red[...] = (230, 20, 20)
    blue = red[..., ::-1].copy()
    half = red.copy()
    half[:, :, : size // 2] = blue[:, :, : size // 2]
    h = colour.colour_hist(_normalise(np.concatenate([red, blue, half, half[:, :, ::-1]])), MEAN, STD, SCALE)
    # a flat red picture puts everything in one bin: red hue (bin 0), full saturation, top value
    assert np.count_nonzero(h[0]) == 1 and np.argmax(h[0]) == 0 * 9 + 2 * 3 + 2
    # blue lands in another hue bin (240 deg of 360 -> bin 16 of 24)
    assert np.argmax(h[1]) // 9 == 16
    assert float(h[0] @ h[1]) == 0.0
    # half red, half blue: two equal bins, the same for the mirror image
    assert np.count_nonzero(h[2]) == 2 and np.allclose(h[2], h[3])
    # the hue follows OpenCV's HSV conversion (degrees / 2 in 8-bit pictures) away from bin edges
    rgb = np.random.default_rng(2).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    pooled = rgb.reshape(1, size // 2, 2, size // 2, 2, 3).mean((2, 4)).astype(np.float32) / 255
    cv_h = cv2.cvtColor(pooled[0], cv2.COLOR_RGB2HSV)[..., 0]  # float input: hue in degrees
    counts = np.bincount(np.floor(cv_h / 15).astype(int).ravel() % 24, minlength=24)
    ours = (colour.colour_hist(_normalise(rgb), MEAN, STD, SCALE)[0] ** 2).reshape(24, 9).sum(1)
    assert np.abs(ours * (size // 2) ** 2 - counts).sum() <= 4  # pixels on an edge may go either way


def test_append_colour_joins_the_embedding_and_the_histogram(tmp_path):
    enc = _toy_encoder()
    joined = colour.append_colour(enc, MEAN, STD, SCALE, weight=0.35)
    assert [o.name for o in joined.graph.output] == ["embedding"]
    assert joined.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 8 + 216
    x = _normalise(_pictures())
    base = _session(enc).run(None, {"input0": x})[0]
    got = _session(joined).run(None, {"input0": x})[0]
    want = np.concatenate([base, 0.35 * colour.colour_hist(x, MEAN, STD, SCALE)], 1)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="already"):
        colour.append_colour(joined, MEAN, STD, SCALE)


def test_the_command_rewrites_the_graph_and_its_export_info(tmp_path, monkeypatch, capsys):
    path = tmp_path / "encoder.onnx"
    onnx.save(_toy_encoder(), str(path))
    (tmp_path / "encoder_export.json").write_text(json.dumps({"size": 16, "dim": 8, "flip_tta": True}))
    monkeypatch.setattr("sys.argv", ["colour", str(path), "--weight", "0.5", "--bins", "12", "3", "3"])
    colour.main()
    info = json.loads((tmp_path / "encoder_export.json").read_text())
    assert info["dim"] == 8 + 108 and info["colour"] == {"bins": [12, 3, 3], "weight": 0.5} and info["flip_tta"]
    out = _session(onnx.load(str(path))).run(None, {"input0": _normalise(_pictures()[:3])})[0]
    assert out.shape == (3, 116)
    with pytest.raises(SystemExit, match="already"):  # running it twice would stack two histograms
        colour.main()
