"""Embed cached faces with an exported encoder in onnxruntime, pre-processed the way the manifest says
(squash-resize to the input size, RGB, x * scale, (x - mean) / std). Metrics are measured on the shipped
ONNX file, not on the torch model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

SCALE = 1.0 / 255.0
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def preprocess(imgs_rgb: np.ndarray | list, size: int) -> np.ndarray:
    out = np.empty((len(imgs_rgb), 3, size, size), np.float32)
    mean = np.array(MEAN, np.float32)[:, None, None]
    std = np.array(STD, np.float32)[:, None, None]
    for i, im in enumerate(imgs_rgb):
        h, w = im.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
        r = cv2.resize(np.ascontiguousarray(im), (size, size), interpolation=interp)
        out[i] = (r.transpose(2, 0, 1).astype(np.float32) * SCALE - mean) / std
    return out


def embed(sess: ort.InferenceSession, imgs_rgb, size: int, bs: int = 64) -> np.ndarray:
    outs = []
    for i in range(0, len(imgs_rgb), bs):
        e = sess.run(None, {"input0": preprocess(imgs_rgb[i:i + bs], size)})[0]
        outs.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return np.concatenate(outs) if outs else np.zeros((0, sess.get_outputs()[0].shape[1]), np.float32)
