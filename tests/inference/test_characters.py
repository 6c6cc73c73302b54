"""Who the bundle knows: the character index, the known-character gallery, declared encoder blocks, and the CLI and
HTTP answers that show them (tiny ONNX bundles built here; no trained weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from bundles import LABELS, make_tiny_bundle
from inference.adapters.api import create_app
from inference.bundle import Bundle
from inference.characters import CharacterIndex
from inference.crop import whole_image
from inference.embed import Embedder
from inference.errors import BundleError
from inference.manifest import ClassifierSpec, EncoderSpec, KnownSpec
from inference.pipeline import Pipeline
from inference.result import Character
from inference.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

KNOWN = [
    {"tag": "mal_118763", "display": "Rem", "series": "Re:Zero kara Hajimeru Isekai Seikatsu",
     "url": "https://myanimelist.net/character/118763"},
    {"tag": "mal_13701", "display": "Mikoto Misaka", "series": None, "url": "https://myanimelist.net/character/13701"},
    {"tag": "amiya_(arknights)", "display": "Amiya", "series": "Arknights", "url": None},
    {"tag": "_(fate_grand_order)", "display": "ＢＢ", "series": "Fate/Grand Order", "url": None},
    {"tag": "hoshino_(blue_archive)", "display": "호시노", "series": "Blue Archive", "url": None},
]


def _picture_embedding(pipe, data: bytes) -> np.ndarray:
    """The embedding `whois --whole-image` computes for this picture."""
    w, h = pipe.embedder.size
    return pipe.embedder(whole_image(pipe.decode(data).image, w, h))[0]


@pytest.fixture(scope="module")
def known_bundle(tmp_path_factory, tiny_pipeline, scene_bytes):
    """The tiny bundle's models plus five known characters; Rem's prototype is the test picture's embedding."""
    e = _picture_embedding(tiny_pipeline, scene_bytes)
    vectors = np.random.default_rng(3).standard_normal((len(KNOWN), len(e)))
    vectors[0] = e * 10
    return make_tiny_bundle(tmp_path_factory.mktemp("known_bundle"), known=KNOWN, known_vectors=vectors)


@pytest.fixture(scope="module")
def known_pipeline(known_bundle):
    return Pipeline.from_bundle(known_bundle, Settings(ort_threads=1))


def test_known_characters_are_ranked_with_who_they_are(known_pipeline, scene_bytes):
    assert len(known_pipeline.characters) == len(known_pipeline.labels) + len(KNOWN)
    r = known_pipeline.recognize(scene_bytes, top_k=10, whole_image=True)
    top = r.heads[0].candidates[0]
    assert top.name == "mal_118763" and top.display == "Rem — Re:Zero kara Hajimeru Isekai Seikatsu"
    assert top.to_json() == {"name": "mal_118763", "display": "Rem", "series": "Re:Zero kara Hajimeru Isekai Seikatsu",
                             "probability": round(top.probability, 6), "url": "https://myanimelist.net/character/118763"}
    # a classifier label without an index entry is described from its tag; no url key when none is known
    other = next(c for c in r.heads[0].candidates if c.name in known_pipeline.labels)
    assert other.to_json()["series"] == Character.from_tag(other.name).series and "url" not in other.to_json()
    probs = [c.probability for c in r.heads[0].candidates]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6


def test_search_filters_by_work_and_knows_its_nicknames():
    entries = [Character("fubuki_(kantai_collection)", "Fubuki", "Kantai Collection", None),
               Character("fubuki_(azur_lane)", "Fubuki", "Azur Lane", None),
               Character("kirisame_marisa", "Kirisame Marisa", "Touhou Project", None),
               Character("amami_haruka", "Amami Haruka", "The Idolmaster", None),
               Character("mal_1", "Kan Collen", None, None)]
    index = CharacterIndex({c.tag: c for c in entries}, [c.tag for c in entries])
    # "kancolle" is in no name and no work: it stands for Kantai Collection, and finds no other work's Fubuki
    assert [c.tag for c in index.search("kancolle")] == ["fubuki_(kantai_collection)"]
    assert [c.tag for c in index.search("fubuki kancolle")] == ["fubuki_(kantai_collection)"]
    assert [c.tag for c in index.search("touhou")] == ["kirisame_marisa"]
    assert [c.tag for c in index.search("imas")] == [c.tag for c in index.search("idolmaster")] == ["amami_haruka"]
    assert [c.tag for c in index.search("fubuki")] == ["fubuki_(azur_lane)", "fubuki_(kantai_collection)"]


