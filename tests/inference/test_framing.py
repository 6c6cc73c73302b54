"""A picture given as one head reaches the encoder framed as a detected head of it would be (issue 53, point 1):
the manifest's `encoder.whole_image`, `crop.whole_box`, `Pipeline.whole_views`, the two views' combined ranking, and
enrollment from the framed view. Tiny ONNX bundles built here; the default bundle's own section is checked against
what `python -m training.general.framing --fit` measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundles import make_tiny_bundle, set_manifest_key
from inference.classify import combine_views, softmax
from inference.crop import crop_heads, whole_box, whole_image
from inference.errors import BundleError
from inference.manifest import EncoderSpec, Manifest, WholeImage
from inference.pipeline import Pipeline
from inference.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECTION = {"box": [0.156, 0.091, 0.844, 0.827], "min_cover": 0.3, "keep_whole": True}


def _framed_bundle(directory: Path, section: dict | None = SECTION) -> Path:
    make_tiny_bundle(directory)
    return directory if section is None else set_manifest_key(directory, "encoder", "whole_image", section)


@pytest.fixture(scope="module")
def framed(tmp_path_factory) -> Pipeline:
    return Pipeline.from_bundle(_framed_bundle(tmp_path_factory.mktemp("framed")), Settings(ort_threads=1))


def test_manifest_parses_and_refuses_the_whole_image_section():
    spec = WholeImage.parse(SECTION)
    assert spec == WholeImage((0.156, 0.091, 0.844, 0.827), 0.3, True)
    assert WholeImage.parse(None) is None and WholeImage.parse({"box": [0, 0, 1, 1]}).min_cover == 0.25
    for bad in ({"box": [0, 0, 1]}, {"box": [0.5, 0, 0.4, 1]}, {"box": [0, 0, 1, "1"]}, {"box": [0, 0, 1, True]},
                {"box": [0, 0, 1, 1], "min_cover": 1.5}, {"box": [0, 0, 1, 1], "min_cover": "x"},
                {"box": [0, 0, 1, 1], "keep_whole": "yes"}, [0, 0, 1, 1], {"box": [0, 0, float("nan"), 1]}):
        with pytest.raises(BundleError, match="encoder.whole_image"):
            WholeImage.parse(bad)
    enc = {"input": {"size": [64, 64]}, "file": "e.onnx"}
    assert EncoderSpec.parse(enc).whole is None
    assert EncoderSpec.parse({**enc, "whole_image": SECTION}).whole.box[2] == 0.844


def test_whole_box_takes_a_head_that_covers_the_picture_else_the_measured_box():
    spec = WholeImage.parse(SECTION)
    big = np.array([[10, 5, 90, 80], [0, 0, 20, 20]], np.float32)  # 75 % of a 100x100 picture
    assert np.array_equal(whole_box(100, 100, big, spec), big[0])
    small = np.array([[0, 0, 40, 40]], np.float32)  # 16 %: another, smaller head; the picture is the head crop
    np.testing.assert_allclose(whole_box(100, 200, small, spec), [15.6, 18.2, 84.4, 165.4], rtol=1e-5)
    np.testing.assert_allclose(whole_box(100, 200, np.zeros((0, 4)), spec), [15.6, 18.2, 84.4, 165.4], rtol=1e-5)


def test_combined_views_are_the_geometric_mean():
    p = softmax(np.random.default_rng(0).standard_normal((4, 6)))
    np.testing.assert_array_equal(combine_views(p, 1), p)
    two = combine_views(p, 2)
    g = np.sqrt(p[0] * p[1])
    np.testing.assert_allclose(two[0], g / g.sum(), rtol=1e-9)
    assert two.shape == (2, 6) and np.allclose(two.sum(1), 1)


def test_whole_views_frame_the_picture_as_a_detected_head(framed, tiny_pipeline, scene_bytes):
    image = framed.decode(scene_bytes).image
    h, w = image.shape[:2]
    ew, eh = framed.embedder.size
    views = framed.whole_views(image)
    assert views.shape == (2, eh, ew, 3)
    boxes, _ = framed.detector(image)
    box = whole_box(w, h, boxes, framed.embedder.spec.whole)
    np.testing.assert_array_equal(views[0], crop_heads(image, box[None], framed.embedder.crop, ew, eh)[0])
    np.testing.assert_array_equal(views[1], whole_image(image, ew, eh)[0])
    # a bundle without the section squashes the whole picture, as before
    np.testing.assert_array_equal(tiny_pipeline.whole_views(image), whole_image(image, ew, eh))


def test_whole_image_answers_rank_both_views_and_enroll_the_framed_one(framed, scene_bytes):
    r = framed.recognize(scene_bytes, whole_image=True, top_k=len(framed.labels))
    image = framed.decode(scene_bytes).image
    emb = framed.embedder(framed.whole_views(image))
    p, names, _ = framed.classifier.probabilities(emb)
    want = combine_views(p, 2)[0]
    got = {c.name: c.probability for c in r.heads[0].candidates}
    assert got == pytest.approx({n: float(v) for n, v in zip(names, want, strict=True)}, rel=1e-6)
    assert r.heads[0].box == (0, 0, r.width, r.height) and r.heads[0].score == 1.0
    np.testing.assert_allclose(framed.embed_for_enroll(scene_bytes, whole_image=True), emb[0], rtol=1e-6)


def test_keep_whole_false_gives_one_view(tmp_path, scene_bytes):
    pipe = Pipeline.from_bundle(_framed_bundle(tmp_path, {**SECTION, "keep_whole": False}), Settings(ort_threads=1))
    image = pipe.decode(scene_bytes).image
    assert len(pipe.whole_views(image)) == 1
    assert len(pipe.recognize(scene_bytes, whole_image=True).heads) == 1


def test_the_default_bundle_frames_whole_pictures_as_measured():
    raw = json.loads((ROOT / "models" / "manifest.json").read_text())
    spec = Manifest.parse(raw).encoder.whole
    # python -m training.general.framing --fit (1,500 'train' head crops): median box, 1st percentile of cover .319
    assert spec is not None and spec.box == (0.156, 0.091, 0.844, 0.827) and spec.min_cover == 0.3 and spec.keep_whole
