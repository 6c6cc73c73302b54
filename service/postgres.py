"""Shared state on PostgreSQL (DATABASE_URL): guild settings, server galleries and cooldowns for every bot process.

Several processes (shards, hosts) use one database. Each keeps what it reads in memory, and every write sends a
NOTIFY on the channel `crystal_eyes` in the same transaction; a listener thread in every process drops (settings:
reloads) the changed guild's entry when it arrives, so a /teach or /settings in one process is seen by all of
them at once. After a lost connection the listener reconnects and forgets everything it held (it may have missed
notifications).

The driver is psycopg 3 (sync): the storage layer is called from the bot's executor threads, as SQLite is, so
both backends share one interface (`service.storage`). Schema changes are numbered migrations applied on start
under an advisory lock, so two processes starting together do not race.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

CHANNEL = "crystal_eyes"
MIGRATION_LOCK = 0x43_45_79_65  # "CEye": the advisory lock held while migrating
MIGRATIONS = (
    # 1: guild settings, watch channels, galleries (one npz blob per guild), galleries set aside, cooldowns
    """
    CREATE TABLE guild_settings (
        guild_id   BIGINT PRIMARY KEY,
        threshold  DOUBLE PRECISION,
        emoji      TEXT,
        reactions  BOOLEAN,
        top_k      INTEGER
    );
    CREATE TABLE watch_channels (
        guild_id   BIGINT NOT NULL,
        channel_id BIGINT NOT NULL,
        PRIMARY KEY (guild_id, channel_id)
    );
    CREATE TABLE galleries (
        guild_id   BIGINT PRIMARY KEY,
        data       BYTEA NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE galleries_set_aside (
        id         BIGSERIAL PRIMARY KEY,
        guild_id   BIGINT NOT NULL,
        data       BYTEA NOT NULL,
        reason     TEXT NOT NULL,
        set_aside  TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE cooldowns (
        scope      TEXT NOT NULL,
        key        BIGINT NOT NULL,
        events     DOUBLE PRECISION[] NOT NULL DEFAULT '{}',
        PRIMARY KEY (scope, key)
    );
    """,
)


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the 'scale' extra is missing
        raise RuntimeError("DATABASE_URL is set but psycopg is not installed: pip install '.[scale]'") from exc
    return psycopg


class Database:
    """One connection for queries (serialised by a lock: calls come from executor threads) and one listener."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn = None
        self._lock = threading.RLock()
        self._handlers: list[Callable[[str | None], None]] = []
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()

    @property
    def redacted_url(self) -> str:
        """The URL without its password, for logs."""
        import re

        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.url)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def connect(self):
        psycopg = _psycopg()
        return psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout)), autocommit=False)

    def open(self) -> None:
        """Connect, migrate and start listening (once). Raises psycopg.Error when the database is unreachable."""
        if self._listener is not None and self._listener.is_alive():
            return
        with self._lock:
            self._conn = self.connect()
            self.migrate()
        self._stop.clear()
        self._listener = threading.Thread(target=self._listen, name="crystal-eyes-pg-listener", daemon=True)
        self._listener.start()
        if not self.listening.wait(self.connect_timeout + 5):
            log.warning("the PostgreSQL listener is not up yet; changes from other processes may show late")

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._listener = None

    def migrate(self) -> int:
        """Apply the migrations this database lacks; returns its schema version."""
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "applied TIMESTAMPTZ NOT NULL DEFAULT now())")
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            have = cur.fetchone()[0]
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version > have:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    log.info("PostgreSQL schema migrated to version %d", version)
        return len(MIGRATIONS)

    # -- queries -------------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator:
        """A cursor inside one transaction (commit on success, rollback on error); one reconnect when the
        connection was lost."""
        psycopg = _psycopg()
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self.connect()
            conn = self._conn
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
                raise

    def notify(self, cur, payload: str) -> None:
        """Tell every process (this one too) that `payload` changed; delivered when the transaction commits."""
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    def on_change(self, handler: Callable[[str | None], None]) -> None:
        """`handler(payload)` on each notification; `handler(None)` after a reconnect (forget everything)."""
        self._handlers.append(handler)

    def _dispatch(self, payload: str | None) -> None:
        for handler in self._handlers:
            try:
                handler(payload)
            except Exception:  # one bad handler must not stop the listener
                log.exception("a PostgreSQL change handler failed on %r", payload)

    def _listen(self) -> None:
        psycopg = _psycopg()
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=max(1, int(self.connect_timeout))) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        log.info("PostgreSQL listener reconnected; cached state dropped")
                        self._dispatch(None)
                    first = False
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._dispatch(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    break
                log.warning("PostgreSQL listener lost its connection (%s); retrying in 2 s", exc)
                self._stop.wait(2.0)


def _route(payload: str | None, prefix: str, invalidate: Callable[[int | None], None]) -> None:
    """A notification `<prefix><guild id>` -> invalidate(guild id); None (a reconnect) -> invalidate(None)."""
    if payload is None:
        invalidate(None)
    elif payload.startswith(prefix):
        invalidate(int(payload[len(prefix):]))


# -- the three kinds of shared state --------------------------------------------------------------------------------
class PostgresSettings:
    """Guild settings and watch channels (the `service.storage.SettingsStore` backend for PostgreSQL)."""

    complete_mirror = True  # every stored guild is loaded at start, then kept current by notifications

    def __init__(self, db: Database) -> None:
        self.db = db
        db.on_change(self._changed)

    @property
    def where(self) -> str:
        return f"PostgreSQL ({self.db.redacted_url})"

    def open(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()

    def read(self, guild_id: int, defaults):
        with self.db.transaction() as cur:
            cur.execute("SELECT threshold, emoji, reactions, top_k FROM guild_settings WHERE guild_id=%s",
                        (guild_id,))
            row = cur.fetchone()
            cur.execute("SELECT channel_id FROM watch_channels WHERE guild_id=%s", (guild_id,))
            channels = cur.fetchall()
        from service.storage import settings_from_row

        return settings_from_row(defaults, row, channels)

    def guilds(self) -> list[int]:
        """Every guild with a stored setting or watch channel (loaded at start: reads never wait on the network)."""
        with self.db.transaction() as cur:
            cur.execute("SELECT guild_id FROM guild_settings UNION SELECT guild_id FROM watch_channels")
            return [int(g) for (g,) in cur.fetchall()]

    def write(self, guild_id: int, row: dict | None, watch: tuple[int, bool] | None, reset: bool) -> None:
        with self.db.transaction() as cur:
            if reset:
                cur.execute("DELETE FROM guild_settings WHERE guild_id=%s", (guild_id,))
                cur.execute("DELETE FROM watch_channels WHERE guild_id=%s", (guild_id,))
            if row is not None:
                cur.execute(
                    "INSERT INTO guild_settings (guild_id, threshold, emoji, reactions, top_k) "
                    "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (guild_id) DO UPDATE SET threshold=excluded.threshold, "
                    "emoji=excluded.emoji, reactions=excluded.reactions, top_k=excluded.top_k",
                    (guild_id, row["threshold"], row["emoji"], bool(row["reactions"]), row["top_k"]))
            if watch is not None:
                channel, on = watch
                if on:
                    cur.execute("INSERT INTO watch_channels VALUES (%s,%s) ON CONFLICT DO NOTHING",
                                (guild_id, channel))
                else:
                    cur.execute("DELETE FROM watch_channels WHERE guild_id=%s AND channel_id=%s", (guild_id, channel))
            self.db.notify(cur, f"settings:{guild_id}")

    invalidate: Callable[[int | None], None] = staticmethod(lambda guild_id: None)  # set by SettingsStore

    def _changed(self, payload: str | None) -> None:
        _route(payload, "settings:", self.invalidate)


class PostgresGalleryFiles:
    """Each guild's gallery as one npz blob in the `galleries` table (the `service.storage.Galleries` backend)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.on_change(self._changed)

    invalidate: Callable[[int | None], None] = staticmethod(lambda guild_id: None)  # set by Galleries

    def where(self, guild_id: int) -> str:
        return f"table galleries, guild {guild_id}"

    def guilds(self) -> list[int]:
        with self.db.transaction() as cur:
            cur.execute("SELECT guild_id FROM galleries")
            return [int(g) for (g,) in cur.fetchall()]

    def read(self, guild_id: int) -> bytes | None:
        with self.db.transaction() as cur:
            return self._blob(cur, guild_id)

    @staticmethod
    def _blob(cur, guild_id: int) -> bytes | None:
        cur.execute("SELECT data FROM galleries WHERE guild_id=%s", (guild_id,))
        row = cur.fetchone()
        return None if row is None else bytes(row[0])

    @contextmanager
    def edit(self, guild_id: int) -> Iterator:
        """The guild's blob as a `service.storage.GalleryEdit`, under a lock every process respects (one
        transaction: the write and the notification commit together)."""
        from service.storage import GalleryEdit

        with self.db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (MIGRATION_LOCK, guild_id % (2 ** 31)))
            stored = self._blob(cur, guild_id)

            def write(data: bytes) -> None:
                cur.execute("INSERT INTO galleries (guild_id, data) VALUES (%s, %s) ON CONFLICT (guild_id) "
                            "DO UPDATE SET data=excluded.data, updated_at=now()", (guild_id, data))
                self.db.notify(cur, f"gallery:{guild_id}")

            yield GalleryEdit(stored, write,
                              lambda reason: self._set_aside(cur, guild_id, reason))

    def set_aside(self, guild_id: int, reason: str) -> str:
        with self.db.transaction() as cur:
            kept = self._set_aside(cur, guild_id, reason)
            self.db.notify(cur, f"gallery:{guild_id}")
        return kept

    @staticmethod
    def _set_aside(cur, guild_id: int, reason: str) -> str:
        """Move the guild's blob to `galleries_set_aside` (inside the caller's transaction)."""
        cur.execute("INSERT INTO galleries_set_aside (guild_id, data, reason) SELECT guild_id, data, %s "
                    "FROM galleries WHERE guild_id=%s RETURNING id", (reason, guild_id))
        row = cur.fetchone()
        cur.execute("DELETE FROM galleries WHERE guild_id=%s", (guild_id,))
        return f"row {row[0]} of table galleries_set_aside" if row else "nowhere (it was gone)"

    def _changed(self, payload: str | None) -> None:
        _route(payload, "gallery:", self.invalidate)


class PostgresLimiter:
    """`service.cooldown.Limiter`'s sliding windows, kept in the `cooldowns` table so that every process counts
    the same uses. Time is the database's clock, so hosts with skewed clocks agree."""

    def __init__(self, db: Database, user: tuple[int, float], guild: tuple[int, float]) -> None:
        from service.cooldown import Limiter

        self.db = db
        self.user = user
        self.guild = guild
        self.local = Limiter(user, guild)  # used while the database is unreachable: limits per process

    def check(self, user_id: int, guild_id: int | None) -> float:
        checks = []
        if self.user[0] > 0:
            checks.append(("user", int(user_id), *self.user))
        if guild_id is not None and self.guild[0] > 0:
            checks.append(("guild", int(guild_id), *self.guild))
        if not checks:
            return 0.0
        with self.db.transaction() as cur:
            cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
            now = cur.fetchone()[0]
            windows = []
            for scope, key, uses, per in checks:  # always user before guild: no lock-order deadlock
                cur.execute("INSERT INTO cooldowns (scope, key) VALUES (%s, %s) ON CONFLICT DO NOTHING", (scope, key))
                cur.execute("SELECT events FROM cooldowns WHERE scope=%s AND key=%s FOR UPDATE", (scope, key))
                events = [t for t in cur.fetchone()[0] if now - t < per]
                windows.append((scope, key, uses, per, events))
            wait = max((per - (now - events[0]) if len(events) >= uses else 0.0)
                       for _, _, uses, per, events in windows)
            for scope, key, _, _, events in windows:
                cur.execute("UPDATE cooldowns SET events=%s WHERE scope=%s AND key=%s",
                            (events if wait > 0 else events + [now], scope, key))
        return max(0.0, wait)

    async def acquire(self, user_id: int, guild_id: int | None) -> float:
        """`check` off the event loop; while the database is unreachable, this process's own limits."""
        import asyncio

        try:
            return await asyncio.to_thread(self.check, user_id, guild_id)
        except _psycopg().Error as exc:
            log.warning("cooldowns: the database is unreachable (%s); limiting per process", exc)
            return self.local.check(user_id, guild_id)

