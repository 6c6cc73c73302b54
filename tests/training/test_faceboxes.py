"""The FaceBoxes teacher: priors layout, state-dict loading, and the reference's own example pictures."""

from __future__ import annotations

import cv2  # the train extra (`make test` installs it)
import numpy as np
import torch  # the train extra (`make test` installs it)

from training.teachers import faceboxes


def test_priors_match_the_head_layout():
    net = faceboxes.FaceBoxes().eval()
    h, w = 320, 480
    with torch.no_grad():
        loc, conf = net(torch.zeros(1, 3, h, w))
    pri = faceboxes.priors(h, w)
    assert loc.shape[1] == conf.shape[1] == len(pri)
    # 21 anchors per stride-32 cell (16 + 4 + 1), one per cell at strides 64 and 128
    assert len(pri) == 21 * 10 * 15 + 5 * 8 + 3 * 4


def test_decode_identity():
    pri = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    box = faceboxes.decode(np.zeros((1, 4), np.float32), pri)
    np.testing.assert_allclose(box, [[0.4, 0.3, 0.6, 0.7]], atol=1e-6)


def test_teacher_finds_the_kiyoshimu_heads():
    assert faceboxes.WEIGHTS.exists(), f"the teacher weights are read from ../shared: {faceboxes.WEIGHTS}"
    teacher = faceboxes.FaceBoxesTeacher(threads=1)
    for name in ("kiyoshimu-test0", "kiyoshimu-test1", "kiyoshimu-head0", "kiyoshimu-head1"):
        img = cv2.imread(str(faceboxes.DATA / "scenes" / "misc" / f"{name}.jpg"))
        boxes, scores = teacher.detect(img)
        assert len(boxes) == 1, name
        assert scores[0] >= 0.5
