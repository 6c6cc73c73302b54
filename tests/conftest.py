from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))

from bundles import make_tiny_bundle  # noqa: E402


def pytest_report_header(config):
    return f"shared data: {SHARED} ({'present' if SHARED.is_dir() else 'MISSING'})"


@pytest.fixture(scope="session")
def shared() -> Path:
    assert SHARED.is_dir(), f"../shared/data must be beside the project (looked at {SHARED})"
    return SHARED


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle"))


@pytest.fixture(scope="session")
def scene_bytes(shared) -> bytes:
    return (shared / "scenes" / "misc" / "kiyoshimu-test0.jpg").read_bytes()


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_bundle):
    from inference.pipeline import Pipeline
    from inference.settings import Settings

    return Pipeline.from_bundle(tiny_bundle, Settings(ort_threads=1))


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/pgserver.py)."""
    import shutil
    import tempfile

    from pgserver import PostgresServer

    directory = Path(tempfile.mkdtemp(prefix="crystal-eyes-pg-"))  # not under pytest's root-only tmp dir
    server = PostgresServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database_url(postgres, request) -> str:
    """A fresh, empty database on the session's server."""
    import re

    return postgres.create_database(re.sub(r"\W", "_", request.node.name)[:50].lower() + f"_{id(request)}"[-8:])


@pytest.fixture(scope="module")
def ray_serve():
    """`ray_serve(bundle_dir, replicas=1)` -> URL: a local Ray cluster (2 CPUs, no dashboard) with the recognition
    service (inference/adapters/serve.py) on 127.0.0.1; one application per test module, shut down after it."""
    import socket

    from inference.adapters import serve
    from inference.settings import Settings

    started = []

    def run(bundle_dir, **options) -> str:
        assert not started, "one recognition service per test module"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        started.append(serve.start(Settings(bundle_dir=bundle_dir, ort_threads=1), port=port, num_cpus=2, **options))
        return started[-1]

    yield run
    if started:
        serve.stop()
