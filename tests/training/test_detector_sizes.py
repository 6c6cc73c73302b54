"""The detector trainer's input sizes: training targets, export and serving at another size, calibration mosaics."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch  # the train extra (`make test` installs it)

from inference.detect import Detector
from inference.manifest import DetectorSpec
from training.detector import ship
from training.detector.model import STRIDES, HeadNet, decode
from training.detector.train import export, targets


@pytest.mark.parametrize("size", [320, 416])
def test_targets_put_a_head_in_its_cell_at_any_size(size):
    box = np.array([[size - 100, 20, size - 40, 80]], np.float32)  # a 60 px head near the top right
    levels = targets(box, np.zeros((0, 4), np.float32), size)
    for (heat, clsw, reg, regw), s in zip(levels, STRIDES):
        cells = (size // s) ** 2
        assert heat.shape == clsw.shape == regw.shape == (cells,) and reg.shape == (cells, 4)
    heat, _, reg, regw = levels[0]  # 60 px heads belong to the stride-8 level
    n = size // 8
    cell = int(50 // 8) * n + int((size - 70) // 8)
    assert heat[cell] == 1.0 and regw[cell] > 0
    np.testing.assert_allclose(reg[cell], box[0])
    assert levels[2][0].max() < 1.0  # no positive on the stride-32 level


def test_export_at_another_size_is_served_at_that_size(tmp_path):
    torch.manual_seed(0)
    net = HeadNet().eval()
    path = tmp_path / "det384.onnx"
    export(net, path, size=384)
    assert ship.onnx_size(path) == (384, True)  # made for 384, runs at any size
    spec = ship.spec(0.0, 1.0, size=384)
    assert spec["input"]["size"] == [384, 384]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 384, 384), np.float32)
    rows = sess.run(None, {"images": x})[0]
    with torch.no_grad():
        ref = decode(net(torch.from_numpy(x)))[0]
    best = ref[ref[:, 4].argsort(descending=True)[:5]].numpy()
    np.testing.assert_allclose(rows[0, :5], best, rtol=1e-3, atol=1e-3)
    # height and width are symbolic: the same graph runs at another (even non-square) size, decoding included
    x2 = np.random.default_rng(1).random((1, 3, 256, 320), np.float32)
    rows2 = sess.run(None, {"images": x2})[0]
    with torch.no_grad():
        ref2 = decode(net(torch.from_numpy(x2)))[0]
    assert ref2.shape[0] == sum((256 // s) * (320 // s) for s in STRIDES)
    best2 = ref2[ref2[:, 4].argsort(descending=True)[:5]].numpy()
    np.testing.assert_allclose(rows2[0, :5], best2, rtol=1e-3, atol=1e-3)
    # the serving detector letterboxes a 600x300 picture to 384 and maps boxes back into its pixels
    det = Detector(DetectorSpec.parse(spec), sess)
    boxes, scores = det(np.full((300, 600, 3), 128, np.uint8))
    assert len(boxes) and (boxes[:, 2] <= 600).all() and (boxes[:, 3] <= 300).all()
    assert (np.diff(scores) <= 0).all()
    # as ship writes it for such graphs: fed a 384 x 192 canvas (multiples of 32), not the 384 square
    padded = ship.spec(0.0, 1.0, size=384, pad_multiple=32)
    assert padded["input"]["pad_multiple"] == 32 and "pad_multiple" not in spec["input"]
    fed = []
    det2 = Detector(DetectorSpec.parse(padded), sess)
    run = sess.run
    det2.session = type("Recorder", (), {"run": lambda self, o, feed: fed.append(feed["images"].shape) or run(o, feed)})()
    boxes2, _ = det2(np.full((300, 600, 3), 128, np.uint8))
    assert fed == [(1, 3, 192, 384)]
    assert len(boxes2) and (boxes2[:, 2] <= 600).all() and (boxes2[:, 3] <= 300).all()


def test_mosaic_moves_the_labels_with_the_pictures():
    a = np.zeros((100, 200, 3), np.uint8)  # letterboxed into a 384 cell at scale 1.92
    b = np.zeros((384, 384, 3), np.uint8)
    la = {"boxes": [[10, 10, 60, 50]], "ignore": []}
    lb = {"boxes": [[0, 0, 384, 384]], "ignore": [[1, 2, 3, 4]]}
    img, lab = ship.mosaic([(a, la), (b, lb), (a, la), (b, lb)], 2)
    assert img.shape == (768, 768, 3)
    np.testing.assert_allclose(lab["boxes"][0], [19.2, 19.2, 115.2, 96.0], rtol=1e-5)
    np.testing.assert_allclose(lab["boxes"][1], [384, 0, 768, 384])
    np.testing.assert_allclose(lab["boxes"][2], [19.2, 403.2, 115.2, 480.0], rtol=1e-5)
    assert lab["ignore"] == [[385, 2, 387, 4], [385, 386, 387, 388]]
