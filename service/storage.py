"""Per-guild state under DATA_DIR: settings in SQLite (`crystal-eyes.sqlite3`) and galleries (`galleries/<id>.npz`).

The schema is created on start. A corrupt or locked database never stops the bot: reads fall back to the
defaults (with a log line) and writes raise `StorageError`, whose message can be shown to the user.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
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


class Storage:
    def __init__(self, data_dir: Path, defaults: GuildSettings | None = None, *, timeout: float = 2.0) -> None:
        self.data_dir = Path(data_dir)
        self.defaults = defaults or GuildSettings()
        self.path = self.data_dir / DB_NAME
        self._timeout = timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._cache: dict[int, GuildSettings] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def open(self) -> bool:
        """Create the data directory and the schema. False (and a log line) when the database is unusable."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("SELECT COUNT(*) FROM guild_settings").fetchone()
            except sqlite3.Error:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            log.error("settings database %s is unusable (%s); every guild uses the defaults", self.path, exc)
            self._db = None
            return False
        self._db = db
        log.info("settings database ready at %s", self.path)
        return True

    @property
    def available(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- settings ------------------------------------------------------------------------------------------------
    def get(self, guild_id: int) -> GuildSettings:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        if self._db is None:
            return self.defaults
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT threshold, emoji, reactions, top_k FROM guild_settings WHERE guild_id=?", (guild_id,)
                ).fetchone()
                channels = self._db.execute(
                    "SELECT channel_id FROM watch_channels WHERE guild_id=?", (guild_id,)
                ).fetchall()
        except sqlite3.Error as exc:
            log.warning("could not read settings of guild %s (%s); using the defaults", guild_id, exc)
            return self.defaults
        out = self.defaults
        if row is not None:
            threshold, emoji, reactions, top_k = row
            out = replace(
                out,
                threshold=out.threshold if threshold is None else float(threshold),
                emoji=emoji or out.emoji,
                reactions=out.reactions if reactions is None else bool(reactions),
                top_k=out.top_k if top_k is None else int(top_k),
            )
        out = replace(out, watch_channels=frozenset(int(c) for (c,) in channels))
        self._cache[guild_id] = out
        return out

    def _write(self, guild_id: int, statements: list[tuple[str, tuple]]) -> GuildSettings:
        if self._db is None:
            raise StorageError("The settings database is unavailable, so nothing was saved (see the bot's log).")
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements:
                        self._db.execute(sql, args)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.error("could not save settings of guild %s: %s", guild_id, exc)
            raise StorageError("Could not save the settings (the database is busy or damaged); try again.") from exc
        self._cache.pop(guild_id, None)
        return self.get(guild_id)

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
        row["reactions"] = int(bool(row["reactions"]))
        return self._write(
            guild_id,
            [
                (
                    "INSERT INTO guild_settings (guild_id, threshold, emoji, reactions, top_k) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(guild_id) DO UPDATE SET threshold=excluded.threshold, emoji=excluded.emoji, "
                    "reactions=excluded.reactions, top_k=excluded.top_k",
                    (guild_id, row["threshold"], row["emoji"], row["reactions"], row["top_k"]),
                )
            ],
        )

    def set_watch(self, guild_id: int, channel_id: int, watched: bool) -> GuildSettings:
        if watched:
            sql = "INSERT OR IGNORE INTO watch_channels (guild_id, channel_id) VALUES (?, ?)"
        else:
            sql = "DELETE FROM watch_channels WHERE guild_id=? AND channel_id=?"
        return self._write(guild_id, [(sql, (guild_id, channel_id))])

    def reset(self, guild_id: int) -> GuildSettings:
        return self._write(
            guild_id,
            [
                ("DELETE FROM guild_settings WHERE guild_id=?", (guild_id,)),
                ("DELETE FROM watch_channels WHERE guild_id=?", (guild_id,)),
            ],
        )


class Galleries:
    """One gallery per guild, loaded lazily. Changes are copy-on-write: `enroll`/`forget` build a new gallery
    object, save it atomically and only then swap it in, so a recognition running in another thread keeps a
    consistent gallery. `enroll`/`forget` do file I/O: call them from the executor."""

    def __init__(self, directory: Path, pipeline: Any) -> None:
        self.directory = Path(directory)
        self.pipeline = pipeline
        self._loaded: dict[int, Any] = {}
        self._lock = threading.Lock()

    def path(self, guild_id: int) -> Path:
        return self.directory / f"{int(guild_id)}.npz"

    def _load(self, guild_id: int):
        from inference.errors import GalleryError

        path = self.path(guild_id)
        if not path.is_file():
            return None
        try:
            return self.pipeline.load_gallery(path)
        except (GalleryError, OSError, ValueError) as exc:
            # e.g. made with another encoder (a new model bundle): its vectors mean nothing to this one. Keep
            # the file (a rollback can use it again), out of the way of the next /teach, which starts afresh.
            kept = path.with_name(f"{path.stem}.unusable-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
            try:
                path.replace(kept)
            except OSError as move_error:
                kept = f"nowhere ({move_error})"
            log.error("gallery of guild %s at %s is unusable (%s); ignoring it, the file is kept as %s: "
                      "teach its characters again", guild_id, path, exc, kept)
            return None

    def get(self, guild_id: int | None):
        """The guild's gallery, or None when it has none (or it is unusable)."""
        if guild_id is None:
            return None
        if guild_id not in self._loaded:
            with self._lock:
                if guild_id not in self._loaded:
                    self._loaded[guild_id] = self._load(guild_id)
        gallery = self._loaded[guild_id]
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

    def enroll(self, guild_id: int, name: str, vec) -> int:
        """Add one example of `name`; returns how many examples of it the guild now has."""
        with self._lock:
            gallery = self._load(guild_id) or self.pipeline.new_gallery()
            tag = gallery.add(name, vec)
            self.directory.mkdir(parents=True, exist_ok=True)
            gallery.save(self.path(guild_id))
            self._loaded[guild_id] = gallery
            return gallery.count(tag)

    def forget(self, guild_id: int, name: str) -> int:
        """Remove every example of `name`; returns how many were removed."""
        with self._lock:
            gallery = self._load(guild_id)
            if gallery is None:
                return 0
            removed = gallery.remove(name)
            if removed:
                gallery.save(self.path(guild_id))
                self._loaded[guild_id] = gallery
            return removed
