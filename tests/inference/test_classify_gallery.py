import numpy as np
import pytest

from inference.errors import GalleryError
from inference.gallery import Gallery, normalize_name, to_tag


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
