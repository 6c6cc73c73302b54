"""Pre-processing from a manifest `input` spec: letterbox to the full size or, with `pad_multiple`, to a smaller
canvas of whole multiples; boxes found on that canvas map back into the picture's pixels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inference.bundle import make_session
from inference.detect import Detector
from inference.manifest import DetectorSpec
from inference.preprocess import InputSpec, fit


def spec(**extra) -> InputSpec:
    return InputSpec.from_manifest({"size": [448, 448], "resize": "letterbox", "pad_value": 114, **extra})


def test_full_letterbox_is_the_square():
    out, (sx, sy, px, py) = fit(np.zeros((576, 1024, 3), np.uint8), spec())
    assert out.shape == (448, 448, 3)
    assert (sx, sy) == (448 / 1024, 252 / 576) and (px, py) == (0.0, 98.0)
    assert (out[:98] == 114).all() and (out[98:350] == 0).all() and (out[350:] == 114).all()


@pytest.mark.parametrize("h, w, canvas", [(576, 1024, (256, 448)),  # 16:9 -> 448 x 252 -> 448 x 256
                                          (1024, 576, (448, 256)),
                                          (300, 300, (448, 448)),  # square: the full size
                                          (100, 2000, (32, 448))])  # very wide: one row of cells
def test_pad_multiple_pads_only_to_the_next_multiple(h, w, canvas):
    img = np.random.default_rng(0).integers(0, 100, (h, w, 3), dtype=np.uint8)
    out, (sx, sy, px, py) = fit(img, spec(pad_multiple=32))
    assert out.shape[:2] == canvas and out.shape[0] % 32 == 0 and out.shape[1] % 32 == 0
    nw, nh = round(w * sx), round(h * sy)
    assert max(nw, nh) == 448
    # the fitted picture sits centred in the canvas, the rest is padding
    assert (px, py) == ((canvas[1] - nw) // 2, (canvas[0] - nh) // 2)
    inner = out[int(py):int(py) + nh, int(px):int(px) + nw]
    assert inner.max() < 100
    assert (out == 114).sum() == (canvas[0] * canvas[1] - nw * nh) * 3


@pytest.mark.parametrize("bad", [-32, 30, 1.5, True, "32"])
def test_pad_multiple_must_divide_the_size(bad):
    with pytest.raises(ValueError, match="pad_multiple"):
        spec(pad_multiple=bad)


def test_pad_multiple_needs_letterbox():
    with pytest.raises(ValueError, match="letterbox"):
        spec(pad_multiple=32, resize="squash")


def shape_following_detector(path):
    """A 'boxes' graph with symbolic height and width whose one row is the middle half of whatever canvas it is
    fed: [W/4, H/4, 3W/4, 3H/4, 0.9]."""
    shape = helper.make_node("Shape", ["images"], ["shape"])
    hw = helper.make_node("Slice", ["shape", "start", "end"], ["hw"])  # (H, W) as int64
    f = helper.make_node("Cast", ["hw"], ["hwf"], to=TensorProto.FLOAT)
    wh = helper.make_node("Gather", ["hwf", "rev"], ["wh"], axis=0)  # (W, H)
    lo = helper.make_node("Mul", ["wh", "quarter"], ["lo"])
    hi = helper.make_node("Mul", ["wh", "three_quarters"], ["hi"])
    row = helper.make_node("Concat", ["lo", "hi", "score"], ["row"], axis=0)
    out = helper.make_node("Reshape", ["row", "out_shape"], ["boxes"])
    inits = [helper.make_tensor("start", TensorProto.INT64, [1], [2]),
             helper.make_tensor("end", TensorProto.INT64, [1], [4]),
             helper.make_tensor("rev", TensorProto.INT64, [2], [1, 0]),
             helper.make_tensor("quarter", TensorProto.FLOAT, [], [0.25]),
             helper.make_tensor("three_quarters", TensorProto.FLOAT, [], [0.75]),
             helper.make_tensor("score", TensorProto.FLOAT, [1], [0.9]),
             helper.make_tensor("out_shape", TensorProto.INT64, [3], [1, 1, 5])]
    graph = helper.make_graph([shape, hw, f, wh, lo, hi, row, out], "shape_following",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("pad_multiple", [0, 32])
def test_detector_feeds_the_canvas_and_maps_boxes_back(tmp_path, pad_multiple):
    sess = make_session(shape_following_detector(tmp_path / "d.onnx"), 1)
    inp = {"name": "images", "size": [448, 448], "resize": "letterbox"}
    if pad_multiple:
        inp["pad_multiple"] = pad_multiple
    det = Detector(DetectorSpec.parse({"format": "boxes", "score_threshold": 0.5, "nms_iou": 0.5, "input": inp}), sess)
    boxes, scores = det(np.zeros((576, 1024, 3), np.uint8))
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9)
    r = 448 / 1024  # the picture is 448 x 252 on the canvas, centred
    ch = 256 if pad_multiple else 448  # the canvas the graph was fed
    py = (ch - 252) // 2
    expect = [448 / 4 / r, (ch / 4 - py) / (252 / 576), 3 * 448 / 4 / r, (3 * ch / 4 - py) / (252 / 576)]
    np.testing.assert_allclose(boxes[0], expect, rtol=1e-5)


def _plain_to_tensor(batch, color, scale, mean, std):
    """The textbook formula the fast path must equal: ((x * scale) - mean) / std, channels first."""
    x = batch.astype(np.float64)
    if color == "BGR":
        x = x[..., ::-1]
    elif color == "GRAY":
        x = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = (x * scale - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    return x.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("color, mean, std", [("RGB", [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
                                              ("BGR", [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]),
                                              ("RGB", [0.5], [0.5]),  # one value for every channel
                                              ("GRAY", [0.5], [0.25])])
def test_to_tensor_is_the_plain_formula(color, mean, std):
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    s = InputSpec.from_manifest({"size": [37, 53], "color": color, "mean": mean, "std": std})
    x = s.to_tensor(batch)
    want = _plain_to_tensor(batch, color, s.scale, mean, std)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"] and x.shape == want.shape
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)
    # channel order: the first plane of a BGR model is the picture's blue channel
    if color == "BGR":
        np.testing.assert_allclose(x[:, 0], (batch[..., 2] / 255 - 0.1) / 0.5, rtol=1e-5, atol=1e-5)


def test_to_tensor_takes_a_strided_view_and_rejects_a_wrong_shape():
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, (1, 80, 90, 3), dtype=np.uint8)
    view = big[:, 10:50, 20:70]  # not contiguous, as a crop of a decoded picture is
    s = InputSpec.from_manifest({"size": [40, 50]})
    np.testing.assert_allclose(s.to_tensor(view), _plain_to_tensor(view, "RGB", s.scale, [0], [1]), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        s.to_tensor(np.zeros((40, 50, 3), np.uint8))


def test_sessions_do_not_spin_between_runs(tmp_path):
    """Intra-op threads must not busy-wait after a run: on a small box they took the cores the numpy / OpenCV /
    Pillow steps between the runs needed (README, Performance)."""
    sess = make_session(shape_following_detector(tmp_path / "d.onnx"), threads=2)
    opts = sess.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 2
