"""Per-guild state: settings (threshold, emoji, reactions, top-k, watch channels) and each server's gallery.

Two backends, chosen by `DATABASE_URL` (see docs/scaling.md):
- unset: one process, everything under DATA_DIR: settings in SQLite (`crystal-eyes.sqlite3`), galleries in
  `galleries/<id>.npz`;
- `postgresql://...`: every process (shard, host) shares one PostgreSQL database (`service.postgres`), and a
  change made in one is seen by all of them at once (LISTEN/NOTIFY).

Settings reads never wait on a database: the bot reads them on its event loop, so they come from memory (SQLite:
filled on first use; PostgreSQL: every stored guild loaded at start and refreshed on each notification). A
corrupt, locked or unreachable database never stops the bot: reads fall back to the defaults (with a log line)
and writes raise `StorageError`, whose message can be shown to the user.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_NAME = "crystal-eyes.sqlite3"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id   INTEGER PRIMARY KEY,
    threshold  REAL,
    emoji      TEXT,
    reactions  INTEGER,
    top_k      INTEGER
);
CREATE TABLE IF NOT EXISTS watch_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
"""
_COLUMNS = ("threshold", "emoji", "reactions", "top_k")


class StorageError(Exception):
    """A write failed; the message is user-safe."""


@dataclass(frozen=True)
class GuildSettings:
    threshold: float | None = None  # a head's `known` score below this is not named; None: the bundle's own
    emoji: str = "\N{LEFT-POINTING MAGNIFYING GLASS}"  # reaction trigger
    reactions: bool = False  # reaction trigger on/off (opt-in)
    top_k: int = 3  # names shown per head
    watch_channels: frozenset[int] = field(default_factory=frozenset)


def settings_from_row(defaults: GuildSettings, row: tuple | None, channels: list[tuple]) -> GuildSettings:
    """A guild's settings from its `guild_settings` row (or None) and its `watch_channels` rows."""
    out = defaults
    if row is not None:
        threshold, emoji, reactions, top_k = row
        out = replace(
            out,
            threshold=out.threshold if threshold is None else float(threshold),
            emoji=emoji or out.emoji,
            reactions=out.reactions if reactions is None else bool(reactions),
            top_k=out.top_k if top_k is None else int(top_k),
        )
    return replace(out, watch_channels=frozenset(int(c) for (c,) in channels))


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        import psycopg

        errors += (psycopg.Error,)
    except ImportError:  # the 'scale' extra is not installed: only SQLite can be in use
        pass
    return errors


class SqliteSettings:
    """The one-process backend: a SQLite file under DATA_DIR."""

    complete_mirror = False  # rows are read on first use of a guild

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT COUNT(*) FROM guild_settings").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def read(self, guild_id: int, defaults: GuildSettings) -> GuildSettings:
        with self._lock:
            row = self._db.execute(
                "SELECT threshold, emoji, reactions, top_k FROM guild_settings WHERE guild_id=?", (guild_id,)
            ).fetchone()
            channels = self._db.execute("SELECT channel_id FROM watch_channels WHERE guild_id=?", (guild_id,)).fetchall()
        return settings_from_row(defaults, row, channels)

    def guilds(self) -> list[int]:
        return []

    def write(self, guild_id: int, row: dict | None, watch: tuple[int, bool] | None, reset: bool) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if reset:
                    self._db.execute("DELETE FROM guild_settings WHERE guild_id=?", (guild_id,))
                    self._db.execute("DELETE FROM watch_channels WHERE guild_id=?", (guild_id,))
                if row is not None:
                    self._db.execute(
                        "INSERT INTO guild_settings (guild_id, threshold, emoji, reactions, top_k) VALUES (?,?,?,?,?) "
                        "ON CONFLICT(guild_id) DO UPDATE SET threshold=excluded.threshold, emoji=excluded.emoji, "
                        "reactions=excluded.reactions, top_k=excluded.top_k",
                        (guild_id, row["threshold"], row["emoji"], int(bool(row["reactions"])), row["top_k"]),
                    )
                if watch is not None:
                    channel, on = watch
                    sql = ("INSERT OR IGNORE INTO watch_channels (guild_id, channel_id) VALUES (?, ?)" if on
                           else "DELETE FROM watch_channels WHERE guild_id=? AND channel_id=?")
                    self._db.execute(sql, (guild_id, channel))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


