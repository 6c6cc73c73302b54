"""The measuring commands of issue 53 (training/general/framing.py, training/general/teach.py): the bundle "without"
a character is the same ranking with its columns taken out, the halves are fixed, and the best rank over heads is
what `eval` counts. Tiny ONNX bundles built here."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import make_tiny_bundle
from inference.pipeline import Pipeline
from inference.result import Candidate, Head, Result
from inference.settings import Settings
from training.general.framing import rank_of
from training.general.teach import Server, half, without

KNOWN = [{"tag": f"known_{i}", "display": f"Known {i}", "series": None, "url": None} for i in range(4)]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> Pipeline:
    return Pipeline.from_bundle(make_tiny_bundle(tmp_path_factory.mktemp("teach"), known=KNOWN), Settings(ort_threads=1))


def test_without_is_the_joint_ranking_with_those_columns_taken_out(pipe):
    emb = np.random.default_rng(0).standard_normal((3, pipe.embedding_dim())).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    drop = frozenset({pipe.labels[0], "known_1"})
    p, names, _ = pipe.classifier.probabilities(emb)
    q, qnames, _ = without(pipe.classifier, drop).probabilities(emb)
    keep = np.array([n not in drop for n in names])
    assert qnames == [n for n in names if n not in drop]
    np.testing.assert_allclose(q, p[:, keep] / p[:, keep].sum(1, keepdims=True), rtol=1e-6)


def test_a_taught_character_is_ranked_from_its_gallery_only(pipe):
    emb = np.random.default_rng(1).standard_normal((2, pipe.embedding_dim())).astype(np.float32)
    server = Server(pipe, {"known_2": emb}, prior=0.0)
    p, names, top1 = server.ranked(emb)
    assert names.count("known_2") == 1 and "known_2" in server.gallery.names
    assert np.allclose(p.sum(1), 1) and np.allclose(top1, p.max(1))


def test_halves_are_fixed_and_both_used():
    tags = [f"character_{i}" for i in range(40)]
    assert [half(t) for t in tags] == [half(t) for t in tags]
    assert {half(t) for t in tags} == {"fit", "report"}


def test_rank_of_takes_the_best_head():
    def head(*names):
        return Head((0, 0, 1, 1), 1.0, tuple(Candidate(n, 0.1) for n in names), True, 1.0)

    r = Result(10, 10, (head("a", "b", "c"), head("c", "a")), {}, None)
    assert rank_of(r, "c") == 0 and rank_of(r, "a") == 0 and rank_of(r, "b") == 1 and rank_of(r, "z") == 99
    assert rank_of(Result(10, 10, (), {}, None), "a") == 99


def test_nearest_head_of_the_experiment():
    from inference.manifest import GalleryView
    from training.general.teach import nearest_head

    rng = np.random.default_rng(3)
    emb = rng.standard_normal((4, 16)).astype(np.float32)
    like = emb[2] + 0.1 * rng.standard_normal((3, 16))
    assert nearest_head(emb, like, None) == 2
    assert nearest_head(emb, like, GalleryView.leading(8)) == nearest_head(emb[:, :8], like[:, :8], None)
