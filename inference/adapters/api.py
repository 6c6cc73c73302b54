"""HTTP API (aiohttp): the reference system's endpoint, with `topN` honoured.

- `POST /detect?topN=K` and the reference alias `POST /dectect/?topN=K`: multipart field `file`.
  200 -> `{"preds": [[[name, prob], ...] per head], "head_locs": [[[x1, y1], [x2, y2]] per head]}`.
- `POST /whois?top=K` (multipart field `file`): the CLI's `whois --json` answer for the picture,
  `{"width", "height", "heads": [{"box", "score", "answer", "known", "sure", "label", "candidates": [{"name",
  "display", "series", "probability", "url"?}]}]}`: who each candidate is and the work it comes from; `answer` is
  null when the bot does not recognise the character; `label` is the label's rectangle on the annotated picture.
- `GET /characters?q=WORDS&limit=N`: who the bundle knows (`{"characters": N, "series": N, "matches": N,
  "results": [{"name", "display", "series", "url"}]}`).
- `GET /healthz` -> `{"status": "ok", "model": ..., "classes": N, "characters": N, "pending": N}`.
Errors are JSON `{"error": message}` with a 4xx code (413 too large, 415 not a picture, 400 other bad
input, 503 busy). Inference runs in a bounded executor, never on the event loop.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import ImageError, ImageTooLargeError, describe
from ..memory import freeze_startup_heap, unfreeze_heap
from ..runner import BoundedRunner, Busy
from ..settings import Settings

log = logging.getLogger("crystal_eyes.api")

PIPELINE = web.AppKey("pipeline", object)
RUNNER = web.AppKey("runner", BoundedRunner)
SETTINGS = web.AppKey("settings", Settings)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].http_max_request_bytes
        return _error(413, f"The request is too large (limit {limit // (1024 * 1024)} MiB).")
    except web.HTTPException as e:
        if e.status >= 400:
            return _error(e.status, e.reason or "error")
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error(500, "Internal error; the request was not processed.")


async def healthz(request: web.Request) -> web.Response:
    pipe = request.app[PIPELINE]
    info = pipe.info
    return web.json_response({"status": "ok", "model": f"{info['name']} {info['version']}",
                              "classes": info["classes"], "characters": info["characters"],
                              "series": info["series"], "pending": request.app[RUNNER].pending})


async def characters(request: web.Request) -> web.Response:
    index = request.app[PIPELINE].bundle.characters
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        return _error(400, f"limit must be a whole number, got {raw!r}.")
    if not 1 <= limit <= 1000:
        return _error(400, "limit must be between 1 and 1000.")
    hits = index.search(request.query.get("q", ""))
    return web.json_response({"characters": len(index), "series": index.series_count, "matches": len(hits),
                              "results": [{"name": c.tag, "display": c.display, "series": c.series, "url": c.url}
                                          for c in hits[:limit]]})


async def _read_file(request: web.Request, limit: int) -> bytes:
    if not request.content_type.startswith("multipart/"):
        raise web.HTTPBadRequest(reason="Send the picture as multipart/form-data in a field named 'file'.")
    reader = await request.multipart()
    async for part in reader:
        if part.name != "file":
            await part.release()
            continue
        chunks, size = [], 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ImageTooLargeError(f"The file is too large (the limit is {limit // (1024 * 1024)} MiB).")
            chunks.append(chunk)
        return b"".join(chunks)
    raise web.HTTPBadRequest(reason="No field named 'file' in the form.")


async def detect(request: web.Request) -> web.Response:
    """The reference system's answer (names and probabilities only)."""
    return await _recognize(request, "topN", lambda r: r.to_reference_json())


async def whois(request: web.Request) -> web.Response:
    """Every head with its candidates, each with who it is and its work."""
    return await _recognize(request, "top", _with_labels)


def _with_labels(result) -> dict:
    from ..annotate import label_boxes

    out = result.to_json()
    for head, label in zip(out["heads"], label_boxes(result), strict=True):
        head["label"] = label
    return out


async def _recognize(request: web.Request, top_param: str, render) -> web.Response:
    settings = request.app[SETTINGS]
    raw = request.query.get(top_param, str(settings.top_k))
    try:
        top_n = int(raw)
    except ValueError:
        return _error(400, f"{top_param} must be a whole number, got {raw!r}.")
    if not 1 <= top_n <= 50:
        return _error(400, f"{top_param} must be between 1 and 50.")
    whole = request.query.get("whole_image", "").lower() in ("1", "true", "yes")
    runner = request.app[RUNNER]
    try:
        if runner.full:  # refuse before spending the event loop's time on reading the upload
            raise Busy()
        data = await _read_file(request, settings.max_image_bytes)
        result = await runner.run(request.app[PIPELINE].recognize, data, top_k=top_n, whole_image=whole)
    except (Busy, ImageError) as e:  # the status from the error table (inference/errors.py); the message as raised
        status = describe(e).status
        return web.json_response({"error": str(e)}, status=status, headers={"Retry-After": "2"} if status == 503 else None)
    return web.json_response(render(result))


def create_app(pipeline, settings: Settings | None = None, runner: BoundedRunner | None = None) -> web.Application:
    settings = settings or pipeline.settings
    app = web.Application(client_max_size=settings.http_max_request_bytes, middlewares=[json_errors])
    app[PIPELINE] = pipeline
    app[SETTINGS] = settings
    app[RUNNER] = runner or BoundedRunner(settings.workers, settings.queue_size, name="crystal-eyes-api")
    app.router.add_post("/detect", detect)
    app.router.add_post("/dectect/", detect)
    app.router.add_post("/dectect", detect)
    app.router.add_post("/whois", whois)
    app.router.add_get("/characters", characters)
    app.router.add_get("/healthz", healthz)

    async def freeze_heap(app):  # startup is done: keep full GC pauses on the loop short (inference/memory.py)
        log.info("serving; %d startup objects frozen", freeze_startup_heap())

    async def close_runner(app):
        app[RUNNER].close()
        unfreeze_heap()

    app.on_startup.append(freeze_heap)
    app.on_cleanup.append(close_runner)
    return app


def run(pipeline, settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("serving %s on http://%s:%d", pipeline.info["name"], settings.http_host, settings.http_port)
    web.run_app(create_app(pipeline, settings), host=settings.http_host, port=settings.http_port, print=None)
