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
from inference.manifest import ClassifierSpec, GalleryView
from inference.pipeline import Pipeline
from inference.result import UNKNOWN_TEXT, Candidate, Head
from inference.settings import Settings


def test_features_are_probability_nearest_cosine_and_margin():
    protos = np.eye(3, dtype=np.float32)
    clf = Classifier(ClassifierSpec.parse({"format": "linear_npz"}), ["a"], weights=(np.zeros((1, 3), np.float32), np.zeros(1, np.float32)),
                     known=KnownGallery(["x", "y", "z"], protos, 10.0, 0.0))
    emb = np.array([[0.8, 0.6, 0.0], [0.0, 0.0, 1.0]], np.float32)
    f = features(emb, np.array([0.7, 0.9]), clf, None)
    np.testing.assert_allclose(f, [[0.7, 0.8, 0.2], [0.9, 1.0, 1.0]], atol=1e-6)


def test_named_features_of_the_classifier_and_the_sharpened_gallery():
    protos = np.eye(3, dtype=np.float32)
    W = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    clf = Classifier(ClassifierSpec.parse({"format": "linear_npz", "temperature": 2.0}), ["a", "b"], weights=(W, np.zeros(2, np.float32)),
                     known=KnownGallery(["x", "y", "z"], protos, 10.0, 0.0))
    emb = np.array([[0.8, 0.6, 0.0]], np.float32)
    names = ("linear_max_logit", "linear_top1_probability", "gallery_top1_probability@10", "gallery_energy@10")
    f = features(emb, np.array([0.5]), clf, None, names)[0]
    lin = np.array([0.8, 0.3])  # W @ emb / temperature
    z = 10 * np.array([0.8, 0.6, 0.0])
    np.testing.assert_allclose(f, [0.8, np.exp(0.8) / np.exp(lin).sum(), np.exp(z[0]) / np.exp(z).sum(),
                                   np.log(np.exp(z).sum()) / 10], rtol=1e-6)
    # without any prototype the gallery features are 0, not an error
    bare = Classifier(ClassifierSpec.parse({"format": "linear_npz"}), ["a", "b"], weights=(W, np.zeros(2, np.float32)))
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


def test_every_feature_the_manifest_accepts_is_computed():
    from inference.decide import feature
    from inference.manifest import DECISION_FEATURES, DecisionSpec

    assert Decision is DecisionSpec  # one parsed section, read by the manifest and the decision alike
    assert all(feature(n) is not None for n in (*DECISION_FEATURES, "gallery_energy@30", "gallery_top1_probability@4"))
    assert feature("nearest_moon") is None and feature("gallery_energy@0") is None


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
    """Known prototypes, then an enrolled gallery, compared on the first 8 of 12 dimensions: the probabilities
    the ranking gives are the ones written out by hand, and decide reads the same cosines."""
    from inference.gallery import Gallery

    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    protos = unit(rng.normal(size=(5, 8)).astype(np.float32))
    W = rng.normal(size=(2, 12)).astype(np.float32)
    clf = Classifier(ClassifierSpec.parse({"format": "linear_npz", "gallery_dims": 8, "gallery_scale": 12.0, "gallery_bias": -1.0}),
                     ["a", "b"], weights=(W, np.zeros(2, np.float32)),
                     known=KnownGallery([f"k{i}" for i in range(5)], protos, 10.0, 0.5, "joint"))
    gallery = Gallery("test-encoder", 12, view=GalleryView.leading(8))
    taught = unit(rng.normal(size=(1, 12)).astype(np.float32))
    gallery.add("taught", taught)
    emb = unit(rng.normal(size=(3, 12)).astype(np.float32))
    part = unit(emb[:, :8])
    want_cos = np.concatenate([part @ protos.T, part @ unit(taught[:, :8]).T], axis=1)
    cos = clf.cosines(emb, gallery)
    np.testing.assert_allclose(cos, want_cos, atol=1e-6)
    z = np.concatenate([emb @ W.T, 10.0 * want_cos[:, :5] + 0.5, 12.0 * want_cos[:, 5:] - 1.0], axis=1)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got, names, sources = clf.probabilities(emb, gallery, cos)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert names == ["a", "b", "k0", "k1", "k2", "k3", "k4", "taught"] and sources[-1] == "gallery"
    np.testing.assert_allclose(clf.probabilities(emb, gallery)[0], want, atol=1e-6)  # computed when not given
    f = features(emb, np.ones(3), clf, gallery, ("top1_cosine", "gallery_energy@16"), cos)
    np.testing.assert_allclose(f[:, 0], want_cos.max(1), atol=1e-6)
    np.testing.assert_allclose(f[:, 1], np.log(np.exp(16 * want_cos).sum(1)) / 16, rtol=1e-5)
