"""Remote inference, the bot's side: with INFERENCE_URL the bot sends its pictures to the recognition service
(inference/adapters/serve.py, Ray Serve replicas) instead of running the models itself.

The bot still reads the bundle's facts from its own copy of the bundle — labels, who each character is, the
encoder that server galleries belong to — but opens no onnxruntime session (`Bundle.load(sessions=False)`), so a
bot process stays small however many shards run. At start it checks that the service serves the same encoder.

Each request: a timeout, then retries with a short backoff when the service is busy (503) or unreachable; after
the last one the user gets the "busy" answer (`Unavailable` is a `Busy`). A bad picture comes back as the same
ImageError the pipeline raises in process. The protocol is in inference/adapters/wire.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import threading
import time
from urllib.parse import urlencode, urlsplit

import numpy as np

from inference.adapters import wire
from inference.bundle import Bundle, BundleFacts
from inference.errors import BundleError, GalleryError
from inference.gallery import Gallery

from .recognizer import Busy, Recognition, Recognizer

log = logging.getLogger(__name__)

__all__ = ["InferenceClient", "RemoteModel", "RemoteRecognizer", "Unavailable"]


class Unavailable(Busy):
    """The recognition service stayed busy or unreachable through every retry."""

    def __init__(self, why: str) -> None:
        super().__init__("The recognition service is busy or not answering right now; try again in a moment.")
        self.why = why


class InferenceClient:
    """HTTP/1.1 to the recognition service: one kept-alive connection per thread (the recognizer's workers)."""

    def __init__(self, url: str, *, timeout: float = 20.0, retries: int = 2, backoff: float = 0.25) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"INFERENCE_URL must look like http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self.timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method: str, path: str, query: dict | None = None, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict]:
        """(status, JSON) of the first answer that is not busy or a server failure; Unavailable after the retries."""
        target = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        why = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, self.backoff * 2 ** (attempt - 1)))
            try:
                conn = self._connection()
                conn.request(method, target, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, closed keep-alive
                self._drop()
                why = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status == 503 or resp.status >= 500:
                why = f"HTTP {resp.status}"
                continue
            try:
                return resp.status, json.loads(data)
            except ValueError:
                why = f"HTTP {resp.status} with a body that is not JSON"
                break
        log.warning("recognition service %s: %s %s failed after %d tries (%s)", self.url, method, path,
                    self.retries + 1, why)
        raise Unavailable(why)

    def close(self) -> None:
        self._drop()


class RemoteModel(BundleFacts):
    """What the bot asks of its pipeline — facts, galleries, recognitions — with the models run by the service."""

    def __init__(self, bundle: Bundle, client: InferenceClient) -> None:
        self.bundle = bundle
        self.client = client

    @classmethod
    def connect(cls, settings, config) -> RemoteModel:
        """The bundle's facts from `settings.bundle_dir` and a client of `config.inference_url` (no request yet)."""
        bundle = Bundle.load(settings.bundle_dir, threads=1, sessions=False)
        return cls(bundle, InferenceClient(config.inference_url, timeout=config.inference_timeout,
                                           retries=config.inference_retries))

    # -- facts (labels, characters and galleries: BundleFacts) ----------------------------------------------------
    @property
    def info(self) -> dict:
        return {**self.bundle.info(), "inference_url": self.client.url}

    def check(self) -> dict:
        """The service's health; BundleError when it runs another encoder (server galleries would not match)."""
        status, health = self.client.request("GET", "/healthz")
        if status != 200:
            raise BundleError(f"The recognition service at {self.client.url} answered HTTP {status} to /healthz.")
        if health.get("encoder") != self.bundle.encoder_id:
            raise BundleError(f"The recognition service at {self.client.url} runs another model "
                              f"({health.get('name')} {health.get('version')}) than this bot's bundle "
                              f"({self.info['version']}); deploy the same bundle to both.")
        return health

    # -- the jobs (blocking: they run on the recognizer's worker threads) -------------------------------------------
    def _answer(self, status: int, payload: dict) -> dict:
        if status == 200:
            return payload
        if status == 422:
            raise GalleryError(payload.get("error", "The server's gallery could not be used."))
        if 400 <= status < 500 and "type" in payload:  # a bad picture: the pipeline's own error, raised again
            raise wire.decode_error(payload)
        raise Unavailable(f"HTTP {status}: {payload.get('error')}")

    def recognition(self, data: bytes, *, top_k: int, whole_image: bool = False, gallery: Gallery | None = None,
                    threshold: float | None = None, max_bytes: int | None = None) -> Recognition:
        query = {"top_k": int(top_k), "whole_image": int(bool(whole_image))}
        if threshold is not None:
            query["threshold"] = float(threshold)
        if max_bytes is not None:
            query["max_bytes"] = int(max_bytes)
        headers = {"Content-Type": "application/octet-stream"}
        blob = b""
        if gallery is not None and len(gallery):
            blob = gallery.to_bytes()
            headers[wire.GALLERY_SHA] = hashlib.sha256(blob).hexdigest()
        status, payload = self.client.request("POST", "/recognize", query, data, headers)
        if status == 409 and payload.get("error") == wire.GALLERY_NEEDED:  # this replica has not seen it yet
            headers[wire.GALLERY_LENGTH] = str(len(blob))
            status, payload = self.client.request("POST", "/recognize", query, blob + data, headers)
        payload = self._answer(status, payload)
        return Recognition(result=wire.decode_result(payload["result"]),
                           annotated=wire.decode_bytes(payload["annotated"]), fmt=payload.get("fmt", "jpg"))

    def enroll_shot(self, data: bytes, whole_image: bool = False):
        """The service's embedding, not judged here (inference/teaching.py judges the stored vectors instead)."""
        from inference.teaching import Shot

        return Shot(self.embed_for_enroll(data, whole_image), None, judged=False)

    def embed_for_enroll(self, data: bytes, whole_image: bool = False) -> np.ndarray:
        status, payload = self.client.request("POST", "/embed", {"whole_image": int(bool(whole_image))}, data,
                                              {"Content-Type": "application/octet-stream"})
        vec = wire.decode_vector(self._answer(status, payload)["embedding"])
        if vec.shape != (self.embedding_dim(),):
            raise Unavailable(f"the service sent a {vec.shape} embedding, the bundle's are {self.embedding_dim()}-d")
        return vec


class RemoteRecognizer(Recognizer):
    """The bounded runner of the bot with its jobs sent to the service: `workers` requests in flight at once."""

    pipeline: RemoteModel

    def _recognize(self, data, top_k, whole_image, gallery, threshold, max_bytes) -> Recognition:
        return self.pipeline.recognition(data, top_k=top_k, whole_image=whole_image, gallery=gallery,
                                         threshold=threshold, max_bytes=max_bytes)

    def close(self) -> None:
        super().close()
        self.pipeline.client.close()
