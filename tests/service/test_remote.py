"""Remote inference from the bot's side (service/remote.py): the client's timeouts, retries and busy answer
against a scripted HTTP server, then the real bundle served by Ray Serve on a local cluster (inference/adapters/serve.py)
giving what the in-process pipeline gives."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from inference.errors import BundleError, CorruptImageError, NotAnImageError
from inference.pipeline import Pipeline
from inference.settings import Settings
from service.config import BotConfig
from service.remote import InferenceClient, RemoteModel, Unavailable
from tests.conftest import ROOT

MODELS = ROOT / "models"


class Scripted:
    """An HTTP server on 127.0.0.1 answering each request with the next (status, JSON, delay) of `script`."""

    def __init__(self, script):
        self.script, self.seen = list(script), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                outer.seen.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, payload, delay = outer.script.pop(0) if outer.script else (200, {"ok": True}, 0)
                time.sleep(delay)
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_busy_answers_are_retried_then_reported_as_busy():
    server = Scripted([(503, {"error": "busy"}, 0), (503, {"error": "busy"}, 0), (200, {"fine": 1}, 0)])
    try:
        client = InferenceClient(server.url, timeout=2, retries=2, backoff=0.01)
        assert client.request("POST", "/recognize", body=b"picture") == (200, {"fine": 1})
        assert server.seen == [b"picture"] * 3  # the same picture each try
        server.script = [(503, {"error": "busy"}, 0)] * 3
        with pytest.raises(Unavailable) as caught:
            client.request("POST", "/recognize", body=b"picture")
        assert caught.value.why == "HTTP 503" and "try again" in str(caught.value)
    finally:
        server.close()


def test_a_slow_or_absent_service_is_busy_after_the_timeout():
    server = Scripted([(200, {}, 1.5)] * 2)
    try:
        client = InferenceClient(server.url, timeout=0.3, retries=1, backoff=0.01)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="busy or not answering") as caught:
            client.request("POST", "/recognize", body=b"x")
        assert time.monotonic() - t0 < 1.4 and "timed out" in caught.value.why
    finally:
        server.close()
    with pytest.raises(Unavailable) as caught:  # nothing listens there any more
        InferenceClient(server.url, timeout=0.5, retries=1, backoff=0.01).request("GET", "/healthz")
    assert "Refused" in caught.value.why


def test_a_bad_url_is_a_configuration_error():
    with pytest.raises(ValueError, match="INFERENCE_URL"):
        BotConfig(inference_url="ftp://somewhere")
    with pytest.raises(ValueError, match="http://host:port"):
        InferenceClient("http://")


def test_facts_come_from_the_bundle_without_running_it():
    model = RemoteModel.connect(Settings(bundle_dir=MODELS), BotConfig(inference_url="http://127.0.0.1:9"))
    assert model.bundle.sessions == {}  # no onnxruntime session in the bot
    assert len(model.characters) > 7000 and model.info["inference_url"] == "http://127.0.0.1:9"
    assert model.new_gallery().dim == model.bundle.manifest["encoder"]["dim"]


@pytest.fixture(scope="module")
def served(ray_serve):
    """The real bundle on 2 replicas that run one request each and queue one more (the last test fills them)."""
    url = ray_serve(MODELS, replicas=2, ongoing=1, queued=1)
    model = RemoteModel.connect(Settings(bundle_dir=MODELS), BotConfig(inference_url=url))
    return model, Pipeline.from_bundle(MODELS, Settings(ort_threads=1))


def test_the_served_bundle_names_what_the_local_one_names(served, shared):
    model, local = served
    assert model.check()["encoder"] == local.bundle.encoder_id
    for name in ("kiyoshimu-test0.jpg", "kiyoshimu-head1.jpg"):
        data = (shared / "scenes" / "misc" / name).read_bytes()
        rec = model.recognition(data, top_k=5)
        want = local.recognize(data, top_k=5)
        assert rec.result.to_json() == want.to_json() and rec.result.heads
        assert rec.annotated[:2] == b"\xff\xd8" and rec.fmt == "jpg"
        vec = model.embed_for_enroll(data)
        np.testing.assert_allclose(vec, local.embed_for_enroll(data), rtol=1e-4, atol=1e-5)


def test_bad_pictures_and_galleries_over_the_wire(served, shared):
    model, local = served
    with pytest.raises(NotAnImageError):
        model.recognition(b"<html>not a picture</html>", top_k=3)
    with pytest.raises(CorruptImageError):
        model.recognition((shared / "scenes" / "misc" / "kiyoshimu-test0.jpg").read_bytes()[:300], top_k=3)
    data = (shared / "scenes" / "misc" / "kiyoshimu-test1.jpg").read_bytes()
    gallery = model.new_gallery()
    gallery.add("my_oc_(server)", model.embed_for_enroll(data)[None])
    for _ in range(2):  # the first request sends the gallery after a 409, the second names it by sha256 only
        top = model.recognition(data, top_k=3, gallery=gallery).result.heads[0].top
        assert (top.name, top.source) == ("my_oc_(server)", "gallery")


def test_another_model_on_the_service_is_refused(served, tiny_bundle):
    model, _ = served
    other = RemoteModel.connect(Settings(bundle_dir=tiny_bundle), BotConfig(inference_url=model.client.url))
    with pytest.raises(BundleError, match="another model"):
        other.check()


def test_two_replicas_share_the_load_and_a_full_queue_is_busy(served, shared):
    """Requests reach both replicas, and of 12 at once the ones that find every queue full are refused (503) and
    reported busy, not left waiting."""
    from concurrent.futures import ThreadPoolExecutor

    model, _ = served
    assert len({model.client.request("GET", "/healthz")[1]["pid"] for _ in range(30)}) == 2
    impatient = RemoteModel(model.bundle, InferenceClient(model.client.url, timeout=60, retries=0))
    data = (shared / "scenes" / "misc" / "kiyoshimu-test0.jpg").read_bytes()

    def one(_):
        try:
            return len(impatient.recognition(data, top_k=3).result.heads) > 0
        except Unavailable as exc:
            return exc.why

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, range(12)))
    assert outcomes.count(True) >= 2 and outcomes.count("HTTP 503") >= 1, outcomes
    assert outcomes.count(True) + outcomes.count("HTTP 503") == 12, outcomes
