import json
import shutil

import numpy as np
import pytest

from bundles import DET_ROWS, boxes_detector
from inference.bundle import make_session
from inference.crop import crop_heads, crop_regions
from inference.detect import Detector, nms
from inference.manifest import Crop, DetectorSpec
from inference.pipeline import Pipeline
from inference.settings import Settings


def test_nms_keeps_best_and_drops_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.1], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 2, 0, 3]
    assert nms(boxes, scores, 0.5, max_keep=1).tolist() == [1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


def test_boxes_detector_letterbox_threshold_nms(tiny_pipeline, scene_bytes):
    r = tiny_pipeline.recognize(scene_bytes)
    # 1024x576 letterboxed into 320x320: ratio 0.3125, vertical pad 70
    assert [h.box for h in r.heads] == [(128, 96, 384, 384), (640, 160, 832, 352)]
    assert [round(h.score, 2) for h in r.heads] == [0.92, 0.81]
    assert all(len(h.candidates) == 3 for h in r.heads)
    assert set(r.timings_ms) == {"decode", "detect", "crop", "embed", "classify", "decide"}


def test_squash_resize_maps_back(tmp_path):
    path = boxes_detector(tmp_path / "d.onnx")
    spec = {"format": "boxes", "score_threshold": 0.3, "nms_iou": 0.45,
            "input": {"name": "images", "size": [320, 320], "resize": "squash"}}
    det = Detector(DetectorSpec.parse(spec), make_session(path, 1))
    boxes, scores = det(np.zeros((576, 1024, 3), np.uint8))
    assert np.allclose(boxes[0], [40 * 3.2, 100 * 1.8, 120 * 3.2, 190 * 1.8])
    assert len(boxes) == 2


def test_no_heads_means_no_heads(tmp_path, scene_bytes):
    from bundles import make_tiny_bundle

    b = make_tiny_bundle(tmp_path / "b")
    low = DET_ROWS.copy()
    low[:, 4] = 0.01
    boxes_detector(b / "detector.onnx", rows=low)
    m = json.loads((b / "manifest.json").read_text())
    from inference.bundle import sha256_file

    m["detector"]["sha256"] = sha256_file(b / "detector.onnx")
    (b / "manifest.json").write_text(json.dumps(m))
    pipe = Pipeline.from_bundle(b, Settings(ort_threads=1))
    assert pipe.recognize(scene_bytes).heads == ()
    whole = pipe.recognize(scene_bytes, whole_image=True)
    assert len(whole.heads) == 1 and whole.heads[0].box == (0, 0, 1024, 576) and whole.heads[0].score == 1.0


def test_thresholds_from_configuration(tiny_bundle, scene_bytes):
    strict = Pipeline.from_bundle(tiny_bundle, Settings(ort_threads=1, detect_threshold=0.9))
    assert len(strict.recognize(scene_bytes).heads) == 1
    loose = Pipeline.from_bundle(tiny_bundle, Settings(ort_threads=1, detect_threshold=0.01, detect_nms_iou=0.95))
    # the duplicate survives a loose NMS; the 4th row lies in the letterbox padding and is dropped
    assert len(loose.recognize(scene_bytes).heads) == 3


def test_cascade_backend_finds_faces(shared, tmp_path):
    """The manifest can name an OpenCV cascade; here the shared LBP anime-face cascade, read from ../shared."""
    xml = shared / "reference" / "lbpcascade-animeface" / "lbpcascade_animeface.xml"
    det = Detector(DetectorSpec.parse({"format": "cascade", "min_size": 24, "box_expand": 1.5, "nms_iou": 0.3}),
                   cascade_path=xml)
    from inference.decode import decode

    img = decode((shared / "scenes" / "misc" / "hysts-input.jpg").read_bytes()).image  # a grid of ~38 faces
    boxes, scores = det(img)
    assert 30 <= len(boxes) <= 40
    assert np.all(scores == 1.0)
    w = boxes[:, 2] - boxes[:, 0]
    assert np.all((w > 40) & (w < 400))


def test_crop_regions_and_padding():
    boxes = np.array([[10, 20, 50, 100]], np.float32)
    assert crop_regions(boxes, Crop(scale=1.0)).tolist() == [[10, 20, 50, 100]]
    r = crop_regions(boxes, Crop(scale=0.5, shift_y=0.25))
    assert np.allclose(r, [[20, 60, 40, 100]])
    sq = crop_regions(boxes, Crop(scale=1.0, square=True))
    assert np.allclose(sq[0, 2] - sq[0, 0], 80) and np.allclose(sq[0, 3] - sq[0, 1], 80)
    img = np.zeros((50, 50, 3), np.uint8)
    img[:, :25] = 255
    out = crop_heads(img, np.array([[-25, 0, 25, 50], [0, 0, 50, 50]], np.float32), Crop(), 20, 20)
    assert out.shape == (2, 20, 20, 3)
    assert out[0].min() == 255  # left half outside the picture is edge-replicated (white), not black
    assert out[1, :, :9].min() == 255 and out[1, :, 11:].max() == 0
    big = np.zeros((2000, 2000, 3), np.uint8)
    assert crop_heads(big, np.array([[0, 0, 2000, 2000]], np.float32), Crop(), 64, 64).shape == (1, 64, 64, 3)


def test_embeddings_unit_norm_batched_equals_single(tiny_pipeline, tmp_path, scene_bytes):
    emb = tiny_pipeline.embedder
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (5, 64, 64, 3), np.uint8)
    e = emb(crops)
    assert e.shape == (5, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    single = np.concatenate([emb(crops[i:i + 1]) for i in range(5)])
    assert np.allclose(e, single, atol=1e-5)
    assert emb(crops[:0]).shape == (0, 16)


def test_sha_mismatch_missing_file_and_label_mismatch(tiny_bundle, tmp_path):
    from inference.bundle import Bundle
    from inference.errors import BundleError

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    with open(b / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="encoder.onnx.*sha256"):
        Bundle.load(b)
    shutil.rmtree(b)
    shutil.copytree(tiny_bundle, b)
    (b / "detector.onnx").unlink()
    with pytest.raises(BundleError, match="detector.onnx.*missing"):
        Bundle.load(b)
    shutil.rmtree(b)
    shutil.copytree(tiny_bundle, b)
    (b / "labels.json").write_text(json.dumps(["only_one"]))
    with pytest.raises(BundleError, match="1 names but the classifier has 5"):
        Bundle.load(b)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(tmp_path / "nowhere")