def test_search_folds_case_accents_and_order():
    index = CharacterIndex.build([k["tag"] for k in KNOWN])  # no index file: described from tags
    assert index.get("amiya_(arknights)").series == "Arknights"
    described = CharacterIndex({k["tag"]: Character(k["tag"], k["display"], k["series"], k["url"]) for k in KNOWN},
                               [k["tag"] for k in KNOWN])
    assert [c.tag for c in described.search("misaka")] == ["mal_13701"]
    assert [c.tag for c in described.search("MIKOTO  misaka!")] == ["mal_13701"]
    assert [c.tag for c in described.search("re zero")] == ["mal_118763"]  # by work, punctuation ignored
    assert [c.tag for c in described.search("호시노")] == ["hoshino_(blue_archive)"]
    assert [c.tag for c in described.search("ｂｂ")] == ["_(fate_grand_order)"]  # full-width folded
    assert len(described.search("")) == len(KNOWN) and described.search("nobody") == []
    assert described.series_count == 4


def test_blocks_are_normalised_each_on_its_own(tiny_bundle):
    b = Bundle.load(tiny_bundle, threads=1)
    spec = {**b.manifest["encoder"], "blocks": [{"name": "general", "dims": 4}, {"name": "closed", "dims": 12}]}
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    e = Embedder(EncoderSpec.parse(spec), b.sessions["encoder"])(crops)
    assert e.shape == (3, 16)
    assert np.allclose(np.linalg.norm(e[:, :4], axis=1), 1) and np.allclose(np.linalg.norm(e[:, 4:], axis=1), 1)
    plain = Embedder(b.spec.encoder, b.sessions["encoder"])(crops)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1)


def test_bundle_refuses_bad_blocks_and_bad_known_gallery(tmp_path):
    bad = make_tiny_bundle(tmp_path / "a", blocks=[{"name": "general", "dims": 4}, {"name": "closed", "dims": 4}])
    with pytest.raises(BundleError, match="add up to dim"):
        Bundle.load(bad, threads=1)
    wide = make_tiny_bundle(tmp_path / "b", known=KNOWN, known_vectors=np.ones((len(KNOWN), 8)), gallery_dims=4)
    with pytest.raises(BundleError, match="wrong shapes"):
        Bundle.load(wide, threads=1)
    parts = make_tiny_bundle(tmp_path / "d", blocks=[{"name": "general", "dims": 4}, {"name": "closed", "dims": 12,
                             "parts": [{"name": "embedding", "dims": 8}, {"name": "colour", "dims": 3}]}])
    with pytest.raises(BundleError, match=r"blocks\['closed'\]\.parts.*\(12\)"):
        Bundle.load(parts, threads=1)
    ok = make_tiny_bundle(tmp_path / "c", known=KNOWN, gallery_dims=4,
                          blocks=[{"name": "general", "dims": 4}, {"name": "closed", "dims": 12, "parts": [
                              {"name": "embedding", "dims": 8}, {"name": "colour", "dims": 4}]}])
    b = Bundle.load(ok, threads=1)
    assert b.known.vectors.shape == (len(KNOWN), 4) and b.info()["characters"] == len(b.labels) + len(KNOWN)


