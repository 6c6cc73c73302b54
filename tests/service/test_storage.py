from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pytest

from service.storage import DB_NAME, Galleries, GuildSettings, Storage, StorageError


class Backend:
    """Stores of one backend as a process opens them; every one is closed at the end of the test."""

    def __init__(self, name: str, tmp_path, url: str | None) -> None:
        self.name, self.tmp_path, self.url, self.opened = name, tmp_path, url, []

    def storage(self, defaults: GuildSettings | None = None) -> Storage:
        if self.url is None:
            store = Storage(self.tmp_path / "data", defaults or GuildSettings())
        else:
            from service.postgres import Database, PostgresSettings

            store = Storage(self.tmp_path / "data", defaults or GuildSettings(), backend=PostgresSettings(Database(self.url)))
        self.opened.append(store)
        return store

    def galleries(self, pipeline) -> Galleries:
        if self.url is None:
            return Galleries(self.tmp_path / "galleries", pipeline)
        from service.postgres import Database, PostgresGalleryFiles

        db = Database(self.url)
        db.open()  # what the bot's storage.open() does for the database both share: connect and migrate
        self.opened.append(db)
        return Galleries(None, pipeline, files=PostgresGalleryFiles(db))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """The same tests on both storage backends (SQLite and files, or PostgreSQL: DATABASE_URL)."""
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else None
    made = Backend(request.param, tmp_path, url)
    yield made
    for thing in made.opened:
        thing.close()


def test_schema_is_created_and_settings_survive_a_reopen(backend):
    storage = backend.storage()
    assert storage.open()
    assert storage.get(1) == GuildSettings()
    storage.update(1, threshold=0.5, emoji="\N{EYES}", reactions=True, top_k=5)
    storage.set_watch(1, 42, True)
    storage.set_watch(1, 43, True)
    storage.set_watch(1, 43, False)
    storage.close()

    again = backend.storage()
    assert again.open()
    assert again.get(1) == GuildSettings(threshold=0.5, emoji="\N{EYES}", reactions=True, top_k=5,
                                         watch_channels=frozenset({42}))
    assert again.get(2) == GuildSettings()  # other guilds untouched
    again.reset(1)
    assert again.get(1) == GuildSettings()


def test_the_sqlite_schema_is_versioned(tmp_path):
    storage = Storage(tmp_path / "data")
    assert storage.open()
    storage.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_defaults_come_from_the_caller(backend):
    storage = backend.storage(GuildSettings(threshold=0.7, top_k=4))
    storage.open()
    assert storage.get(9).threshold == 0.7 and storage.get(9).top_k == 4
    assert storage.update(9, top_k=2).threshold == 0.7


def test_a_corrupt_database_means_defaults_and_a_log_line(tmp_path, caplog):
    (tmp_path / DB_NAME).write_bytes(b"this is not a sqlite database" * 100)
    storage = Storage(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert storage.open() is False
    assert "unusable" in caplog.text
    assert storage.get(1) == GuildSettings()
    with pytest.raises(StorageError, match="unavailable"):
        storage.update(1, threshold=0.9)


def test_a_locked_database_fails_writes_cleanly(tmp_path, caplog):
    storage = Storage(tmp_path, timeout=0.05)
    storage.open()
    storage.update(1, top_k=4)
    blocker = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(StorageError, match="busy or damaged"):
            storage.update(1, top_k=6)
        assert storage.get(1).top_k == 4  # the cached value stays
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert storage.update(1, top_k=6).top_k == 6


def test_unknown_setting_is_a_programming_error(backend):
    storage = backend.storage()
    storage.open()
    with pytest.raises(TypeError):
        storage.update(1, colour="red")


def test_galleries_enroll_forget_and_survive_a_reload(backend, tiny_pipeline, scene_bytes):
    galleries = backend.galleries(tiny_pipeline)
    assert galleries.get(1) is None and galleries.names(1) == []
    vec = tiny_pipeline.embed_for_enroll(scene_bytes)
    before = galleries.get(1)
    assert galleries.enroll(1, "aqua_(konosuba)", vec) == 1
    assert galleries.enroll(1, "aqua_(konosuba)", vec * 0.5) == 2
    assert galleries.enroll(1, "rem_(re:zero)", vec) == 1
    assert before is None  # copy-on-write: a caller's gallery object is never changed under it
    assert galleries.names(1) == ["aqua_(konosuba)", "rem_(re:zero)"]
    assert galleries.names(2) == []

    reloaded = backend.galleries(tiny_pipeline)
    assert reloaded.names(1) == ["aqua_(konosuba)", "rem_(re:zero)"]
    held = reloaded.get(1)
    assert reloaded.forget(1, "aqua_(konosuba)") == 2
    assert reloaded.forget(1, "nobody") == 0
    assert reloaded.names(1) == ["rem_(re:zero)"]
    assert "aqua_(konosuba)" in held.names  # the old object is unchanged


def test_a_gallery_from_another_encoder_is_ignored_with_a_log_line(tmp_path, tiny_pipeline, caplog):
    directory = tmp_path / "galleries"
    directory.mkdir()
    np.savez(directory / "7.npz", encoder_id=np.array("another-encoder"), names=np.array(["x"]),
             vectors=np.ones((1, 16), np.float32))
    galleries = Galleries(directory, tiny_pipeline)
    with caplog.at_level(logging.ERROR):
        assert galleries.get(7) is None
    assert "unusable" in caplog.text and "another encoder" in caplog.text
    # the old file is kept aside, so that teaching again does not overwrite it
    kept = list(directory.glob("7.unusable-*.npz"))
    assert len(kept) == 1 and not (directory / "7.npz").exists()
    with np.load(kept[0]) as z:
        assert str(z["encoder_id"]) == "another-encoder"
    assert galleries.enroll(7, "aqua_(konosuba)", np.ones(16, np.float32)) == 1
    assert galleries.names(7) == ["aqua_(konosuba)"]
    assert kept[0].exists()
