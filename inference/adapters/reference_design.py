"""The reference system's design, rebuilt from this bundle's models, for `python -m inference bench` to compare with.

The reference system squashes every picture to 640x640 for its detector, crops each head with PIL, runs the
encoder and an ONNX softmax classifier once per head, each session with onnxruntime's default options. Built here
from the same models as our pipeline (so only the design differs), it is given the heads our pipeline found, so
both designs do the same per-head work.
"""

from __future__ import annotations

import io
import time

import numpy as np

REF_SIZE = 640


def _default_session(model):
    import onnxruntime as ort

    src = model if isinstance(model, (bytes, str)) else str(model)
    return ort.InferenceSession(src, ort.SessionOptions(), providers=["CPUExecutionProvider"])


class Reference:
    """The reference system's design, built from this bundle's models (see the module docstring)."""

    def __init__(self, pipe):
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        b = pipe.bundle
        self.pipe = pipe
        det = pipe.detector
        if det.format == "cascade":
            raise RuntimeError("the bundle's detector is a cascade; the reference design needs an ONNX detector")
        self.det_name = det.input_name
        self.det_in = det.input
        h, w = det.input.height, det.input.width
        self.detector_mode = f"same graph at {REF_SIZE}x{REF_SIZE}"
        self.tiles = 1
        self.det_model_size = (h, w)
        if (h, w) == (REF_SIZE, REF_SIZE):
            self.det = _default_session(b.files["detector"].path)
        else:
            m = onnx.load(str(b.files["detector"].path))
            for vi in list(m.graph.input) + list(m.graph.output):
                for i, d in enumerate(vi.type.tensor_type.shape.dim):
                    if vi in m.graph.input and i >= 2 or vi in m.graph.output:
                        d.ClearField("dim_value")
                        d.dim_param = f"d{i}"
            del m.graph.value_info[:]
            try:
                quiet = ort.SessionOptions()
                quiet.log_severity_level = 4  # a probe: failing is an expected answer, not an error to print
                probe = ort.InferenceSession(m.SerializeToString(), quiet, providers=["CPUExecutionProvider"])
                probe.run(None, {self.det_name: np.zeros((1, 3, REF_SIZE, REF_SIZE), np.float32)})
                self.det = _default_session(m.SerializeToString())
            except Exception:
                # Decoding constants baked for the model's own size: run the same graph on tiles of the
                # 640x640 squash, which is the same convolution work as the backbone at 640x640.
                self.det = _default_session(b.files["detector"].path)
                self.tiles = max(1, round(REF_SIZE / h)) * max(1, round(REF_SIZE / w))
                self.detector_mode = (f"{self.tiles} tiles of {h}x{w} covering a {REF_SIZE}x{REF_SIZE} squash "
                                      f"(same graph, same convolution work as {REF_SIZE}x{REF_SIZE})")
        self.enc = _default_session(b.files["encoder"].path)
        self.enc_name = pipe.embedder.input_name
        self.enc_in = pipe.embedder.input
        if pipe.classifier.format == "onnx_softmax":
            self.cls = _default_session(b.files["classifier"].path)
            self.cls_name = pipe.classifier.input_name
            self.classifier_mode = "the bundle's ONNX classifier, once per head"
        else:
            W, bias = pipe.classifier.weights
            d, c = W.shape[1], W.shape[0]
            x = helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, [1, d])
            y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, c])
            g = helper.make_graph(
                [helper.make_node("MatMul", ["input_1:0", "W"], ["l"]), helper.make_node("Add", ["l", "b"], ["z"]),
                 helper.make_node("Softmax", ["z"], ["probs"], axis=-1)], "ref_classifier", [x], [y],
                [numpy_helper.from_array(np.ascontiguousarray(W.T, np.float32), "W"),
                 numpy_helper.from_array(np.asarray(bias, np.float32), "b")])
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 9
            self.cls = _default_session(model.SerializeToString())
            self.cls_name = "input_1:0"
            self.classifier_mode = f"ONNX MatMul+Add+Softmax {d}->{c} (the bundle's linear weights), once per head"

    def recognize(self, data: bytes, boxes: np.ndarray) -> tuple[float, object]:
        """One request in the reference design. `boxes` (in original pixels) are the heads our pipeline found
        in this picture, so both designs do the same per-head work."""
        from PIL import Image

        from ..result import Candidate, Head, Result

        t0 = time.perf_counter()
        im = Image.open(io.BytesIO(data)).convert("RGB")
        W, H = im.size
        sq = np.asarray(im.resize((REF_SIZE, REF_SIZE)), np.float32) / 255.0  # squash, PIL default filter
        x = np.ascontiguousarray(sq.transpose(2, 0, 1)[None])
        if self.tiles == 1:
            out = self.det.run(None, {self.det_name: x})[0]
        else:
            th, tw = self.det_model_size
            out = [self.det.run(None, {self.det_name: np.ascontiguousarray(x[:, :, y:y + th, xx:xx + tw])})[0]
                   for y in range(0, REF_SIZE, th) for xx in range(0, REF_SIZE, tw)]
            out = np.concatenate([o.reshape(-1, o.shape[-1]) for o in out])
        rows = np.asarray(out, np.float32).reshape(-1, np.asarray(out).shape[-1])
        _ = rows[rows[:, 4] > 0.2]  # the reference keeps rows scoring above 0.2 (boxes below are ours)
        eh, ew = self.enc_in.height, self.enc_in.width
        heads = []
        for box in boxes:
            crop = im.crop(tuple(int(v) for v in box)).resize((ew, eh))
            xe = self.enc_in.to_tensor(np.asarray(crop, np.uint8)[None])
            e = np.asarray(self.enc.run(None, {self.enc_name: xe})[0], np.float32).reshape(1, -1)
            e /= max(float(np.linalg.norm(e)), 1e-12)
            p = np.asarray(self.cls.run(None, {self.cls_name: e})[0], np.float32).reshape(-1)
            top = np.argsort(-p)[:3]
            cands = tuple(Candidate(self.pipe.labels[j], float(p[j])) for j in top)
            heads.append(Head(tuple(int(v) for v in box), 1.0, cands, True))
        result = Result(W, H, tuple(heads), {}, np.asarray(im))
        t1 = time.perf_counter()
        self.pipe.annotate(result, fmt="JPEG")
        return (time.perf_counter() - t0) * 1000, (t1 - t0) * 1000
