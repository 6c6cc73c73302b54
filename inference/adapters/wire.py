"""Remote inference — what travels between a bot and the recognition service (inference/adapters/serve.py) over HTTP.

Plain data, no HTTP library and no Ray here: the service encodes with these functions, the bot's client
(service/remote.py) decodes with them, and a round trip gives back the same Result the pipeline made.

POST /recognize?top_k=K&whole_image=0|1[&threshold=T][&max_bytes=N]
    body: the picture's bytes, preceded by the server gallery's bytes when `X-Gallery-Length` says so.
    `X-Gallery-Sha256` names the gallery (the sha256 of its bytes); a replica keeps the galleries it was sent,
    so the bytes travel only when it answers 409 ``{"error": "gallery needed"}``.
    200: ``{"result": ..., "annotated": base64 JPEG}``.
POST /embed?whole_image=0|1: the picture -> ``{"embedding": base64 float32}`` (/teach).
GET /healthz: ``{"status": "ok", "encoder": sha256, "version": ...}``.
Errors: the error table's status (inference/errors.py: 400, 413 too large, 415 not a picture; 422 an unusable
gallery) with ``{"error": message, "type": "CorruptImageError"}`` (raised again as that type), 409 gallery
needed, 503 busy.
"""

from __future__ import annotations

import base64

import numpy as np

from .. import errors
from ..result import Candidate, Character, Head, Result

GALLERY_SHA = "X-Gallery-Sha256"
GALLERY_LENGTH = "X-Gallery-Length"
GALLERY_NEEDED = "gallery needed"


def _character(who: Character | None) -> dict | None:
    if who is None:
        return None
    return {"tag": who.tag, "display": who.display, "series": who.series, "url": who.url}


def encode_result(result: Result) -> dict:
    """Everything of a Result but its decoded picture (the service sends the annotated one beside it)."""
    return {
        "width": result.width, "height": result.height, "timings_ms": result.timings_ms,
        "heads": [{"box": [int(v) for v in h.box], "score": float(h.score), "sure": bool(h.sure),
                   "known": None if h.known is None else float(h.known),
                   "candidates": [{"name": c.name, "probability": float(c.probability), "source": c.source,
                                   "who": _character(c.who)} for c in h.candidates]}
                  for h in result.heads],
    }


def decode_result(data: dict) -> Result:
    heads = tuple(
        Head(tuple(int(v) for v in h["box"]), float(h["score"]),
             tuple(Candidate(c["name"], float(c["probability"]), c["source"],
                             Character(**c["who"]) if c.get("who") else None) for c in h["candidates"]),
             bool(h["sure"]), None if h["known"] is None else float(h["known"]))
        for h in data["heads"])
    return Result(int(data["width"]), int(data["height"]), heads, dict(data.get("timings_ms", {})))


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def encode_vector(vector: np.ndarray) -> str:
    return encode_bytes(np.ascontiguousarray(vector, dtype="<f4").tobytes())


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(decode_bytes(text), dtype="<f4").astype(np.float32)


def encode_error(exc: errors.CrystalEyesError) -> dict:
    return {"error": str(exc), "type": type(exc).__name__}


def decode_error(data: dict) -> Exception:
    """The service's error as the exception the pipeline raised (an ImageError subclass for a bad picture)."""
    kind = getattr(errors, str(data.get("type", "")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.ImageError)):
        kind = errors.ImageError
    return kind(str(data.get("error", "The picture could not be read.")))
