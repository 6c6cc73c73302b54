"""The reference system's bundle layout: write a manifest for it (its label pickle is read by labels.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .bundle import sha256_file
from .errors import BundleError

REF_ENCODER_MEAN = [0.6826, 0.6033, 0.5841]
REF_ENCODER_STD = [0.2460, 0.2537, 0.2448]


def write_reference_manifest(root: str | Path) -> Path:
    """Write `manifest.json` for a directory in the reference layout (best.quant.onnx, encoder.onnx,
    tf_model.onnx, chara.json or idx_label.pkl). Returns the manifest path."""
    root = Path(root)
    need = ["best.quant.onnx", "encoder.onnx", "tf_model.onnx"]
    missing = [n for n in need if not (root / n).is_file()]
    if missing:
        raise BundleError(f"{root} is not in the reference layout: missing {', '.join(missing)}.")
    if (root / "chara.json").is_file():
        labels = "chara.json"
    elif (root / "idx_label.pkl").is_file():
        labels = "idx_label.pkl"
    else:
        raise BundleError(f"{root} has neither chara.json nor idx_label.pkl.")
    import onnxruntime as ort

    def io_names(name):
        s = ort.InferenceSession(str(root / name), providers=["CPUExecutionProvider"])
        return s.get_inputs()[0], s.get_outputs()[0]

    det_in, _ = io_names("best.quant.onnx")
    enc_in, enc_out = io_names("encoder.onnx")
    cls_in, _ = io_names("tf_model.onnx")
    dim = enc_out.shape[-1] if isinstance(enc_out.shape[-1], int) else None
    h, w = [d if isinstance(d, int) else 640 for d in det_in.shape[2:4]]
    eh, ew = [d if isinstance(d, int) else 128 for d in enc_in.shape[2:4]]
    manifest = {
        "format": 1,
        "name": "crystal-eyes-reference",
        "version": "reference",
        "labels": labels,
        "detector": {
            "file": "best.quant.onnx", "sha256": sha256_file(root / "best.quant.onnx"), "format": "yolov5",
            "input": {"name": det_in.name, "size": [h, w], "color": "RGB", "scale": 1 / 255,
                      "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "squash"},
            "score_threshold": 0.2, "nms_iou": 0.5, "max_heads": 50,
        },
        "encoder": {
            "file": "encoder.onnx", "sha256": sha256_file(root / "encoder.onnx"),
            "input": {"name": enc_in.name, "size": [eh, ew], "color": "RGB", "scale": 1 / 255,
                      "mean": REF_ENCODER_MEAN, "std": REF_ENCODER_STD, "resize": "squash"},
            "output": "embedding", "dim": dim,
            "batch": "dynamic" if not isinstance(enc_in.shape[0], int) else "fixed1",
            "crop": {"scale": 1.0, "shift_y": 0.0, "square": False},
        },
        "classifier": {
            "file": "tf_model.onnx", "sha256": sha256_file(root / "tf_model.onnx"), "format": "onnx_softmax",
            "input": {"name": cls_in.name}, "temperature": 1.0, "gallery_scale": 16.0, "gallery_bias": 0.0,
        },
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
