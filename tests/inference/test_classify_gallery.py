import numpy as np
import pytest

from inference.errors import GalleryError
from inference.gallery import Gallery, normalize_name, to_tag
from inference.manifest import ClassifierSpec, GalleryView


def test_probabilities_ranked_and_calibrated(tiny_pipeline, scene_bytes):
    r = tiny_pipeline.recognize(scene_bytes, top_k=5)
    for h in r.heads:
        p = [c.probability for c in h.candidates]
        assert p == sorted(p, reverse=True)
        assert sum(p) == pytest.approx(1.0, abs=1e-6)  # 5 of 5 classes
        assert {c.name for c in h.candidates} == set(tiny_pipeline.labels)
    r1 = tiny_pipeline.recognize(scene_bytes, top_k=1, threshold=0.999)
    assert all(len(h.candidates) == 1 and not h.sure for h in r1.heads)


def test_enrolled_character_wins_on_its_own_picture(tiny_pipeline, scene_bytes):
    g = tiny_pipeline.new_gallery()
    vec = tiny_pipeline.embed_for_enroll(scene_bytes, whole_image=True)
    tag = g.add("Subaru Natsuki", vec[None])
    assert tag == "subaru_natsuki"
    r = tiny_pipeline.recognize(scene_bytes, whole_image=True, gallery=g)
    top = r.heads[0].candidates[0]
    assert top.name == "subaru_natsuki" and top.source == "gallery"
    # without the gallery it is not a candidate at all
    assert "subaru_natsuki" not in {c.name for c in tiny_pipeline.recognize(scene_bytes, whole_image=True).heads[0].candidates}


def test_name_in_model_and_gallery_is_merged(tiny_pipeline, scene_bytes):
    g = tiny_pipeline.new_gallery()
    g.add("c.c.", tiny_pipeline.embed_for_enroll(scene_bytes, whole_image=True)[None])
    cands = tiny_pipeline.recognize(scene_bytes, whole_image=True, gallery=g, top_k=6).heads[0].candidates
    names = [c.name for c in cands]
    assert names.count("c.c.") == 1 and names[0] == "c.c."


@pytest.mark.parametrize(
    ("typed", "tag"),
    [
        ("Aqua (Konosuba)", "aqua_(konosuba)"),
        ("aqua_(konosuba)", "aqua_(konosuba)"),
        ("  Mori   Calliope ", "mori_calliope"),
        ("C.C.", "c.c."),
        ("Rem (Re:Zero)", "rem_(re:zero)"),
        ("<@123> hi", "123_hi"),
        ("Aqua ( Konosuba )", "aqua_(konosuba)"),
        ("  ", ""),
        ("モンキー・D・ルフィ", "モンキー_d_ルフィ"),
    ],
)
def test_to_tag(typed, tag):
    assert to_tag(typed) == tag


def test_normalize_name_is_to_tag_that_refuses_empty():
    assert normalize_name("Aqua ( Konosuba )") == "aqua_(konosuba)"
    with pytest.raises(GalleryError, match="at least one letter"):
        normalize_name("<> @#")


def test_gallery_roundtrip_remove_and_encoder_check(tmp_path, tiny_pipeline):
    g = tiny_pipeline.new_gallery()
    rng = np.random.default_rng(1)
    g.add("a", rng.standard_normal((3, 16)))
    g.add("b", rng.standard_normal((1, 16)))
    path = tmp_path / "g.npz"
    g.save(path)
    g2 = tiny_pipeline.load_gallery(path)
    assert g2.names == ["a", "b"] and g2.count("a") == 3
    names, protos = g2.prototypes()
    assert protos.shape == (2, 16) and np.allclose(np.linalg.norm(protos, axis=1), 1)
    assert g2.remove("a") == 3 and g2.names == ["b"] and g2.remove("zzz") == 0
    with pytest.raises(GalleryError, match="another encoder"):
        Gallery.load(path, "some-other-encoder", 16)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(GalleryError, match="unreadable"):
        tiny_pipeline.load_gallery(tmp_path / "bad.npz")
    with pytest.raises(GalleryError):
        normalize_name("   ")


