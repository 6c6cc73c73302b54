"""Tell the teacher (issue 53, point 3): after `enroll` (and /teach, tests/bot/test_gallery.py) the teacher learns how
well the character is now recognised (leave-one-out over its shots) and whether the shots look like a character
the bundle already knows. Tiny ONNX bundles built here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bundles import make_tiny_bundle
from inference.crop import whole_image
from inference.errors import TEACH, teach_lines
from inference.pipeline import Pipeline
from inference.result import Character
from inference.settings import Settings
from inference.teaching import MAX_SHOTS, TeachReport, assess

ROOT = Path(__file__).resolve().parents[2]
KNOWN = [{"tag": "mal_118763", "display": "Rem", "series": "Re:Zero kara Hajimeru Isekai Seikatsu", "url": None},
         {"tag": "amiya_(arknights)", "display": "Amiya", "series": "Arknights", "url": None}]


@pytest.fixture(scope="module")
def rem_bundle(tmp_path_factory, tiny_pipeline, scene_bytes) -> Path:
    """A bundle that knows Rem by the test picture's own embedding."""
    w, h = tiny_pipeline.embedder.size
    e = tiny_pipeline.embedder(whole_image(tiny_pipeline.decode(scene_bytes).image, w, h))[0]
    vectors = np.random.default_rng(5).standard_normal((len(KNOWN), len(e)))
    vectors[0] = e
    return make_tiny_bundle(tmp_path_factory.mktemp("rem"), known=KNOWN, known_vectors=vectors)


@pytest.fixture(scope="module")
def rem(rem_bundle) -> Pipeline:
    return Pipeline.from_bundle(rem_bundle, Settings(ort_threads=1))


