"""Tiny ONNX bundles that the tests build themselves (onnx.helper), so tests of loading, pre- and
post-processing depend on no trained weights.

- `boxes` detector: outputs a fixed set of candidate rows (x1, y1, x2, y2, score) in model-input
  pixels plus 0 * mean(input), so the graph really consumes the picture. The rows include an
  overlapping duplicate (NMS must drop it) and a low-score row (the threshold must drop it).
- encoder: global average pool -> linear -> (N, D): a real, content-dependent embedding (colour).
- classifier: linear_npz (W, b) or, in the reference layout, an ONNX MatMul + Add + Softmax.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DET_SIZE = 320
# rows in model-input pixels (320x320 letterboxed)
DET_ROWS = np.array([
    [40, 100, 120, 190, 0.92],   # head 1
    [200, 120, 260, 180, 0.81],  # head 2
    [44, 104, 118, 186, 0.70],   # duplicate of head 1 (IoU ~0.85) -> removed by NMS
    [280, 10, 300, 30, 0.05],    # below threshold -> dropped
], np.float32)
LABELS = ["mori_calliope", "aqua_(konosuba)", "c.c.", "rem_(re:zero)", "misaka_mikoto"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(model, path: Path) -> Path:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _constant_rows_detector(path: Path, rows: np.ndarray, size: int, input_name: str, output_name: str) -> Path:
    """(1, 3, size, size) -> the given rows as (1, N, K), plus 0 * mean(input) so the graph consumes the picture."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, len(rows), rows.shape[1]])
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["m"], keepdims=1),  # (1,1,1,1)
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Reshape", ["z", "shape111"], ["z3"]),
        helper.make_node("Add", ["rows", "z3"], [output_name]),
    ]
    inits = [numpy_helper.from_array(rows[None].astype(np.float32), "rows"),
             numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
             numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape111")]
    g = helper.make_graph(nodes, f"tiny_{output_name}_detector", [x], [y], inits)
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def boxes_detector(path: Path, rows: np.ndarray = DET_ROWS, size: int = DET_SIZE, input_name="images") -> Path:
    """The project's format: rows x1, y1, x2, y2, score in model-input pixels."""
    return _constant_rows_detector(path, rows, size, input_name, "dets")


def yolov5_detector(path: Path, rows: np.ndarray, size: int = 640) -> Path:
    """Reference-format detector: (1, N, 6) rows cx, cy, w, h, obj, cls in 640x640 pixels."""
    return _constant_rows_detector(path, rows, size, "images", "output")


def encoder(path: Path, dim: int = 16, size: int = 64, batch=None, input_name="input0", seed: int = 0) -> Path:
    """(N, 3, size, size) -> GlobalAveragePool -> (N, 3) -> tanh(x W1) W2 -> (N, dim)."""
    rng = np.random.default_rng(seed)
    n = batch if batch is not None else "N"
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [n, 3, size, size])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [n, dim])
    nodes = [
        helper.make_node("GlobalAveragePool", [input_name], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "W2"], ["embedding"]),
    ]
    inits = [numpy_helper.from_array((rng.standard_normal((3, 32)) * 2).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.standard_normal((32, dim)).astype(np.float32), "W2")]
    g = helper.make_graph(nodes, "tiny_encoder", [x], [y], inits)
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def softmax_classifier(path: Path, dim: int, classes: int, input_name="input_1:0", seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, dim])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, classes])
    nodes = [helper.make_node("MatMul", [input_name, "W"], ["l"]), helper.make_node("Add", ["l", "b"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probs"], axis=-1)]
    inits = [numpy_helper.from_array((rng.standard_normal((dim, classes)) * 3).astype(np.float32), "W"),
             numpy_helper.from_array(np.zeros(classes, np.float32), "b")]
    g = helper.make_graph(nodes, "tiny_classifier", [x], [y], inits)
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def set_manifest_key(directory: Path, section: str, key: str, value) -> Path:
    """Set `manifest[section][key] = value` in the bundle at `directory` (a tiny bundle with one more setting)."""
    path = Path(directory) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[section][key] = value
    path.write_text(json.dumps(manifest))
    return Path(directory)


def make_tiny_bundle(directory: Path, labels: list[str] | None = None, dim: int = 16, enc_size: int = 64,
                     seed: int = 0, known: list[dict] | None = None, known_vectors: np.ndarray | None = None,
                     blocks: list[dict] | None = None, gallery_dims: int | None = None) -> Path:
    """A complete bundle in `directory` (manifest + models + labels) in the project's own format.

    With `known` (entries {tag, display, series, url}) it also ships a known-character gallery (`known_vectors`, or
    random unit prototypes) and the character index; `blocks` declares the encoder's output layout."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    labels = list(labels or LABELS)
    rng = np.random.default_rng(seed)
    boxes_detector(directory / "detector.onnx")
    encoder(directory / "encoder.onnx", dim=dim, size=enc_size, seed=seed)
    W = rng.standard_normal((len(labels), dim)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    np.savez(directory / "classifier.npz", W=W * 10, b=np.zeros(len(labels), np.float32))
    (directory / "labels.json").write_text(json.dumps(labels))
    unit = [1 / 255] * 1
    manifest = {
        "format": 1, "name": "tiny-test-bundle", "version": "test", "labels": "labels.json",
        "detector": {"file": "detector.onnx", "sha256": _sha(directory / "detector.onnx"), "format": "boxes",
                     "input": {"name": "images", "size": [DET_SIZE, DET_SIZE], "color": "RGB", "scale": unit[0],
                               "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "letterbox", "pad_value": 114},
                     "score_threshold": 0.3, "nms_iou": 0.45, "max_heads": 50},
        "encoder": {"file": "encoder.onnx", "sha256": _sha(directory / "encoder.onnx"),
                    "input": {"name": "input0", "size": [enc_size, enc_size], "color": "RGB", "scale": unit[0],
                              "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize": "squash"},
                    "output": "embedding", "dim": dim, "batch": "dynamic",
                    "crop": {"scale": 1.0, "shift_y": 0.0, "square": False}},
        "classifier": {"file": "classifier.npz", "sha256": _sha(directory / "classifier.npz"), "format": "linear_npz",
                       "temperature": 1.0, "gallery_scale": 16.0, "gallery_bias": 0.0},
        "metrics": {},
    }
    if blocks is not None:
        manifest["encoder"]["blocks"] = blocks
    if gallery_dims is not None:
        manifest["classifier"]["gallery_dims"] = gallery_dims
    if known is not None:
        width = gallery_dims or dim
        vectors = known_vectors if known_vectors is not None else rng.standard_normal((len(known), width))
        np.savez(directory / "known.npz", names=np.array([k["tag"] for k in known], dtype=np.str_),
                 vectors=np.asarray(vectors, np.float16))
        (directory / "characters.json").write_text(json.dumps(known, ensure_ascii=False))
        manifest["known"] = {"file": "known.npz", "sha256": _sha(directory / "known.npz"), "scale": 16.0, "bias": 0.0}
        manifest["characters"] = {"file": "characters.json", "sha256": _sha(directory / "characters.json")}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def make_reference_layout(directory: Path, labels: list[str], rows: np.ndarray | None = None) -> Path:
    """Models with exactly the reference system's signatures (no manifest): best.quant.onnx
    (images 1x3x640x640 -> (1, N, 6)), encoder.onnx (input0 1x3x128x128 -> 1x512),
    tf_model.onnx (input_1:0 1x512 -> softmax over len(labels)), chara.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = np.array([[320, 200, 160, 160, 0.9, 0.95], [330, 205, 150, 150, 0.8, 0.9],
                         [100, 500, 40, 40, 0.3, 0.3]], np.float32)
    yolov5_detector(directory / "best.quant.onnx", rows)
    encoder(directory / "encoder.onnx", dim=512, size=128, batch=1)
    softmax_classifier(directory / "tf_model.onnx", 512, len(labels))
    (directory / "chara.json").write_text(json.dumps(labels))
    return directory
