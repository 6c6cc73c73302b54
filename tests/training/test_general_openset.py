"""training/general/openset.py: heads of characters taken out of the known gallery, named or not at the threshold
(a tiny bundle whose known characters are placed by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import make_tiny_bundle
from inference.pipeline import Pipeline
from inference.settings import Settings
from training.general.openset import unknown_named, without

DIM = 16


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    known = [{"tag": t, "display": t.upper(), "series": "Test", "url": None} for t in ("a", "b", "c")]
    bundle = make_tiny_bundle(tmp_path_factory.mktemp("openset"), known=known, known_vectors=np.eye(3, DIM),
                              gallery_dims=DIM)
    return Pipeline.from_bundle(bundle, Settings(ort_threads=1))


def test_a_character_taken_out_is_no_longer_named(placed):
    heads = np.eye(DIM, dtype=np.float32)[[0, 0]]  # two heads on a's prototype
    kept = unknown_named(placed, heads, ["b", "b"])  # b taken out: a is still known and named
    assert kept["known_characters"] == 2 and kept["named_as"] == ["a"] and kept["unknown_named"] == 1.0
    gone = unknown_named(placed, heads, ["a", "a"])
    assert gone["known_characters"] == 2 and "a" not in gone["named_as"]
    assert gone["heads"] == 2 and gone["characters"] == 1 and gone["threshold"] == pytest.approx(0.3)
    # the shipped pipeline is left as it was
    assert placed.classifier.known.names == ["a", "b", "c"]
    assert without(placed, {"a", "c"}).known.names == ["b"]