def test_gallery_dims_compare_only_the_leading_part_of_the_embedding():
    from inference.classify import Classifier, gallery_view

    rng = np.random.default_rng(0)
    head = rng.normal(size=(4, 6)).astype(np.float32)
    tail = rng.normal(size=(4, 3)).astype(np.float32)
    emb = np.concatenate([head, tail], 1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    protos = emb[::-1].copy()
    spec = {"format": "linear_npz", "gallery_scale": 10.0, "gallery_bias": -1.0}
    w = (np.zeros((1, 9), np.float32), np.zeros(1, np.float32))
    full = Classifier(ClassifierSpec.parse(spec), ["x"], weights=w).gallery_logits(emb, protos)
    part = Classifier(ClassifierSpec.parse({**spec, "gallery_dims": 6}), ["x"], weights=w).gallery_logits(emb, protos)
    np.testing.assert_allclose(full, 10 * emb @ protos.T - 1, atol=1e-5)
    h = head / np.linalg.norm(head, axis=1, keepdims=True)
    np.testing.assert_allclose(part, 10 * h @ h[::-1].T - 1, atol=1e-5)  # the tail plays no part
    assert not np.allclose(full, part)
    assert np.allclose(np.linalg.norm(gallery_view(emb, 6), axis=1), 1) and gallery_view(emb, None) is emb


@pytest.mark.parametrize("bad", [0, 17, 2.5, "8", True])
def test_bundle_refuses_a_gallery_width_the_encoder_lacks(tiny_bundle, tmp_path, bad):
    import json
    import shutil

    from inference.bundle import Bundle
    from inference.errors import BundleError

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["classifier"]["gallery_dims"] = 8
    (b / "manifest.json").write_text(json.dumps(m))
    Bundle.load(b)  # 8 of the 16 dimensions: fine
    m["classifier"]["gallery_dims"] = bad
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="gallery_dims"):
        Bundle.load(b)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_gallery_of_a_compatible_encoder_keeps_its_characters(tmp_path):
    """A gallery saved by an encoder that the bundle names as compatible (the same leading embedding, other features
    appended after it) loads, cut to the compared part; prototypes are what this encoder's own vectors give."""
    rng = np.random.default_rng(2)
    head = rng.normal(size=(5, 6)).astype(np.float32)
    old = _unit(np.concatenate([_unit(head), 0.35 * _unit(rng.normal(size=(5, 3)))], 1))  # 9-d: head + 3 more
    new = _unit(np.concatenate([_unit(old), _unit(rng.normal(size=(5, 4)))], 1))  # 13-d: the old ones + 4 more
    names = ["ann", "ann", "ann", "bo", "bo"]
    v6 = GalleryView.leading(6)
    saved = Gallery("old-encoder", 9, names, old, view=v6)
    saved.save(tmp_path / "g.npz")
    g = Gallery.load(tmp_path / "g.npz", "new-encoder", 13, dims=6, compatible=("old-encoder",), view=v6)
    assert g.names == ["ann", "bo"] and g.count("ann") == 3 and g.encoder_id == "new-encoder" and g.dim == 13
    mine = Gallery("new-encoder", 13, names, new, view=v6)
    np.testing.assert_allclose(g.prototypes()[1], mine.prototypes()[1], atol=1e-6)
    want = _unit(np.stack([_unit(head[:3]).mean(0), _unit(head[3:]).mean(0)]))
    np.testing.assert_allclose(g.prototypes()[1], want, atol=1e-6)  # the compared part only
    # the kept gallery grows with this encoder's vectors and is saved as this encoder's
    g.add("ann", new[:1])
    g.save(tmp_path / "g2.npz")
    assert Gallery.load(tmp_path / "g2.npz", "new-encoder", 13, dims=6).count("ann") == 4
    # an encoder not named, or no compared part to cut to, or vectors narrower than it: refused as before
    for kwargs in ({"dims": 6, "compatible": ("else",)}, {"compatible": ("old-encoder",)},
                   {"dims": 12, "compatible": ("old-encoder",)}):
        with pytest.raises(GalleryError):
            Gallery.load(tmp_path / "g.npz", "new-encoder", 13, **kwargs)


