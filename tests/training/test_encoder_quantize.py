"""int8 encoder graphs: convolutions quantized, the whitening (MatMul) left float, embeddings kept."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.common import ROOT
from training.encoder.quantize import QUANTIZED_OPS, calibration_feeds, graph_input_size
from training.quantize import quantize_graph


def _encoder_like(path, size: int = 16) -> None:
    """input0 (N, 3, S, S) -> Conv -> Relu -> Conv + skip -> Relu -> mean pool -> MatMul (a whitening) -> (N, 8)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    wh = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "whiten")
    nodes = [helper.make_node("Conv", ["input0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "whiten"], ["embedding"])]
    graph = helper.make_graph(nodes, "enc", [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["n", 3, size, size])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 8])], [w1, w2, wh])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads (the installed onnx writes a newer one by default)
    onnx.save(model, str(path))


def test_quantized_encoder_keeps_the_whitening_float_and_the_embeddings(tmp_path):
    src, dst = tmp_path / "enc.onnx", tmp_path / "enc_int8.onnx"
    _encoder_like(src)
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (40, 24, 24, 3), np.uint8)
    split = ["train", "val"] * 20
    feeds = calibration_feeds(faces, split, 16, n=16, batch=8)
    assert [f["input0"].shape for f in feeds] == [(8, 3, 16, 16), (8, 3, 16, 16)]  # only 'train' faces, as fed
    quantize_graph(src, dst, feeds, QUANTIZED_OPS)

    q = onnx.load(str(dst))
    kinds = [n.op_type for n in q.graph.node]
    assert kinds.count("Conv") == 2 and kinds.count("QuantizeLinear") >= 2 and "DequantizeLinear" in kinds
    matmul = next(n for n in q.graph.node if n.op_type == "MatMul")
    assert "whiten" in matmul.input  # the float whitening matrix itself, not a dequantized copy

    x = feeds[0]["input0"]
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.98


def test_the_calibration_size_is_the_one_the_graph_declares(tmp_path):
    """Faces are fed at the graph's own input size (a model constant lives in the model, not in a flag default)."""
    for size in (16, 24):
        _encoder_like(tmp_path / f"enc{size}.onnx", size)
        assert graph_input_size(tmp_path / f"enc{size}.onnx") == size
    assert graph_input_size(ROOT / "models" / "encoder.onnx") == 64  # the shipped encoder (64 px members)
