"""Step 4b — the optional head verifier (inference/verify.py): a linear check on each box's embedding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference.bundle import Bundle, sha256_file
from inference.errors import BundleError
from inference.manifest import VerifierSpec
from inference.pipeline import NoHeadError, Pipeline
from inference.settings import Settings
from inference.verify import Verifier


def add_verifier(bundle, w: np.ndarray, b: float, threshold: float = 0.5, encoder_sha: str | None = None,
                 reads: str | None = None) -> None:
    np.savez(bundle / "verifier.npz", w=np.asarray(w, np.float32).reshape(1, -1), b=np.asarray([b], np.float32))
    m = json.loads((bundle / "manifest.json").read_text())
    m["verifier"] = {"file": "verifier.npz", "sha256": sha256_file(bundle / "verifier.npz"), "format": "linear_npz",
                     "threshold": threshold,
                     "encoder_sha256": encoder_sha or sha256_file(bundle / m["encoder"]["file"])}
    if reads is not None:
        m["verifier"]["reads"] = reads
    (bundle / "manifest.json").write_text(json.dumps(m))


@pytest.fixture()
def two_heads(tiny_bundle, tmp_path, scene_bytes):
    """A copy of the tiny bundle and the embeddings of its two heads in the kiyoshimu picture."""
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    pipe = Pipeline.from_bundle(b, Settings(ort_threads=1))
    boxes, _, emb = pipe.find_heads(pipe.decode(scene_bytes).image)
    assert len(boxes) == 2 and pipe.verifier is None  # no verifier section: every box is kept
    return b, emb


def test_probability_is_a_logistic_of_the_dot_product():
    v = Verifier(VerifierSpec(threshold=0.6), (np.array([2.0, 0.0], np.float32), -1.0))
    p = v.probability(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32))
    assert np.allclose(p, 1 / (1 + np.exp(-np.array([1.0, -1.0, -3.0]))), atol=1e-6)
    assert v(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)).tolist() == [True, False]
    assert Verifier(VerifierSpec(threshold=0.6), (np.ones(2), 0.0), threshold=0.0)(np.zeros((1, 2))).tolist() == [True]
    assert v(np.zeros((0, 2), np.float32)).shape == (0,)


def test_pipeline_drops_the_boxes_the_verifier_rejects(two_heads, scene_bytes):
    b, emb = two_heads
    add_verifier(b, emb[0] - emb[1], 0.0)  # head 1 scores 1 - cos > 0, head 2 cos - 1 < 0
    pipe = Pipeline.from_bundle(b, Settings(ort_threads=1))
    r = pipe.recognize(scene_bytes)
    assert [h.box for h in r.heads] == [(128, 96, 384, 384)]
    assert "verify" in r.timings_ms
    off = Pipeline.from_bundle(b, Settings(ort_threads=1, verify_heads=False))
    assert len(off.recognize(scene_bytes).heads) == 2
    loose = Pipeline.from_bundle(b, Settings(ort_threads=1, verify_threshold=0.0))
    assert len(loose.recognize(scene_bytes).heads) == 2
    whole = pipe.recognize(scene_bytes, whole_image=True)  # the whole picture is never checked
    assert len(whole.heads) == 1 and whole.heads[0].score == 1.0


def test_enrollment_takes_the_largest_verified_head(two_heads, scene_bytes):
    b, emb = two_heads
    add_verifier(b, emb[1] - emb[0], 0.0)  # keeps only head 2, the smaller one
    pipe = Pipeline.from_bundle(b, Settings(ort_threads=1))
    assert np.allclose(pipe.embed_for_enroll(scene_bytes), emb[1], atol=1e-5)
    add_verifier(b, np.zeros(len(emb[0])), -5.0)  # rejects everything
    with pytest.raises(NoHeadError):
        Pipeline.from_bundle(b, Settings(ort_threads=1)).embed_for_enroll(scene_bytes)


def test_bundle_refuses_a_verifier_for_another_encoder_or_of_the_wrong_shape(two_heads):
    b, emb = two_heads
    add_verifier(b, emb[0], 0.0, encoder_sha="0" * 64)
    with pytest.raises(BundleError, match="another encoder"):
        Bundle.load(b)
    add_verifier(b, np.ones(len(emb[0]) + 1), 0.0)
    with pytest.raises(BundleError, match="embeddings but the encoder makes"):
        Bundle.load(b)
    add_verifier(b, emb[0], 0.0)
    with open(b / "verifier.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="verifier.npz.*sha256"):
        Bundle.load(b)
    add_verifier(b, emb[0], 0.0)
    m = json.loads((b / "manifest.json").read_text())
    m["verifier"]["format"] = "onnx"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="Unknown verifier format"):
        Bundle.load(b)


def test_a_verifier_that_reads_one_block_looks_at_that_run_alone():
    from inference.manifest import Block

    blocks = (Block("general", 2), Block("closed", 3))
    spec = VerifierSpec.parse({"threshold": 0.5, "reads": "closed"}, blocks)
    assert spec.span == (2, 5) and spec.width == 3
    v = Verifier(spec, (np.array([1.0, 0.0, 0.0], np.float32), 0.0))
    e = np.array([[9.0, -9.0, 1.0, 5.0, 5.0], [-9.0, 9.0, -1.0, 5.0, 5.0]], np.float32)
    assert np.allclose(v.probability(e), 1 / (1 + np.exp(-np.array([1.0, -1.0]))))  # the general block is ignored
    assert np.allclose(v.probability(e[0]), v.probability(e[:1]))  # one embedding alone
    assert v(np.zeros((0, 5), np.float32)).shape == (0,)  # no boxes
    part = VerifierSpec.parse({"reads": "closed.colour"}, (Block("general", 2), Block("closed", 3, (
        Block("embedding", 1), Block("colour", 2)))))
    assert part.span == (3, 5)
    assert np.allclose(Verifier(part, (np.array([1.0, 0.0]), 0.0)).probability(e), 1 / (1 + np.exp(-5.0)))
    with pytest.raises(BundleError, match="verifier.reads must name a block or part.*general, closed"):
        VerifierSpec.parse({"reads": "colour"}, blocks)
    with pytest.raises(BundleError, match="none declared"):
        VerifierSpec.parse({"reads": "closed"}, ())


def test_a_bundle_with_a_block_verifier_checks_the_block_width_and_drops_by_it(tmp_path, scene_bytes):
    from bundles import make_tiny_bundle

    b = make_tiny_bundle(tmp_path / "b", blocks=[{"name": "general", "dims": 6}, {"name": "closed", "dims": 10}])
    pipe = Pipeline.from_bundle(b, Settings(ort_threads=1))
    _, _, emb = pipe.find_heads(pipe.decode(scene_bytes).image)
    closed = emb[:, 6:]
    add_verifier(b, np.ones(16), 0.0, reads="closed")  # weights for the whole embedding, not the block
    with pytest.raises(BundleError, match="takes 16-d embeddings but the run it reads, 'closed', is 10-d"):
        Bundle.load(b)
    add_verifier(b, closed[0] - closed[1], 0.0, reads="closed")
    r = Pipeline.from_bundle(b, Settings(ort_threads=1)).recognize(scene_bytes)
    assert [h.box for h in r.heads] == [(128, 96, 384, 384)]


def test_verify_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("VERIFY_HEADS", "off")
    monkeypatch.setenv("VERIFY_THRESHOLD", "0.2")
    s = Settings.from_env(env_file=None)
    assert s.verify_heads is False and s.verify_threshold == 0.2
    monkeypatch.setenv("VERIFY_HEADS", "maybe")
    with pytest.raises(ValueError, match="VERIFY_HEADS must be true or false"):
        Settings.from_env(env_file=None)
