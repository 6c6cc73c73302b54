"""int8 detector graphs: the network is quantized, the decoding (cell grid, box distances, scores) stays float."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import torch  # the train extra (`make test` installs it)

from training.detector import ship
from training.detector.model import STRIDES, HeadNet
from training.detector.quantize import calibration_feeds, float_nodes, quantize
from training.detector.train import export


def _net_with_fixed_boxes(half: float) -> HeadNet:
    """A small random net whose box branch always says `half` strides to each side: every output box is then
    a square of side 2 * half * stride centred on its cell, whatever the quantized backbone computes."""
    torch.manual_seed(0)
    net = HeadNet(w=(8, 8, 16, 16, 16), fpn=16).eval()
    with torch.no_grad():
        net.reg.weight.zero_()
        net.reg.bias.fill_(math.log(half))
    return net


def test_quantized_detector_keeps_the_decoding_float(tmp_path):
    src, dst = tmp_path / "det.onnx", tmp_path / "det_int8.onnx"
    export(_net_with_fixed_boxes(1.5), src, size=320)
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (int(rng.integers(200, 500)), int(rng.integers(200, 500)), 3), np.uint8)
                for _ in range(6)]
    feeds = calibration_feeds(pictures, [320, 352])
    assert {f["images"].shape[2] % 32 for f in feeds} == {0} and max(f["images"].shape[3] for f in feeds) <= 352
    quantize(src, dst, feeds)

    q = onnx.load(str(dst))
    kinds = [n.op_type for n in q.graph.node]
    assert kinds.count("QuantizeLinear") >= 10 and "DequantizeLinear" in kinds  # the convolutions are int8
    producer = {t: n.name for n in q.graph.node for t in n.output}
    decoding = set(float_nodes(q))
    assert {"Sigmoid", "Exp"} <= {n.op_type for n in q.graph.node if n.name in decoding}
    quantized_inputs = [n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert not [t for t in quantized_inputs if producer.get(t) in decoding]  # nothing after the decoding roots
    assert ship.onnx_size(dst) == (320, True)  # still made for 320 and any size, as the manifest needs

    # served far larger than it was calibrated at, the boxes still sit exactly on the cell grid: a rounded
    # (quantized) grid would be off by several pixels at 640
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    x = rng.random((1, 3, 640, 608), np.float32)
    rows = sess.run(None, {"images": x})[0][0]
    side = rows[:, 2] - rows[:, 0]
    np.testing.assert_allclose(rows[:, 3] - rows[:, 1], side, atol=1e-3)
    strides = side / 3.0
    assert np.isin(np.round(strides), STRIDES).all()
    np.testing.assert_allclose(strides, np.round(strides), atol=1e-3)
    for lo, hi in ((0, 2), (1, 3)):  # x, then y
        centre_cells = (rows[:, lo] + rows[:, hi]) / 2 / strides - 0.5
        np.testing.assert_allclose(centre_cells, np.round(centre_cells), atol=1e-3)
    assert (rows[:, 0] + rows[:, 2]).max() / 2 < 608 and (rows[:, 1] + rows[:, 3]).max() / 2 < 640

    # and the scores follow the float graph's
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0][0]
    assert abs(float(rows[:, 4].max()) - float(ref[:, 4].max())) < 0.05
    assert abs(float(np.median(rows[:, 4])) - float(np.median(ref[:, 4]))) < 0.05
