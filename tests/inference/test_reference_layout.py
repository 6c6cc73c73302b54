"""A bundle in the reference system's layout loads and runs unchanged, with models of exactly its
signatures (built here), and its label pickle is read without unpickling."""

import json
import pickle

import numpy as np
import pytest

from bundles import make_reference_layout
from inference.bundle import Bundle
from inference.errors import BundleError
from inference.labels import read_label_pickle
from inference.pipeline import Pipeline
from inference.reference import write_reference_manifest
from inference.settings import Settings


@pytest.fixture(scope="module")
def ref_labels(shared):
    return json.loads((shared / "reference" / "crystal-eyes" / "chara.json").read_text())


def test_reference_layout_loads_and_runs(tmp_path, ref_labels, shared):
    d = make_reference_layout(tmp_path / "ref", ref_labels)
    with pytest.raises(BundleError, match="reference layout"):
        Bundle.load(d)
    m = json.loads(write_reference_manifest(d).read_text())
    assert m["detector"]["format"] == "yolov5" and m["detector"]["input"]["resize"] == "squash"
    assert m["detector"]["input"]["size"] == [640, 640] and m["encoder"]["batch"] == "fixed1"
    assert m["encoder"]["input"]["mean"] == [0.6826, 0.6033, 0.5841] and m["encoder"]["dim"] == 512
    pipe = Pipeline.from_bundle(d, Settings(ort_threads=1))
    assert len(pipe.labels) == 1551 and pipe.labels[1096] == "rem_(re:zero)"
    data = (shared / "scenes" / "misc" / "kiyoshimu-test0.jpg").read_bytes()  # 1024x576
    r = pipe.recognize(data, top_k=3)
    # rows (cx,cy,w,h,obj,cls) in squashed 640x640: head (320,200,160,160) -> x /0.625, y /1.111
    assert len(r.heads) == 1  # the 2nd row overlaps the 1st (NMS 0.5), the 3rd scores 0.09 < 0.2
    assert r.heads[0].box == (384, 108, 640, 252)
    assert len(r.heads[0].candidates) == 3
    assert all(c.name in ref_labels for c in r.heads[0].candidates)
    assert len(pipe.recognize(data, top_k=7).heads[0].candidates) == 7
    # batch-1 encoder: several heads still work (one call per head)
    assert pipe.embedder.batched is False and pipe.classifier.batched is False


def test_idx_label_pickle_read_without_unpickling(tmp_path):
    arr = np.array(["2k-tan", "abe_nana", "c.c.", "rem_(re:zero)"])  # dtype <U13
    data = pickle.dumps(arr, protocol=3)
    assert read_label_pickle(data) == ["2k-tan", "abe_nana", "c.c.", "rem_(re:zero)"]

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(BundleError, match="only a numpy string array"):
        read_label_pickle(pickle.dumps(Evil(), protocol=3))
    with pytest.raises(BundleError):
        read_label_pickle(b"not a pickle")


def test_reference_layout_with_idx_label_pkl(tmp_path):
    labels = ["abe_nana", "c.c.", "rem_(re:zero)"]
    d = make_reference_layout(tmp_path / "ref", labels)
    (d / "chara.json").unlink()
    (d / "idx_label.pkl").write_bytes(pickle.dumps(np.array(labels), protocol=3))
    write_reference_manifest(d)
    assert Pipeline.from_bundle(d, Settings(ort_threads=1)).labels == labels