class Storage:
    """Guild settings with an in-memory cache in front of a backend (`SqliteSettings` or
    `service.postgres.PostgresSettings`)."""

    def __init__(self, data_dir: Path, defaults: GuildSettings | None = None, *, timeout: float = 2.0,
                 backend: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.defaults = defaults or GuildSettings()
        self.path = self.data_dir / DB_NAME
        self.backend = backend if backend is not None else SqliteSettings(self.path, timeout)
        self.backend.invalidate = self._refresh
        self._errors = _driver_errors()
        self._open = False
        self._cache: dict[int, GuildSettings] = {}
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped when the whole cache is dropped, so a slow read cannot put back old state

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def open(self) -> bool:
        """Create the schema (and, on PostgreSQL, load every stored guild). False (and a log line) when the
        database is unusable."""
        try:
            self.backend.open()
            loaded = {g: self.backend.read(g, self.defaults) for g in self.backend.guilds()}
        except self._errors as exc:
            log.error("settings database %s is unusable (%s); every guild uses the defaults", self.where, exc)
            self._open = False
            return False
        with self._cache_lock:
            self._cache.update(loaded)
        self._open = True
        log.info("settings database ready at %s (%d guild(s) loaded)", self.where, len(loaded))
        return True

    @property
    def where(self) -> str:
        return getattr(self.backend, "where", None) or str(self.path)

    @property
    def available(self) -> bool:
        return self._open

    def close(self) -> None:
        self._open = False
        self.backend.close()

    # -- settings ------------------------------------------------------------------------------------------------
    def get(self, guild_id: int) -> GuildSettings:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        if not self._open or self.backend.complete_mirror:
            return self.defaults  # PostgreSQL: every stored guild is in memory, so one absent has no settings
        return self._read(guild_id) or self.defaults

    def _read(self, guild_id: int) -> GuildSettings | None:
        generation = self._generation
        try:
            out = self.backend.read(guild_id, self.defaults)
        except self._errors as exc:
            log.warning("could not read settings of guild %s (%s); using the defaults", guild_id, exc)
            return None
        with self._cache_lock:
            if generation == self._generation:
                self._cache[guild_id] = out
        return out

    def _refresh(self, guild_id: int | None) -> None:
        """Another process (or this one) changed `guild_id`'s settings; None: anything may have changed."""
        if guild_id is None:
            with self._cache_lock:
                self._generation += 1
                self._cache.clear()
            if self.backend.complete_mirror and self._open:
                for g in self._safe_guilds():
                    self._read(g)
            return
        with self._cache_lock:
            self._cache.pop(guild_id, None)
        if self.backend.complete_mirror:
            self._read(guild_id)

    def _safe_guilds(self) -> list[int]:
        try:
            return self.backend.guilds()
        except self._errors as exc:
            log.warning("could not list the guilds with settings (%s)", exc)
            return []

    def _write(self, guild_id: int, row: dict | None = None, watch: tuple[int, bool] | None = None,
               reset: bool = False) -> GuildSettings:
        if not self._open:
            raise StorageError("The settings database is unavailable, so nothing was saved (see the bot's log).")
        try:
            self.backend.write(guild_id, row, watch, reset)
        except self._errors as exc:
            log.error("could not save settings of guild %s: %s", guild_id, exc)
            raise StorageError("Could not save the settings (the database is busy or damaged); try again.") from exc
        with self._cache_lock:
            self._cache.pop(guild_id, None)
        return self._read(guild_id) or self.defaults

    def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some of threshold, emoji, reactions, top_k."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        if not changes:
            return self.get(guild_id)
        current = self.get(guild_id)
        row = {c: getattr(current, c) for c in _COLUMNS}
        row.update(changes)
        row["reactions"] = bool(row["reactions"])
        return self._write(guild_id, row=row)

    def set_watch(self, guild_id: int, channel_id: int, watched: bool) -> GuildSettings:
        return self._write(guild_id, watch=(channel_id, watched))

    def reset(self, guild_id: int) -> GuildSettings:
        return self._write(guild_id, reset=True)


class GalleryFiles:
    """The one-process gallery backend: `<directory>/<guild id>.npz`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path(self, guild_id: int) -> Path:
        return self.directory / f"{int(guild_id)}.npz"

    def where(self, guild_id: int) -> str:
        return str(self.path(guild_id))

    def guilds(self) -> list[int]:
        return []  # read on first use: a local file is quick

    def read(self, guild_id: int) -> bytes | None:
        try:
            return self.path(guild_id).read_bytes()
        except FileNotFoundError:
            return None

    @contextmanager
    def edit(self, guild_id: int) -> Iterator[GalleryEdit]:
        with self._lock:
            yield GalleryEdit(self.read(guild_id), lambda data: self._save(guild_id, data),
                              lambda reason: self.set_aside(guild_id, reason))

    def _save(self, guild_id: int, data: bytes) -> None:
        path = self.path(guild_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set_aside(self, guild_id: int, reason: str) -> str:
        path = self.path(guild_id)
        kept = path.with_name(f"{path.stem}.unusable-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
        try:
            path.replace(kept)
        except OSError as move_error:
            return f"nowhere ({move_error})"
        return str(kept)


@dataclass
class GalleryEdit:
    """A guild's stored gallery during a change: its bytes (None: none yet), `write(new bytes)` and
    `set_aside(reason)` (keep unusable bytes out of the way, for a rollback)."""

    data: bytes | None
    write: Any
    set_aside: Any


class Galleries:
    """One gallery per guild, loaded lazily. Changes are copy-on-write: `enroll`/`forget` build a new gallery
    object, save it and only then swap it in, so a recognition running in another thread keeps a consistent
    gallery. `get`/`enroll`/`forget` may do I/O: call them from the executor. The store is `GalleryFiles`
    or `service.postgres.PostgresGalleryFiles` (shared by every process; a change anywhere reloads it here)."""

    def __init__(self, directory: Path | None, pipeline: Any, *, files: Any = None) -> None:
        self.files = files if files is not None else GalleryFiles(directory)
        self.files.invalidate = self._changed
        self.pipeline = pipeline
        self._loaded: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._errors = _driver_errors()

    def preload(self) -> int:
        """Load every stored gallery now (PostgreSQL), so that reads on the event loop never wait."""
        try:
            guilds = self.files.guilds()
        except self._errors as exc:
            log.error("could not list the stored galleries (%s); they load on first use", exc)
            return 0
        for guild_id in guilds:
            self._loaded[guild_id] = self._load(guild_id)
        return len(guilds)

    def _parse(self, guild_id: int, data: bytes | None, set_aside):
        from inference.errors import GalleryError

        if data is None:
            return None
        try:
            return self.pipeline.load_gallery(data)
        except (GalleryError, OSError, ValueError) as exc:
            # e.g. made with another encoder (a new model bundle): its vectors mean nothing to this one. Keep
            # it (a rollback can use it again), out of the way of the next /teach, which starts afresh.
            kept = set_aside(f"unusable: {exc}")
            log.error("gallery of guild %s at %s is unusable (%s); ignoring it, it is kept as %s: "
                      "teach its characters again", guild_id, self.files.where(guild_id), exc, kept)
            return None

    def _load(self, guild_id: int):
        try:
            data = self.files.read(guild_id)
        except self._errors as exc:
            log.error("could not read the gallery of guild %s (%s); recognising without it", guild_id, exc)
            return None
        return self._parse(guild_id, data, lambda reason: self.files.set_aside(guild_id, reason))

    def _changed(self, guild_id: int | None) -> None:
        """A notification: `guild_id`'s gallery changed in some process (None: anything may have)."""
        with self._lock:
            if guild_id is None:
                self._loaded.clear()
                return
            self._loaded[guild_id] = self._load(guild_id)

    def get(self, guild_id: int | None):
        """The guild's gallery, or None when it has none (or it is unusable)."""
        if guild_id is None:
            return None
        if guild_id not in self._loaded:
            with self._lock:
                if guild_id not in self._loaded:
                    self._loaded[guild_id] = self._load(guild_id)
        gallery = self._loaded.get(guild_id)
        return gallery if gallery is not None and len(gallery) else None

    def names(self, guild_id: int | None) -> list[str]:
        gallery = self.get(guild_id)
        return sorted(set(gallery.names)) if gallery is not None else []

    def display(self, guild_id: int | None, tag: str) -> str:
        """The name as it was taught on this server."""
        gallery = self.get(guild_id)
        if gallery is None:
            from inference.result import Character

            return Character.from_tag(tag).title
        return gallery.display(tag)

    def _save_error(self, guild_id: int, exc: BaseException) -> StorageError:
        log.error("could not save the gallery of guild %s: %s", guild_id, exc)
        return StorageError("Could not save this server's gallery (the store is busy or unreachable); try again.")

    def enroll(self, guild_id: int, name: str, vec) -> int:
        """Add one example of `name`; returns how many examples of it the guild now has."""
        try:
            with self._lock, self.files.edit(guild_id) as stored:
                gallery = self._parse(guild_id, stored.data, stored.set_aside) or self.pipeline.new_gallery()
                tag = gallery.add(name, vec)
                stored.write(gallery.to_bytes())
                self._loaded[guild_id] = gallery
                return gallery.count(tag)
        except self._errors as exc:
            raise self._save_error(guild_id, exc) from exc

    def forget(self, guild_id: int, name: str) -> int:
        """Remove every example of `name`; returns how many were removed."""
        try:
            with self._lock, self.files.edit(guild_id) as stored:
                gallery = self._parse(guild_id, stored.data, stored.set_aside)
                if gallery is None:
                    return 0
                removed = gallery.remove(name)
                if removed:
                    stored.write(gallery.to_bytes())
                    self._loaded[guild_id] = gallery
                return removed
        except self._errors as exc:
            raise self._save_error(guild_id, exc) from exc