def _cluster(dim: int, n: int, seed: int, spread: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(dim)
    return centre + spread * np.linalg.norm(centre) * rng.standard_normal((n, dim)) / np.sqrt(dim)


def test_one_shot_asks_for_more_and_several_are_tested_leave_one_out(tiny_pipeline):
    g = tiny_pipeline.new_gallery()
    dim = tiny_pipeline.embedding_dim()
    g.add("Other One", _cluster(dim, 3, 1))
    g.add("Kiyo Girl", _cluster(dim, 1, 2))
    one = tiny_pipeline.assess_taught(g, "kiyo_girl")
    assert (one.shots, one.tested, one.recognised, one.share) == (1, 0, 0, None)
    assert teach_lines(one, "Kiyo Girl")[0] == TEACH["few"].format(more=1, name="Kiyo Girl")
    g.add("Kiyo Girl", _cluster(dim, 4, 2)[1:])
    four = tiny_pipeline.assess_taught(g, "kiyo_girl")
    assert (four.shots, four.tested, four.recognised) == (4, 4, 4)
    assert teach_lines(four, "Kiyo Girl")[0] == ("Left out one at a time, 4 of its last 4 pictures are named "
                                                 "Kiyo Girl (100%).")


def test_scattered_shots_are_reported_weak_and_only_the_last_ones_are_tested(tiny_pipeline):
    g = tiny_pipeline.new_gallery()
    dim = tiny_pipeline.embedding_dim()
    rng = np.random.default_rng(7)
    for i in range(4):
        g.add(f"Decoy {i}", _cluster(dim, 2, 20 + i))
    g.add("Blur", rng.standard_normal((MAX_SHOTS + 5, dim)))  # nothing alike: each shot is nearer someone else
    r = tiny_pipeline.assess_taught(g, "blur")
    assert r.shots == MAX_SHOTS + 5 and r.tested == MAX_SHOTS and r.checked == MAX_SHOTS
    lines = teach_lines(r, "Blur")
    if r.share < 0.8:
        assert lines[1] == TEACH["weak"].format(name="Blur")


def test_shots_of_a_known_character_offer_that_one(rem, scene_bytes):
    g = rem.new_gallery()
    vec = rem.embed_for_enroll(scene_bytes, whole_image=True)
    g.add("My Waifu", np.stack([vec, vec]))
    r = rem.assess_taught(g, "my_waifu")
    assert r.looks_like is not None and r.looks_like.tag == "mal_118763" and r.looks_like_shots == 2
    lines = teach_lines(r, "My Waifu")
    assert "These pictures look like Rem — Re:Zero kara Hajimeru Isekai Seikatsu, whom I already know" in lines[-1]
    assert lines[-1].endswith("`/forget my_waifu` removes what was taught.")
    assert teach_lines(r, "My Waifu", where="cli")[-1].endswith("remove my_waifu from the gallery file.")
    # taught under the bundle's own tag: told it is known already, no offer to forget
    g.add("mal_118763", vec[None])
    same = rem.assess_taught(g, "mal_118763")
    assert same.looks_like.tag == "mal_118763" and teach_lines(same, "Rem")[-1] == TEACH["same"].format(
        known=same.looks_like.title)


def test_assess_reads_the_decision_threshold(rem, scene_bytes):
    g = rem.new_gallery()
    vec = rem.embed_for_enroll(scene_bytes, whole_image=True)
    g.add("My Waifu", vec[None])
    never = assess(rem.classifier, rem.decision, g, "my_waifu", threshold=1.01)  # the bot names nobody
    assert never.looks_like is None and teach_lines(never, "x") == [TEACH["few"].format(more=1, name="x")]


def test_report_words_without_a_known_look_alike():
    r = TeachReport("a", 10, 10, 7, None, 0, 10)
    assert teach_lines(r, "A") == ["Left out one at a time, 7 of its last 10 pictures are named A (70%).",
                                   TEACH["weak"].format(name="A")]
    r = TeachReport("a", 3, 3, 3, Character("b", "B", "Work"), 2, 3)
    assert teach_lines(r, "A", known="**B**")[-1].startswith("These pictures look like **B**, whom I already know "
                                                             "(I name them so for 2 of 3 without")


def test_enroll_tells_the_teacher(rem_bundle, scene_bytes, tmp_path):
    pic = tmp_path / "rem.jpg"
    pic.write_bytes(scene_bytes)
    gallery = tmp_path / "g.npz"
    cmd = [sys.executable, "-m", "inference", "enroll", "--bundle", str(rem_bundle), "--gallery", str(gallery),
           "--character", "My Waifu", "--whole-image", str(pic), str(pic)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Left out one at a time, 2 of its last 2 pictures are named My Waifu (100%)." in p.stdout
    assert "look like Rem — Re:Zero kara Hajimeru Isekai Seikatsu, whom I already know" in p.stdout


def test_a_shot_is_judged_as_a_recognition_of_the_picture_would_be(rem, scene_bytes):
    for whole in (True, False):
        shot = rem.enroll_shot(scene_bytes, whole_image=whole)
        np.testing.assert_array_equal(shot.vector, rem.embed_for_enroll(scene_bytes, whole_image=whole))
        r = rem.recognize(scene_bytes, whole_image=whole, top_k=1)
        if whole:
            head = r.heads[0]
        else:  # the largest head
            head = max(r.heads, key=lambda h: (h.box[2] - h.box[0]) * (h.box[3] - h.box[1]))
        assert shot.judged and (shot.named.name if shot.named else None) == (
            head.candidates[0].name if head.sure else None)
    g = rem.new_gallery()
    shot = rem.enroll_shot(scene_bytes, whole_image=True)
    g.add("My Waifu", shot.vector[None])
    # the judgement of the pictures just taught is used; without one (a service embedded them), the stored vectors
    assert rem.assess_taught(g, "my_waifu", [shot]).looks_like.tag == "mal_118763"
    from inference.teaching import Shot

    unjudged = Shot(shot.vector, None, judged=False)
    assert rem.assess_taught(g, "my_waifu", [unjudged]) == rem.assess_taught(g, "my_waifu")
