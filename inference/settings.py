"""One settings object, read from the environment (and `.env`) once and passed down.

Every variable is documented in `.env.example`. Nothing here imports discord: the CLI, the HTTP API,
the bot and the tests all build the same object. The bot's own options (its token, owners, state directory,
downloads, cooldowns...) are in `service/config.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "models"


def cpu_count() -> int:
    """CPUs this process may run on (affinity, so containers and `taskset` are honoured)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def env_float(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # --- models ---
    bundle_dir: Path = DEFAULT_BUNDLE
    ort_threads: int = field(default_factory=cpu_count)  # intra-op threads per onnxruntime session
    blas_threads: int = 1  # numpy's BLAS threads for the prototype products (inference/cpu.py); 0 = its own choice
    detect_threshold: float | None = None  # None: the manifest's default
    detect_nms_iou: float | None = None
    verify_heads: bool = True  # drop detected boxes the bundle's head verifier rejects (if it has one)
    verify_threshold: float | None = None  # None: the manifest's default
    # --- input limits ---
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # checked from the header before decoding
    decode_max_side: int = 2048  # bigger pictures are downscaled early (JPEG draft mode)
    malloc_mmap_threshold_mb: float = 8.0  # glibc: buffers this big go back to the OS on free (0 = default)
    # --- recognition defaults ---
    top_k: int = 3
    # a head whose `known` score is below this is not named ("I don't recognise this character"); None: the
    # bundle's calibrated decision threshold (inference/decide.py), or 0.30 of the top-1 probability without one
    unsure_threshold: float | None = None
    # --- serving ---
    workers: int = 1  # inference threads in the bot / API executor
    queue_size: int = 8  # requests waiting for a worker before "busy"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_request_bytes: int = 12 * 1024 * 1024
    # --- logging ---
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env_file: str | os.PathLike | None = ".env", **overrides) -> Settings:
        """Read the environment (after loading `env_file` if it exists; real env vars win)."""
        if env_file and Path(env_file).is_file():
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)
        s = cls(
            bundle_dir=Path(os.environ.get("BUNDLE_DIR") or DEFAULT_BUNDLE),
            ort_threads=env_int("ORT_THREADS", cpu_count()),
            blas_threads=env_int("BLAS_THREADS", cls.blas_threads),
            detect_threshold=env_float("DETECT_THRESHOLD", None),
            detect_nms_iou=env_float("DETECT_NMS_IOU", None),
            verify_heads=env_bool("VERIFY_HEADS", cls.verify_heads),
            verify_threshold=env_float("VERIFY_THRESHOLD", None),
            max_image_bytes=env_int("MAX_IMAGE_BYTES", cls.max_image_bytes),
            max_image_pixels=env_int("MAX_IMAGE_PIXELS", cls.max_image_pixels),
            decode_max_side=env_int("DECODE_MAX_SIDE", cls.decode_max_side),
            malloc_mmap_threshold_mb=env_float("MALLOC_MMAP_THRESHOLD_MB", cls.malloc_mmap_threshold_mb),
            top_k=env_int("TOP_K", cls.top_k),
            unsure_threshold=env_float("UNSURE_THRESHOLD", cls.unsure_threshold),
            workers=env_int("WORKERS", cls.workers),
            queue_size=env_int("QUEUE_SIZE", cls.queue_size),
            http_host=os.environ.get("HTTP_HOST", cls.http_host),
            http_port=env_int("HTTP_PORT", cls.http_port),
            http_max_request_bytes=env_int("HTTP_MAX_REQUEST_BYTES", cls.http_max_request_bytes),
            log_level=os.environ.get("LOG_LEVEL", cls.log_level).upper(),
        )
        return replace(s, **overrides) if overrides else s

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    def public(self) -> dict:
        """Every setting, to print or log (none is secret: the bot's token is in `service.config.BotConfig`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
