"""training/general/forms.py: leave-variant-out (a character named in a form it has no picture of), on a tiny bundle
whose known characters are placed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import make_tiny_bundle
from inference.pipeline import Pipeline
from inference.settings import Settings
from training.general.forms import evaluate, held_out_folds, rank_hits

DIM = 16


def test_each_variant_is_held_out_from_its_own_prototype():
    tags = ["a", "a", "a", "b", "b", "c"]
    keys = ["base", "kai", "kai", "base", "summer", "base"]
    folds = held_out_folds(tags, keys)
    assert [(t, k) for t, k, _, _ in folds] == [("a", "base"), ("a", "kai"), ("b", "base"), ("b", "summer")]
    for t, k, q, rest in folds:  # the held-out pictures are never in the prototype; the rest all are
        assert {keys[i] for i in q} == {k} and k not in {keys[i] for i in rest}
        assert set(q) | set(rest) == {i for i, x in enumerate(tags) if x == t}
    # "c" has one variant: nothing to hold out. Only some pictures may be queried (another source's are kept in
    # the prototypes, never asked)
    may = np.array([True, True, False, True, True, True])
    folds = held_out_folds(tags, keys, may)
    assert [(t, k, list(q)) for t, k, q, _ in folds] == [("a", "base", [0]), ("a", "kai", [1]), ("b", "base", [3]),
                                                        ("b", "summer", [4])]
    assert list(folds[0][3]) == [1, 2]


def test_rank_hits_counts_top1_and_topk():
    assert rank_hits([["a", "b", "c"], ["b", "a", "c"], ["c", "b", "x"]], ["a", "a", "a"]) == (1 / 3, 2 / 3)
    assert rank_hits([], []) == (0.0, 0.0)


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """Three known characters on three axes; A's forms all lie near A's axis, D's held-out form near B's."""
    known = [{"tag": t, "display": t.upper(), "series": "Test", "url": None} for t in ("a", "b", "c")]
    vectors = np.eye(3, DIM)
    bundle = make_tiny_bundle(tmp_path_factory.mktemp("forms"), known=known, known_vectors=vectors, gallery_dims=DIM)
    return Pipeline.from_bundle(bundle, Settings(ort_threads=1))


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_a_held_out_form_is_named_from_the_other_forms(placed):
    e = np.eye(DIM, dtype=np.float32)
    # "a": two forms, both close to axis 0 -> named right either way. "c": its base form is on axis 2, its summer
    # outfit on axis 1 (b's): held out, the summer picture is named "b"; the base one, from a prototype on axis 1, too
    emb = np.stack([_unit(e[0] + 0.1 * e[5]), _unit(e[0] + 0.1 * e[6]), e[2], e[1]])
    tags, keys = ["a", "a", "c", "c"], ["base", "kai", "base", "summer"]
    r = evaluate(placed, emb, tags, keys)
    assert r["pictures"] == 4 and r["characters_held_out"] == 2 and r["characters_one_variant"] == 0
    assert r["top1"] == 0.5 and r["cosine_top1"] == 0.5
    # among the prototypes alone c is second for its held-out pictures (cosine 0, the others' below); in the full
    # ranking the classifier's own characters come before a prototype at cosine 0
    assert r["cosine_top3"] == 1.0 and r["top3"] == 0.5
    assert r["named_right"] + r["named_wrong"] + r["not_recognised"] == pytest.approx(1.0)
    assert r["known_characters"] == 3


def test_a_character_the_bundle_does_not_know_is_refused(placed):
    with pytest.raises(SystemExit, match="not in the bundle"):
        evaluate(placed, np.eye(2, DIM, dtype=np.float32), ["zz", "zz"], ["x", "y"])
