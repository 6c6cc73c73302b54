import asyncio
import threading

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from inference.adapters.api import create_app
from inference.runner import BoundedRunner
from inference.settings import Settings


@pytest.fixture
async def client(tiny_pipeline):
    settings = Settings(ort_threads=1, max_image_bytes=2 * 1024 * 1024, http_max_request_bytes=3 * 1024 * 1024)
    async with TestClient(TestServer(create_app(tiny_pipeline, settings))) as c:
        yield c


def form(data: bytes, name="file"):
    f = aiohttp.FormData()
    f.add_field(name, data, filename="x.jpg", content_type="image/jpeg")
    return f


async def test_detect_reference_shape_and_topn(client, scene_bytes):
    for path in ("/detect?topN=5", "/dectect/?topN=5"):
        r = await client.post(path, data=form(scene_bytes))
        assert r.status == 200
        body = await r.json()
        assert set(body) == {"preds", "head_locs"}
        assert body["head_locs"] == [[[128, 96], [384, 384]], [[640, 160], [832, 352]]]
        assert all(len(p) == 5 and isinstance(p[0][0], str) and isinstance(p[0][1], float) for p in body["preds"])
    r = await client.post("/dectect/", data=form(scene_bytes))
    assert all(len(p) == 3 for p in (await r.json())["preds"])  # default 3


async def test_errors_are_json_4xx(client, scene_bytes):
    cases = [
        ("/detect", form(b"<html>nope</html>"), 415, "not a picture"),
        ("/detect", form(b""), 400, "empty"),
        ("/detect", form(scene_bytes[:5000]), 400, "damaged"),
        ("/detect", form(scene_bytes, name="image"), 400, "file"),
        ("/detect?topN=abc", form(scene_bytes), 400, "topN"),
        ("/detect?topN=0", form(scene_bytes), 400, "topN"),
        ("/detect", form(b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024 + 10)), 413, "too large"),
        ("/detect", form(b"\0" * (4 * 1024 * 1024)), 413, "too large"),
    ]
    for path, data, status, text in cases:
        r = await client.post(path, data=data)
        assert r.status == status, (path, status, await r.text())
        assert text in (await r.json())["error"]
    r = await client.post("/detect", data=b"raw", headers={"Content-Type": "application/octet-stream"})
    assert r.status == 400 and "multipart" in (await r.json())["error"]


async def test_healthz(client):
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok" and body["classes"] == 5


async def test_busy_is_503_and_nothing_piles_up(tiny_pipeline, scene_bytes):
    gate = threading.Event()
    runner = BoundedRunner(workers=1, queue_size=1)
    real = tiny_pipeline.recognize

    class Slow:
        settings = tiny_pipeline.settings
        info = tiny_pipeline.info

        def recognize(self, *a, **k):
            gate.wait(10)
            return real(*a, **k)

    app = create_app(Slow(), Settings(ort_threads=1), runner=runner)
    async with TestClient(TestServer(app)) as c:
        tasks = [asyncio.create_task(c.post("/detect", data=form(scene_bytes))) for _ in range(4)]
        while runner.pending < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        gate.set()
        statuses = sorted([(await t).status for t in tasks])
    assert statuses == [200, 200, 503, 503]
    assert runner.pending == 0
