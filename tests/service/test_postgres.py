"""The PostgreSQL backend on a real server: what one process writes, every other process sees at once."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.cooldown import Limiter
from service.postgres import Database, PostgresGalleryFiles, PostgresLimiter, PostgresSettings
from service.storage import Galleries, GuildSettings, Storage, StorageError


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def two_processes(database_url, tmp_path):
    """Two storages on one database, as two bot processes have."""
    defaults = GuildSettings(threshold=0.3, top_k=3)
    stores = [Storage(tmp_path / str(i), defaults, backend=PostgresSettings(Database(database_url))) for i in (0, 1)]
    for s in stores:
        assert s.open()
    yield stores
    for s in stores:
        s.close()


def test_settings_written_by_one_process_are_seen_by_the_other(two_processes):
    a, b = two_processes
    assert b.get(7) == b.defaults
    a.update(7, top_k=5, threshold=0.5)
    a.set_watch(7, 1234, True)
    # two writes, two notifications: wait for the state after the last one (the first may arrive alone)
    assert wait_for(lambda: b.get(7).top_k == 5 and b.get(7).watch_channels == frozenset({1234}))
    got = b.get(7)
    assert got.threshold == 0.5 and got.watch_channels == frozenset({1234}) and got.emoji == b.defaults.emoji
    b.reset(7)
    assert wait_for(lambda: a.get(7) == a.defaults)


def test_every_stored_guild_is_in_memory_after_open(database_url, tmp_path):
    first = Storage(tmp_path, GuildSettings(), backend=PostgresSettings(Database(database_url)))
    assert first.open()
    first.update(1, top_k=7)
    first.set_watch(2, 99, True)
    first.close()
    second = Storage(tmp_path, GuildSettings(), backend=PostgresSettings(Database(database_url)))
    assert second.open()  # migrating twice is a no-op
    try:
        assert set(second._cache) == {1, 2}  # get() on the event loop never waits on the network
        assert second.get(1).top_k == 7 and second.get(2).watch_channels == frozenset({99})
    finally:
        second.close()


def test_an_unreachable_database_means_defaults_and_clear_write_errors(tmp_path, postgres):
    url = f"postgresql://crystal@127.0.0.1:{postgres.port}/no_such_database"
    store = Storage(tmp_path, GuildSettings(top_k=4), backend=PostgresSettings(Database(url, connect_timeout=1)))
    assert not store.open()
    assert store.get(5).top_k == 4
    with pytest.raises(StorageError, match="unavailable"):
        store.update(5, top_k=2)


def test_a_gallery_taught_in_one_process_is_used_by_the_other(database_url, tiny_pipeline):
    dbs = [Database(database_url), Database(database_url)]
    for db in dbs:
        db.open()
    try:
        a, b = (Galleries(None, tiny_pipeline, files=PostgresGalleryFiles(db)) for db in dbs)
        assert b.get(42) is None and b.preload() == 0
        vec = np.random.default_rng(0).normal(size=tiny_pipeline.new_gallery().dim).astype(np.float32)
        assert a.enroll(42, "Monkey D. Luffy", vec) == 1
        assert wait_for(lambda: b.get(42) is not None)
        assert b.names(42) == ["monkey_d._luffy"] and b.display(42, "monkey_d._luffy") == "Monkey D. Luffy"
        assert b.enroll(42, "monkey_d._luffy", vec) == 2  # both edits kept: the row lock serialises them
        assert wait_for(lambda: a.get(42) is not None and a.get(42).count("monkey_d._luffy") == 2)
        assert a.forget(42, "monkey_d._luffy") == 2
        assert wait_for(lambda: b.get(42) is None)
    finally:
        for db in dbs:
            db.close()


def test_an_unusable_gallery_is_set_aside_not_deleted(database_url, tiny_pipeline):
    db = Database(database_url)
    db.open()
    try:
        with db.transaction() as cur:
            cur.execute("INSERT INTO galleries (guild_id, data) VALUES (3, %s)", (b"not an npz file",))
        galleries = Galleries(None, tiny_pipeline, files=PostgresGalleryFiles(db))
        assert galleries.get(3) is None
        with db.transaction() as cur:
            cur.execute("SELECT guild_id, data FROM galleries_set_aside")
            assert cur.fetchall() == [(3, b"not an npz file")]
            cur.execute("SELECT count(*) FROM galleries")
            assert cur.fetchone()[0] == 0
    finally:
        db.close()


def test_cooldowns_are_counted_across_processes(database_url):
    dbs = [Database(database_url), Database(database_url)]
    for db in dbs:
        db.open()
    try:
        a, b = (PostgresLimiter(db, user=(2, 30.0), guild=(0, 0.0)) for db in dbs)
        assert a.check(1, 9) == 0 and b.check(1, 9) == 0
        assert 29 < a.check(1, 9) <= 30 and 29 < b.check(1, 9) <= 30  # the third use waits, in either process
        assert b.check(2, 9) == 0  # another user
    finally:
        for db in dbs:
            db.close()


async def test_cooldowns_fall_back_to_this_process_when_the_database_is_gone(postgres):
    limiter = PostgresLimiter(Database(f"postgresql://crystal@127.0.0.1:{postgres.port}/gone", connect_timeout=1),
                              user=(1, 30.0), guild=(0, 0.0))
    assert await limiter.acquire(1, None) == 0
    assert await limiter.acquire(1, None) > 0
    assert isinstance(limiter.local, Limiter)
