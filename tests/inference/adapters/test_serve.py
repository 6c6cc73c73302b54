"""The recognition service's core (inference/adapters/serve.py) and its wire format (inference/adapters/wire.py), without Ray:
what a replica answers for each request, and that a Result survives the trip."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from inference.adapters import wire
from inference.adapters.serve import RecognitionService
from inference.errors import CorruptImageError, ImageError, NotAnImageError
from inference.settings import Settings


@pytest.fixture(scope="module")
def service(tiny_pipeline):
    return RecognitionService(Settings(ort_threads=1), pipeline=tiny_pipeline)


def test_a_recognition_comes_back_as_the_pipeline_made_it(service, tiny_pipeline, scene_bytes):
    status, payload = service.handle("POST", "/recognize", {"top_k": "5"}, {}, scene_bytes)
    assert status == 200
    local = tiny_pipeline.recognize(scene_bytes, top_k=5)
    remote = wire.decode_result(payload["result"])
    assert remote.heads and remote.heads == local.heads  # boxes, scores, candidates, sure, known
    assert [c.display for c in remote.heads[0].candidates] == [c.display for c in local.heads[0].candidates]
    assert remote.to_json() == local.to_json()
    assert wire.decode_bytes(payload["annotated"])[:2] == b"\xff\xd8"  # the annotated picture, a JPEG


def test_bad_pictures_keep_their_error_type(service):
    for body, kind, code in ((b"hello, not a picture", NotAnImageError, 415),
                             (b"\xff\xd8\xff\xe0" + b"\0" * 40, CorruptImageError, 400)):
        status, payload = service.handle("POST", "/recognize", {}, {}, body)
        assert status == code  # the error table's status, as the HTTP API answers
        err = wire.decode_error(payload)
        assert type(err) is kind and str(err) == payload["error"] and str(err)


def test_a_gallery_travels_once_per_replica(service, tiny_pipeline, scene_bytes):
    gallery = tiny_pipeline.new_gallery()
    gallery.add("kiyo_girl_(test)", tiny_pipeline.embed_for_enroll(scene_bytes)[None])
    blob = gallery.to_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    status, payload = service.handle("POST", "/recognize", {}, {wire.GALLERY_SHA: sha}, scene_bytes)
    assert (status, payload) == (409, {"error": wire.GALLERY_NEEDED})
    status, payload = service.handle("POST", "/recognize", {},
                                     {wire.GALLERY_SHA: sha, wire.GALLERY_LENGTH: str(len(blob))}, blob + scene_bytes)
    assert status == 200
    assert wire.decode_result(payload["result"]).heads[0].top.name == "kiyo_girl_(test)"
    # now this replica has it: the sha alone is enough (header names as Starlette gives them, lower case)
    status, payload = service.handle("POST", "/recognize", {}, {wire.GALLERY_SHA.lower(): sha}, scene_bytes)
    assert status == 200 and wire.decode_result(payload["result"]).heads[0].top.source == "gallery"
    # bytes that are not the named gallery are refused, not used
    status, payload = service.handle("POST", "/recognize", {},
                                     {wire.GALLERY_SHA: "0" * 64, wire.GALLERY_LENGTH: str(len(blob))},
                                     blob + scene_bytes)
    assert status == 400 and "sha256" in payload["error"]


def test_embed_health_and_unknown_routes(service, tiny_pipeline, scene_bytes):
    status, payload = service.handle("POST", "/embed", {"whole_image": "1"}, {}, scene_bytes)
    assert status == 200
    np.testing.assert_allclose(wire.decode_vector(payload["embedding"]),
                               tiny_pipeline.embed_for_enroll(scene_bytes, whole_image=True), rtol=1e-6)
    status, health = service.handle("GET", "/healthz", {}, {}, b"")
    assert status == 200 and health["encoder"] == tiny_pipeline.bundle.encoder_id
    assert service.handle("GET", "/nowhere", {}, {}, b"")[0] == 404
    status, payload = service.handle("POST", "/recognize", {"top_k": "many"}, {}, scene_bytes)
    assert status == 400 and "many" in payload["error"]


def test_an_unknown_error_type_is_still_an_image_error():
    err = wire.decode_error({"error": "odd", "type": "SomethingElse"})
    assert type(err) is ImageError and str(err) == "odd"
    assert type(wire.decode_error({"error": "none", "type": "NoHeadError"})).__name__ == "NoHeadError"