def test_cli_characters_searches_and_counts(known_bundle):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "inference", "characters", "--bundle", str(known_bundle), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    p = run("rem", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["characters"] == len(LABELS) + len(KNOWN) and out["matches"] >= 1
    assert out["results"][0] == {"name": "mal_118763", "display": "Rem", "series": KNOWN[0]["series"],
                                 "url": KNOWN[0]["url"]}
    text = run("arknights")
    assert text.returncode == 0 and f"knows {len(LABELS) + len(KNOWN)} characters" in text.stdout
    assert "amiya_(arknights)  Amiya  — Arknights" in text.stdout
    none = run("no such character")
    assert none.returncode == 1 and "0 matching" in none.stdout


async def test_http_whois_characters_and_healthz(known_pipeline, scene_bytes):
    async with TestClient(TestServer(create_app(known_pipeline, Settings(ort_threads=1)))) as client:
        await _http_checks(client, scene_bytes)


async def _http_checks(client, scene_bytes):
    form = FormData()
    form.add_field("file", scene_bytes, filename="art.jpg", content_type="image/jpeg")
    r = await client.post("/whois?top=2&whole_image=true", data=form)
    assert r.status == 200
    body = await r.json()
    cand = body["heads"][0]["candidates"]
    assert len(cand) == 2 and cand[0]["name"] == "mal_118763" and cand[0]["url"].endswith("/118763")
    form = FormData()
    form.add_field("file", scene_bytes, filename="art.jpg", content_type="image/jpeg")
    ref = await (await client.post("/dectect/?topN=2&whole_image=true", data=form)).json()
    assert ref["preds"][0][0][0] == "mal_118763" and set(ref) == {"preds", "head_locs"}  # the seed's JSON, as it was
    found = await (await client.get("/characters", params={"q": "mikoto misaka"})).json()
    assert found["matches"] == 2 and {r["name"] for r in found["results"]} == {"mal_13701", "misaka_mikoto"}
    bad = await client.get("/characters", params={"limit": "lots"})
    assert bad.status == 400 and "limit" in (await bad.json())["error"]
    health = await (await client.get("/healthz")).json()
    assert health["characters"] == len(LABELS) + len(KNOWN) and health["classes"] == len(LABELS)


def test_gate_mode_shares_the_classifiers_mass_by_the_prototypes(tmp_path):
    """'gate': the prototypes say how likely the head is one of the classifier's characters; the classifier shares
    that mass among its own. 'joint': one softmax over everything. Both sum to 1 over the names."""
    from inference.characters import KnownGallery
    from inference.classify import Classifier

    labels = ["a", "b"]
    W = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]], np.float32)
    protos = np.eye(4, dtype=np.float32)  # known: a, b (also classifier labels), x, y
    emb = np.array([[0.0, 0.0, 1.0, 0.0], [0.6, 0.0, 0.0, 0.8]], np.float32)  # x's head; a head near y and a
    spec = ClassifierSpec.parse({"format": "linear_npz", "temperature": 1.0})
    for mode in ("gate", "joint"):
        known = KnownGallery(["a", "b", "x", "y"], protos, 20.0, 0.0, mode)
        clf = Classifier(spec, labels, weights=(W, np.zeros(2, np.float32)), known=known)
        p, names, _ = clf.probabilities(emb)
        assert np.allclose(p.sum(1), 1.0) and names == ["a", "b", "a", "b", "x", "y"]
        top = clf(emb, top_k=2)
        assert top[0][0].name == "x"
        if mode == "gate":
            # the linear classifier alone would say 'a' with ~99 %; the prototypes put most mass on y
            assert top[1][0].name == "y" and 0 < p[1, 0] < p[1, 5]
    np.savez(tmp_path / "known.npz", names=np.array(["a"]), vectors=np.ones((1, 4)))
    with pytest.raises(BundleError, match="known.mode"):
        KnownSpec.parse({"mode": "both"})


