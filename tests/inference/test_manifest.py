"""inference/manifest.py: the manifest parsed once into typed sections, every default and check in one place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.errors import BundleError
from inference.manifest import (
    DECISION_FEATURES,
    Block,
    ClassifierSpec,
    Crop,
    DecisionSpec,
    DetectorSpec,
    EncoderSpec,
    KnownSpec,
    Manifest,
    sharpened,
)

ROOT = Path(__file__).resolve().parents[2]
SHA = "0" * 64
INPUT = {"size": [64, 64]}


def minimal(**extra) -> dict:
    return {"detector": {"file": "d.onnx", "sha256": SHA, "format": "boxes", "input": INPUT},
            "encoder": {"file": "e.onnx", "sha256": SHA, "input": INPUT},
            "classifier": {"file": "c.npz", "sha256": SHA, "format": "linear_npz"}, **extra}


def test_defaults_are_declared_once():
    m = Manifest.parse(minimal(), default_name="here")
    assert (m.name, m.version, m.labels) == ("here", "unversioned", "chara.json")
    assert (m.detector.score_threshold, m.detector.nms_iou, m.detector.max_heads) == (0.35, 0.45, 50)
    assert m.encoder.crop == Crop() and m.encoder.batched and not m.encoder.tta_flip and m.encoder.blocks == ()
    c = m.classifier
    assert (c.temperature, c.gallery_scale, c.gallery_bias, c.gallery_dims, c.gallery_compatible) == (
        1.0, 16.0, 0.0, None, ())
    assert m.verifier is None and m.known is None and m.characters is None and m.decision is None
    assert list(m.files()) == ["detector", "encoder", "classifier"]


def test_the_shipped_manifest_parses_with_its_blocks_and_parts():
    raw = json.loads((ROOT / "models" / "manifest.json").read_text())
    m = Manifest.parse(raw)
    general, closed = m.encoder.blocks
    assert general == Block("general", 256) and closed.dims == sum(p.dims for p in closed.parts)
    view = m.classifier.view  # galleries compare the general block, the closed embedding and colour, by name
    assert [(p.name, p.start, p.stop) for p in view.parts] == [
        ("general", 0, 256), ("closed.embedding", 256, 768), ("closed.colour", 768, 984)]
    assert m.classifier.gallery_dims is None and m.known.mode in ("joint", "gate")
    assert m.decision.features == tuple(raw["decision"]["features"])
    d = raw["decision"]  # the same numbers the decision scored with when decide.py parsed them
    assert m.decision.weights.tolist() == d["weights"] and (m.decision.bias, m.decision.threshold) == (
        d["bias"], d["threshold"])
    assert list(m.files()) == ["detector", "encoder", "classifier", "verifier", "known", "characters"]
    assert m.verifier.encoder_sha256 == raw["encoder"]["sha256"] and 0 < m.verifier.threshold < 1


BLOCKS = [{"name": "general", "dims": 4},
          {"name": "closed", "dims": 4, "parts": [{"name": "emb", "dims": 3}, {"name": "colour", "dims": 1}]}]


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["detector"].update(format="ssd"), "Unknown detector format 'ssd'"),
    (lambda r: r["classifier"].update(format="svm"), "Unknown classifier format 'svm'"),
    (lambda r: r["encoder"].pop("sha256"), "'encoder' section has no sha256"),
    (lambda r: r.pop("classifier"), "no 'classifier' section"),
    (lambda r: r["encoder"].update(input={"size": [64]}), "encoder.input.size"),
    (lambda r: r["encoder"].update(dim=8, blocks=[{"name": "a", "dims": 4}]), r"add up to dim \(8\)"),
    (lambda r: r["encoder"].update(dim=8, blocks=[{"name": "a", "dims": 8, "parts": [{"name": "x", "dims": 3}]}]),
     r"blocks\['a'\]\.parts.*the block's \(8\)"),
    (lambda r: (r["encoder"].update(dim=8), r["classifier"].update(gallery_dims=9)), "gallery_dims"),
    (lambda r: r["classifier"].update(gallery_compatible=["abc"]), "gallery_compatible"),
    (lambda r: (r["encoder"].update(dim=8, blocks=[{"name": "general", "dims": 4}, {"name": "closed", "dims": 4}]),
                r["classifier"].update(gallery_dims=6)), r"leading block galleries compare, 'general' \(4\)"),
    (lambda r: r.update(known={"file": "k.npz", "sha256": SHA, "mode": "both"}), "known.mode"),
    (lambda r: r.update(verifier={"file": "v.npz", "sha256": SHA, "threshold": 2}), "verifier threshold"),
    (lambda r: r.update(decision={"features": ["nearest_moon"], "weights": [1.0], "threshold": 0.5}), "nearest_moon"),
    (lambda r: r["encoder"].update(batch="eight"), "encoder.batch"),
    (lambda r: r["classifier"].update(gallery_compares=[{"part": "general"}]), "gallery_compares.*encoder.blocks"),
    (lambda r: (r["encoder"].update(dim=8, blocks=BLOCKS), r["classifier"].update(gallery_compares=[{"part": "hue"}])),
     r"names 'hue', not a block or part of encoder.blocks \(general, closed, closed.emb, closed.colour\)"),
    (lambda r: (r["encoder"].update(dim=8, blocks=BLOCKS),
                r["classifier"].update(gallery_compares=[{"part": "general", "weight": 0}])), "must be above 0"),
    (lambda r: (r["encoder"].update(dim=8, blocks=BLOCKS),
                r["classifier"].update(gallery_compares=[{"part": "general"}, {"part": "general"}])), "a part twice"),
    (lambda r: (r["encoder"].update(dim=8, blocks=BLOCKS),
                r["classifier"].update(gallery_compares=[{"part": "general"}], gallery_dims=4)), "keep one"),
    (lambda r: r["classifier"].update(gallery_compares={"part": "general"}), r"list of \{part, weight\}"),
])
def test_what_no_step_could_use_is_refused_by_name(change, message):
    raw = minimal()
    change(raw)
    with pytest.raises(BundleError, match=message):
        Manifest.parse(raw)


def test_the_decision_is_parsed_as_data_with_the_manifest():
    d = Manifest.parse(minimal(decision={"features": ["top1_cosine", "gallery_energy@30"], "weights": [2, -1],
                                         "bias": 0.5, "threshold": 0.4})).decision
    assert isinstance(d, DecisionSpec) and d.features == ("top1_cosine", "gallery_energy@30")
    assert d.weights.dtype == np.float64 and d.weights.tolist() == [2.0, -1.0] and (d.bias, d.threshold) == (0.5, 0.4)
    assert DecisionSpec.parse(None) is None and DecisionSpec.parse({}) is None  # older bundles: no decision
    assert sharpened("gallery_top1_probability@2.5") == ("gallery_top1_probability", 2.5)
    assert sharpened("gallery_energy@0") is None and sharpened("top1_cosine") is None
    assert "linear_max_logit" in DECISION_FEATURES
    for bad, message in (({"features": ["top1_cosine"], "weights": [1.0], "threshold": 1.5}, "threshold"),
                         ({"features": [], "weights": [], "threshold": 0.5}, "known features"),
                         ({"features": ["top1_cosine"], "weights": ["heavy"], "threshold": 0.5}, "numbers"),
                         ([1, 2], "must be an object")):
        with pytest.raises(BundleError, match=message):
            Manifest.parse(minimal(decision=bad))


def test_a_section_parses_alone_for_tests_and_training():
    assert ClassifierSpec.parse({"format": "linear_npz", "temperature": 0}).temperature == 1.0  # 0 means unset
    assert DetectorSpec.parse({"format": "cascade"}).input is None
    enc = EncoderSpec.parse({"input": INPUT, "crop": {"scale": 0.8, "square": True}, "batch": "fixed1"})
    assert enc.crop == Crop(0.8, 0.0, True) and not enc.batched and enc.model is None
    assert KnownSpec.parse({}).mode == "joint"


@pytest.mark.parametrize(("section", "key", "value"), [
    ("detector", "max_heads", None), ("detector", "scale_factor", "x"), ("classifier", "temperature", "hot"),
    ("classifier", "input", "x"), ("encoder", "crop", {"scale": "big"})])
def test_a_value_of_the_wrong_type_is_a_bundle_error_naming_its_key(section, key, value):
    raw = minimal()
    raw[section][key] = value
    with pytest.raises(BundleError, match=f"{section}.*(input|{key}|scale)"):
        Manifest.parse(raw)


def test_a_bundle_names_its_manifest_in_the_error(tmp_path):
    from inference.bundle import Bundle

    raw = minimal()
    raw["detector"]["format"] = "ssd"
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"manifest\.json: Unknown detector format"):
        Bundle.load(tmp_path, threads=1)


def test_a_gallery_view_is_the_weighted_mean_of_its_parts_cosines():
    """`gallery_compares` names parts of the declared blocks; the dot product of two views is the weighted mean of
    the named parts' cosines, and pooled prototypes keep that (each part renormalised)."""
    raw = minimal(classifier={"file": "c.npz", "sha256": SHA, "format": "linear_npz",
                              "gallery_compares": [{"part": "general", "weight": 1.0},
                                                   {"part": "closed.colour", "weight": 3.0}]})
    raw["encoder"].update(dim=8, blocks=BLOCKS)
    view = Manifest.parse(raw).classifier.view
    assert [(p.name, p.start, p.stop, p.weight) for p in view.parts] == [("general", 0, 4, 1.0),
                                                                        ("closed.colour", 7, 8, 3.0)]
    assert view.width == 5
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 8)), rng.normal(size=(3, 8))
    cos = lambda x, y: (x / np.linalg.norm(x)) @ (y / np.linalg.norm(y))  # noqa: E731
    want = [[0.25 * cos(x[:4], y[:4]) + 0.75 * cos(x[7:], y[7:]) for y in b] for x in a]
    np.testing.assert_allclose(view.apply(a) @ view.apply(b).T, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(view.apply(a), axis=1), 1.0, atol=1e-6)
    mean = view.apply(b).mean(0, keepdims=True)
    proto = view.pool(mean)
    want = 0.25 * cos(a[0, :4], mean[0, :4]) + 0.75 * cos(a[0, 7:], mean[0, 4:])
    np.testing.assert_allclose(view.apply(a[:1]) @ proto.T, [[want]], atol=1e-6)
    assert ClassifierSpec.parse({"format": "linear_npz", "gallery_dims": 3}).view.width == 3  # older bundles
