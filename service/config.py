"""Bot-only options. Everything shared with the CLI and the HTTP API lives in `inference.settings.Settings`.

Every variable is documented in `.env.example`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from inference.settings import ROOT, env_bool, env_float, env_int

DEFAULT_DATA_DIR = ROOT / "data"


def _rate(name: str, default: tuple[int, float]) -> tuple[int, float]:
    """``"3/30"`` -> 3 uses per 30 seconds. ``"0"`` or ``"off"`` disables the limit (0 uses)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"0", "off", "none"}:
        return (0, 0.0)
    try:
        uses, per = raw.split("/", 1)
        out = (int(uses), float(per))
    except ValueError:
        raise ValueError(f"{name} must look like USES/SECONDS (for example 3/30), got {raw!r}") from None
    if out[0] < 0 or out[1] <= 0:
        raise ValueError(f"{name} must have positive numbers, got {raw!r}")
    return out


def _ids(name: str) -> frozenset[int]:
    raw = os.environ.get(name, "")
    out = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if part:
            if not part.isdigit():
                raise ValueError(f"{name} must be a comma-separated list of Discord user ids, got {part!r}")
            out.add(int(part))
    return frozenset(out)


def _int_list(name: str) -> tuple[int, ...] | None:
    """``"0,1"`` -> (0, 1)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{name} must list whole numbers separated by commas (e.g. 0,1), got {raw!r}") from None


@dataclass(frozen=True)
class BotConfig:
    # The bot token (DISCORD_TOKEN): never printed, logged (`public`) or shown in a repr.
    discord_token: str = field(default="", repr=False)
    # Where the SQLite settings database and the server galleries live (DATA_DIR).
    data_dir: Path = DEFAULT_DATA_DIR
    # Discord user ids allowed to run the owner-only `@bot sync`; empty: the application's owner (OWNER_IDS).
    owner_ids: frozenset[int] = frozenset()
    # Largest download for `/whois url:` (URL_MAX_BYTES).
    url_max_bytes: int = 10 * 1024 * 1024
    # Request the privileged message-content intent (enable it in the developer portal too). Needed for the
    # reaction trigger and watch channels; slash commands and the context menu work without it.
    message_content: bool = False
    # Recognitions allowed per user / per guild in a window: (uses, seconds). (0, 0) disables the limit.
    user_cooldown: tuple[int, float] = (4, 30.0)
    guild_cooldown: tuple[int, float] = (30, 60.0)
    # Pictures handled per message (attachments + image embeds); the rest are ignored with a note.
    max_pictures: int = 4
    # A file the bot touches every 30 s while connected (the Docker HEALTHCHECK reads its age). None: off.
    health_file: str | None = None
    # Shared state for several processes (shards, hosts): postgresql://user:password@host/db. None: SQLite and
    # files under DATA_DIR, one process (docs/scaling.md).
    database_url: str | None = None
    # Gateway shards: the total across every process, and the ones this process runs (None: all of them).
    # shard_count None: one unsharded connection.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    # Remote inference (inference/adapters/serve.py, a Ray Serve deployment): http://host:8000. None: in this process.
    # Per request: `inference_timeout` seconds, then up to `inference_retries` more tries when the service is
    # busy or unreachable; `inference_concurrency` requests in flight from this process (more queue, then busy).
    inference_url: str | None = None
    inference_timeout: float = 20.0
    inference_retries: int = 2
    inference_concurrency: int = 8

    def __post_init__(self) -> None:
        if self.shard_count is not None and self.shard_count < 1:
            raise ValueError("SHARD_COUNT must be at least 1")
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("SHARD_IDS needs SHARD_COUNT (the total number of shards)")
            bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if bad or not self.shard_ids:
                raise ValueError(f"SHARD_IDS must be between 0 and {self.shard_count - 1}, got {list(self.shard_ids)}")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL must start with postgresql:// (only PostgreSQL is supported)")
        if self.inference_url is not None and not self.inference_url.startswith(("http://", "https://")):
            raise ValueError("INFERENCE_URL must start with http:// or https://")
        if self.inference_timeout <= 0 or self.inference_retries < 0 or self.inference_concurrency < 1:
            raise ValueError("INFERENCE_TIMEOUT must be positive, INFERENCE_RETRIES at least 0 and "
                             "INFERENCE_CONCURRENCY at least 1")

    @classmethod
    def from_env(cls, **overrides) -> BotConfig:
        """Read after `Settings.from_env()` (which loads `.env`)."""
        values = dict(
            discord_token=os.environ.get("DISCORD_TOKEN", "").strip(),
            data_dir=Path(os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR),
            owner_ids=_ids("OWNER_IDS"),
            url_max_bytes=env_int("URL_MAX_BYTES", cls.url_max_bytes),
            message_content=env_bool("MESSAGE_CONTENT_INTENT", cls.message_content),
            user_cooldown=_rate("COOLDOWN_USER", cls.user_cooldown),
            guild_cooldown=_rate("COOLDOWN_GUILD", cls.guild_cooldown),
            max_pictures=max(1, min(10, env_int("MAX_PICTURES", cls.max_pictures))),
            health_file=os.environ.get("HEALTH_FILE", "").strip() or None,
            database_url=os.environ.get("DATABASE_URL", "").strip() or None,
            shard_count=env_int("SHARD_COUNT", None),
            shard_ids=_int_list("SHARD_IDS"),
            inference_url=os.environ.get("INFERENCE_URL", "").strip().rstrip("/") or None,
            inference_timeout=env_float("INFERENCE_TIMEOUT", cls.inference_timeout),
            inference_retries=env_int("INFERENCE_RETRIES", cls.inference_retries),
            inference_concurrency=env_int("INFERENCE_CONCURRENCY", cls.inference_concurrency),
        )
        values.update(overrides)
        return cls(**values)

    def public(self) -> dict:
        """The options safe to print or log (no token)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "discord_token"}
