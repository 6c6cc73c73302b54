"""The known/unknown decision (inference/decide.py): its features, its score, and what each interface says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bundles import make_tiny_bundle
from inference.annotate import label_for
from inference.characters import KnownGallery
from inference.classify import Classifier
from inference.decide import FEATURES, Decision, features, known_scores
from inference.errors import BundleError
from inference.pipeline import Pipeline
from inference.result import UNKNOWN_TEXT, Candidate, Head
from inference.settings import Settings


def test_features_are_probability_nearest_cosine_and_margin():
    protos = np.eye(3, dtype=np.float32)
    clf = Classifier({"format": "linear_npz"}, ["a"], weights=(np.zeros((1, 3), np.float32), np.zeros(1, np.float32)),
                     known=KnownGallery(["x", "y", "z"], protos, 10.0, 0.0))
    emb = np.array([[0.8, 0.6, 0.0], [0.0, 0.0, 1.0]], np.float32)
    f = features(emb, np.array([0.7, 0.9]), clf, None)
    np.testing.assert_allclose(f, [[0.7, 0.8, 0.2], [0.9, 1.0, 1.0]], atol=1e-6)


def test_named_features_of_the_classifier_and_the_sharpened_gallery():
    protos = np.eye(3, dtype=np.float32)
    W = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    clf = Classifier({"format": "linear_npz", "temperature": 2.0}, ["a", "b"], weights=(W, np.zeros(2, np.float32)),
                     known=KnownGallery(["x", "y", "z"], protos, 10.0, 0.0))
    emb = np.array([[0.8, 0.6, 0.0]], np.float32)
    names = ("linear_max_logit", "linear_top1_probability", "gallery_top1_probability@10", "gallery_energy@10")
    f = features(emb, np.array([0.5]), clf, None, names)[0]
    lin = np.array([0.8, 0.3])  # W @ emb / temperature
    z = 10 * np.array([0.8, 0.6, 0.0])
    np.testing.assert_allclose(f, [0.8, np.exp(0.8) / np.exp(lin).sum(), np.exp(z[0]) / np.exp(z).sum(),
                                   np.log(np.exp(z).sum()) / 10], rtol=1e-6)
    # without any prototype the gallery features are 0, not an error
    bare = Classifier({"format": "linear_npz"}, ["a", "b"], weights=(W, np.zeros(2, np.float32)))
    assert features(emb, np.array([0.5]), bare, None, ("gallery_energy@30", "top1_cosine")).tolist() == [[0.0, 0.0]]


def test_score_is_logistic_and_the_manifest_is_checked():
    d = Decision.from_manifest({"features": list(FEATURES), "weights": [0.0, 10.0, 0.0], "bias": -5.0,
                                "threshold": 0.6})
    s = known_scores(d, np.array([[0.9, 0.2, 0.0], [0.9, 0.9, 0.0]]))
    assert s[0] < 0.05 < 0.95 < s[1]
    assert known_scores(None, np.array([[0.42, 0.0, 0.0]]))[0] == pytest.approx(0.42)  # older bundles
    with pytest.raises(BundleError, match="decision"):
        Decision.from_manifest({"features": ["top1_probability"], "weights": [1.0, 2.0], "threshold": 0.5})
    with pytest.raises(BundleError, match="nearest_moon"):
        Decision.from_manifest({"features": ["nearest_moon"], "weights": [1.0], "threshold": 0.5})
    with pytest.raises(BundleError, match="decision"):
        Decision.from_manifest({"features": ["gallery_energy@0"], "weights": [1.0], "threshold": 0.5})


def test_an_unknown_head_has_no_answer_everywhere():
    cands = (Candidate("rem_(re:zero)", 0.41), Candidate("c.c.", 0.2))
    unknown, named = Head((0, 0, 10, 10), 0.9, cands, False, 0.12), Head((0, 0, 10, 10), 0.9, cands, True, 0.97)
    assert unknown.to_json()["answer"] is None and unknown.to_json()["known"] == 0.12
    assert named.to_json()["answer"] == "rem_(re:zero)" and named.to_json()["known"] == 0.97
    assert label_for(2, unknown) == "2 ?" and label_for(1, named) == "1 Rem — Re:zero 41%"
    assert UNKNOWN_TEXT == "I don't recognise this character"


def test_the_manifest_threshold_applies_unless_a_caller_gives_one(tmp_path, scene_bytes):
    d = make_tiny_bundle(tmp_path / "b")
    m = json.loads((d / "manifest.json").read_text())
    # a decision that trusts only the top-1 probability, with a threshold no head reaches
    m["decision"] = {"features": list(FEATURES), "weights": [1.0, 0.0, 0.0], "bias": 0.0, "threshold": 0.99}
    (d / "manifest.json").write_text(json.dumps(m))
    pipe = Pipeline.from_bundle(d, Settings(ort_threads=1))
    r = pipe.recognize(scene_bytes, whole_image=True)
    head = r.heads[0]
    assert not head.sure and head.answer is None and 0.5 < head.known < 0.74  # sigmoid of a probability
    again = pipe.recognize(scene_bytes, whole_image=True, threshold=0.0).heads[0]  # a server's own setting
    assert again.sure and again.answer == again.candidates[0].name


def test_the_cosines_of_classify_are_the_ones_decide_reads():
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(50, 8)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    W = rng.normal(size=(2, 12)).astype(np.float32)
    clf = Classifier({"format": "linear_npz", "gallery_dims": 8}, ["a", "b"], weights=(W, np.zeros(2, np.float32)),
                     known=KnownGallery([f"k{i}" for i in range(50)], protos, 10.0, 0.0, "gate"))
    emb = rng.normal(size=(3, 12)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cos = clf.cosines(emb)
    part = emb[:, :8] / np.linalg.norm(emb[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(cos, part @ protos.T, atol=1e-6)
    with_cos, without = clf(emb, cos=cos), clf(emb)
    assert [[c.name for c in r] for r in with_cos] == [[c.name for c in r] for r in without]
    names = ("top1_cosine", "gallery_energy@16")
    np.testing.assert_allclose(features(emb, np.ones(3), clf, None, names, cos),
                               features(emb, np.ones(3), clf, None, names), atol=1e-6)
