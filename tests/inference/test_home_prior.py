"""A server's own characters win at home (issue 53, point 2): `classifier.home_prior` is parsed and checked, lifts
every enrolled character's logit by that much, and changes nothing in a server that taught nothing. Tiny ONNX
bundles built here; the default bundle's prior is the one `python -m training.general.teach --fit` chose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundles import make_tiny_bundle, set_manifest_key
from inference.errors import BundleError
from inference.manifest import ClassifierSpec, Manifest
from inference.pipeline import Pipeline
from inference.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PRIOR = 3.0


def _bundle(directory: Path, prior: float | None) -> Path:
    make_tiny_bundle(directory)
    return directory if prior is None else set_manifest_key(directory, "classifier", "home_prior", prior)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory) -> tuple[Pipeline, Pipeline]:
    plain = Pipeline.from_bundle(_bundle(tmp_path_factory.mktemp("plain"), None), Settings(ort_threads=1))
    home = Pipeline.from_bundle(_bundle(tmp_path_factory.mktemp("home"), PRIOR), Settings(ort_threads=1))
    return plain, home


def test_manifest_parses_and_refuses_the_prior():
    base = {"format": "linear_npz"}
    assert ClassifierSpec.parse(base).home_prior == 0.0
    assert ClassifierSpec.parse({**base, "home_prior": 2}).home_prior == 2.0
    for bad in (-1, 21, "4", True, float("nan"), float("inf")):
        with pytest.raises(BundleError, match="classifier.home_prior"):
            ClassifierSpec.parse({**base, "home_prior": bad})


def test_the_prior_lifts_every_enrolled_logit(pipes, scene_bytes):
    plain, home = pipes
    emb = plain.embedder(plain.whole_views(plain.decode(scene_bytes).image))
    g = plain.new_gallery()
    g.add("Kiyo Girl", emb)
    g.add("Someone Else", -emb)
    p0, names, sources = plain.classifier.probabilities(emb, g)
    p1, names1, _ = home.classifier.probabilities(emb, g)
    assert names1 == names
    enrolled = np.array([s == "gallery" for s in sources])
    # odds of any enrolled character against any built-in one grow by exp(prior); built-ins keep their own odds
    ratio = (p1[:, enrolled] / p0[:, enrolled]) / (p1[:, ~enrolled] / p0[:, ~enrolled]).mean(1, keepdims=True)
    np.testing.assert_allclose(ratio, np.exp(PRIOR), rtol=1e-6)
    b0, b1 = p0[:, ~enrolled], p1[:, ~enrolled]
    np.testing.assert_allclose(b1 / b1.sum(1, keepdims=True), b0 / b0.sum(1, keepdims=True), rtol=1e-9)
    top = home.recognize(scene_bytes, whole_image=True, gallery=g).heads[0].candidates[0]
    assert top.name == "kiyo_girl" and top.source == "gallery"


def test_a_server_that_taught_nothing_gets_the_same_answers(pipes, scene_bytes):
    plain, home = pipes
    for whole in (False, True):
        a = plain.recognize(scene_bytes, top_k=5, whole_image=whole)
        b = home.recognize(scene_bytes, top_k=5, whole_image=whole)
        assert [h.candidates for h in a.heads] == [h.candidates for h in b.heads]
        assert [(h.known, h.sure) for h in a.heads] == [(h.known, h.sure) for h in b.heads]
        empty = plain.new_gallery()  # an empty gallery is no gallery
        c = home.recognize(scene_bytes, top_k=5, whole_image=whole, gallery=empty)
        assert [h.candidates for h in c.heads] == [h.candidates for h in a.heads]


def test_the_default_bundle_has_the_fitted_prior():
    spec = Manifest.parse(json.loads((ROOT / "models" / "manifest.json").read_text())).classifier
    assert spec.home_prior == 4.0  # python -m training.general.teach --fit, the 'fit' half