def test_hub_offsets_are_the_mean_of_the_nearest_cosines_less_the_centre():
    """A prototype's offset: weight x (the mean of its k largest cosines to the known prototypes - centre), its
    cosine to itself left out when the prototypes are the known ones."""
    from inference.characters import hub_offsets
    from inference.manifest import HubSpec

    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 5)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    hub = HubSpec(k=3, weight=0.5, centre=0.1)
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    want = 0.5 * (np.sort(s, axis=1)[:, -3:].mean(1) - 0.1)
    assert np.allclose(hub_offsets(v, v, hub, exclude_self=True, chunk=2), want, atol=1e-6)
    q = rng.normal(size=(2, 5)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    assert np.allclose(hub_offsets(q, v, hub), 0.5 * (np.sort(q @ v.T, axis=1)[:, -3:].mean(1) - 0.1), atol=1e-6)
    assert hub_offsets(q, v, HubSpec(k=50, weight=1.0, centre=0.0)).shape == (2,)  # k larger than the gallery


def test_a_hub_loses_its_hold_on_heads_and_enrolled_characters_are_corrected_alike(tmp_path):
    """With `known.hub` the known prototypes' cosines are lowered by their shipped offsets and an enrolled
    character's by the offset its prototype gets against the known ones: the ranking and the decision's cosines
    both read the corrected values. A bundle that declares a correction must ship one offset per character."""
    from inference.characters import KnownGallery, hub_offsets
    from inference.classify import Classifier
    from inference.gallery import Gallery
    from inference.manifest import HubSpec

    # 'hub' sits between a crowd of characters; 'lone' is far from them. A head nearly as close to both.
    crowd = np.array([[1, .3, 0, 0], [1, -.3, 0, 0], [1, 0, .3, 0], [1, 0, -.3, 0]], np.float32)
    hub_v = np.array([[1, 0, 0, .35]], np.float32)
    lone = np.array([[0, 0, 0, 1]], np.float32)
    vectors = np.concatenate([crowd, hub_v, lone])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = ["c0", "c1", "c2", "c3", "hub", "lone"]
    head = np.array([[.62, 0, 0, .78]], np.float32)
    head /= np.linalg.norm(head)
    spec = ClassifierSpec.parse({"format": "linear_npz"})
    no_linear = (np.zeros((1, 4), np.float32), np.zeros(1, np.float32))
    plain = Classifier(spec, ["c0"], weights=no_linear, known=KnownGallery(names, vectors, 20.0, 0.0))
    assert plain(head, top_k=1)[0][0].name == "hub"
    hub = HubSpec(k=2, weight=1.0, centre=0.5)
    off = hub_offsets(vectors, vectors, hub, exclude_self=True)
    assert off[4] > off[5]
    known = KnownGallery(names, vectors, 20.0, 0.0, hub=hub, offsets=off)
    corrected = Classifier(spec, ["c0"], weights=no_linear, known=known)
    assert corrected(head, top_k=1)[0][0].name == "lone"
    assert np.allclose(corrected.cosines(head), head @ vectors.T - off, atol=1e-6)
    gallery = Gallery("enc", 4)
    gallery.add("taught", np.array([[1, 0, .1, .1]], np.float32))
    protos = gallery.prototypes()[1]
    cos = corrected.cosines(head, gallery)
    assert cos.shape == (1, 7)
    assert np.isclose(cos[0, 6], float(head[0] @ protos[0]) - hub_offsets(protos, vectors, hub)[0], atol=1e-6)
    assert corrected.cosines(head, gallery)[0, 6] == cos[0, 6]  # the enrolled offset is kept until the gallery changes
    gallery.add("other", np.array([[0, 1, 0, 0]], np.float32))
    assert corrected.cosines(head, gallery).shape == (1, 8)

    np.savez(tmp_path / "known.npz", names=np.array(names), vectors=vectors)
    spec_hub = KnownSpec.parse({"hub": {"k": 2, "weight": 1.0, "centre": 0.5}})
    with pytest.raises(BundleError, match="unreadable"):  # declared but not shipped
        KnownGallery.load(tmp_path / "known.npz", spec_hub, 4)
    np.savez(tmp_path / "known.npz", names=np.array(names), vectors=vectors, offsets=off[:3])
    with pytest.raises(BundleError, match="offsets"):
        KnownGallery.load(tmp_path / "known.npz", spec_hub, 4)
    np.savez(tmp_path / "known.npz", names=np.array(names), vectors=vectors, offsets=off)
    loaded = KnownGallery.load(tmp_path / "known.npz", spec_hub, 4)
    assert loaded.hub == hub and np.allclose(loaded.offsets, off)
    assert KnownGallery.load(tmp_path / "known.npz", KnownSpec.parse({}), 4).offsets is None  # none declared
    for bad in ({"k": 0, "weight": 1.0, "centre": 0.0}, {"k": 5, "weight": -1.0, "centre": 0.0},
                {"k": 5, "weight": 1.0}, [5, 1.0, 0.0]):
        with pytest.raises(BundleError, match="known.hub"):
            KnownSpec.parse({"hub": bad})