def test_known_and_enrolled_prototypes_are_compared_through_the_declared_view():
    """With `gallery_compares` (here the 4-d general block and the closed block's 2-d colour part, weights 1 and 1)
    every cosine the ranking and the decision read is the mean of the two parts' cosines, for the known characters
    (stored as pooled views) and for an enrolled character (its full embeddings kept, pooled the same way)."""
    from inference.characters import KnownGallery
    from inference.classify import Classifier
    from inference.manifest import Block

    blocks = (Block("general", 4), Block("closed", 5, (Block("embedding", 3), Block("colour", 2))))
    spec = ClassifierSpec.parse({"format": "linear_npz", "gallery_compares": [{"part": "general"},
                                                                              {"part": "closed.colour"}]}, blocks)
    view = spec.view
    rng = np.random.default_rng(4)
    known_emb = rng.normal(size=(2, 9)).astype(np.float32)
    clf = Classifier(spec, ["a"], weights=(np.zeros((1, 9), np.float32), np.zeros(1, np.float32)),
                     known=KnownGallery(["k0", "k1"], view.pool(view.apply(known_emb)), 10.0, 0.0))
    gallery = Gallery("enc", 9, view=view)
    shots = rng.normal(size=(3, 9)).astype(np.float32)
    gallery.add("taught", shots)
    assert gallery.prototypes()[1].shape == (1, view.width)
    heads = rng.normal(size=(2, 9)).astype(np.float32)

    def cos(x, y):
        return (x / np.linalg.norm(x)) @ (y / np.linalg.norm(y))

    def unit_mean(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(0)

    taught_g, taught_c = unit_mean(shots[:, :4]), unit_mean(shots[:, 7:])
    want = [[0.5 * cos(h[:4], k[:4]) + 0.5 * cos(h[7:], k[7:]) for k in known_emb]
            + [0.5 * cos(h[:4], taught_g) + 0.5 * cos(h[7:], taught_c)] for h in heads]
    np.testing.assert_allclose(clf.cosines(heads, gallery), want, atol=1e-5)


@pytest.mark.parametrize("bad", ["abc", ["0" * 63], [1], "f" * 64])
def test_bundle_refuses_a_gallery_compatible_list_that_is_not_checksums(tiny_bundle, tmp_path, bad):
    import json
    import shutil

    from inference.bundle import Bundle
    from inference.errors import BundleError

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["classifier"]["gallery_compatible"] = ["A" * 64]
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="gallery_dims"):  # it names the shared part
        Bundle.load(b)
    m["classifier"]["gallery_dims"] = 8
    (b / "manifest.json").write_text(json.dumps(m))
    assert Bundle.load(b).gallery_compatible == ("a" * 64,)
    m["classifier"]["gallery_compatible"] = bad
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="gallery_compatible"):
        Bundle.load(b)


def test_the_name_is_kept_as_typed_across_save_and_load(tmp_path, tiny_pipeline, scene_bytes):
    g = tiny_pipeline.new_gallery()
    vec = tiny_pipeline.embed_for_enroll(scene_bytes, whole_image=True)
    tag = g.add("モンキー・D・ルフィ", vec[None])
    assert tag == "モンキー_d_ルフィ" and g.display(tag) == "モンキー・D・ルフィ"
    g.save(tmp_path / "g.npz")
    back = tiny_pipeline.load_gallery(tmp_path / "g.npz")
    assert back.display(tag) == "モンキー・D・ルフィ"
    r = tiny_pipeline.recognize(scene_bytes, whole_image=True, gallery=back)
    top = r.heads[0].candidates[0]
    assert top.name == tag and top.source == "gallery" and top.to_json()["display"] == "モンキー・D・ルフィ"
    assert back.remove("モンキー・D・ルフィ") == 1 and back.display(tag) != "モンキー・D・ルフィ"
