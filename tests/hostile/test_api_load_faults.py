"""Load and faults on the HTTP API.

- 200 concurrent requests on a real loopback server: every one answered (200 or 503 busy), the event
  loop never blocked > 100 ms (measured by a lag monitor), nothing left pending, no unbounded growth.
- An exception inside one inference: that request gets a JSON 500 that leaks nothing, the next works.
- A missing, corrupt or mismatched bundle: `python -m inference serve` exits 2 with one clear line.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hostile.corpus import encode, picture
from hostile.looplag import HARD_BUSY, HARD_LAG, LagMonitor, strict
from inference import memory
from inference.adapters.api import RUNNER, create_app
from inference.settings import Settings, cpu_count

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 200
MAX_LAG = 0.100




def live_rss_mib() -> float:
    """RSS once garbage is collected and the allocator has handed its free pages back (malloc_trim), so a
    batch that merely left free memory cached in a thread's malloc arena does not read as growth."""
    gc.collect()
    memory.trim()
    return memory.rss_mb()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 1024x768 JPEG with detail: decode + resize + detect + embed take real milliseconds."""
    return encode(picture(1024, 768, seed=5), "JPEG", quality=90)


async def burst(url: str, picture: Path, n: int) -> list[dict]:
    """n concurrent requests from a client in its own process (tests/hostile/load_client.py), as real
    clients are elsewhere: the lag monitor then measures the server's loop, not the load generator."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(Path(__file__).with_name("load_client.py")),
                                                url, str(picture), str(n), stdout=asyncio.subprocess.PIPE,
                                                preexec_fn=lambda: os.nice(5))  # the server comes first
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_200_concurrent_requests(tiny_pipeline, photo, tmp_path):
    settings = Settings(ort_threads=1, workers=1, queue_size=8)
    app = create_app(tiny_pipeline, settings)
    server = TestServer(app)
    await server.start_server()
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(photo)
    rss, report = [], []
    try:
        url = str(server.make_url("/detect?topN=3"))
        await burst(url, picture, 4)  # warm-up
        for _batch in range(3):
            with LagMonitor(owners=True) as lag:
                t0 = time.perf_counter()
                results = await burst(url, picture, CONCURRENCY)
                seconds = time.perf_counter() - t0
            assert len(results) == CONCURRENCY
            statuses = [r["status"] for r in results]
            assert set(statuses) <= {200, 503}, [r for r in results if r["status"] not in (200, 503)][:3]
            ok = [r for r in results if r["status"] == 200]
            busy = [r for r in results if r["status"] == 503]
            assert ok and all(r["keys"] == ["head_locs", "preds"] for r in ok)
            assert all("busy" in r["error"] and r["retry_after"] for r in busy)
            assert app[RUNNER].pending == 0
            assert lag.samples > 10
            # Hard bounds, on any machine: no request ever blocks the loop for long (inference runs in the
            # executor). Issue 7's 100 ms bound, asserted on every run for the server's own steps (aiohttp's
            # server, inference/): CPU time summed between two wake-ups, and wall time of any single step.
            assert lag.max_busy < HARD_BUSY, f"event loop blocked by work for {lag.max_busy * 1000:.0f} ms"
            assert lag.max_lag < HARD_LAG, f"event loop late by {lag.max_lag * 1000:.0f} ms"
            assert lag.steps_by["service"] > CONCURRENCY, lag.by_owner()
            assert lag.max_busy_by["service"] < MAX_LAG, f"server steps held the loop: {lag.by_owner()}"
            assert lag.max_step_wall_by["service"] < MAX_LAG, f"one server step blocked the loop: {lag.by_owner()}"
            if strict_now := strict():  # all of the loop's work between two wake-ups, whoever owns it
                assert lag.max_busy < MAX_LAG, f"event loop blocked by work for {lag.max_busy * 1000:.0f} ms"
            if strict(auto=False):  # wall-clock lateness also counts other processes: only on request
                assert lag.max_lag < MAX_LAG, f"event loop late by {lag.max_lag * 1000:.0f} ms"
            rss.append(live_rss_mib())
            report.append(f"{len(ok)} ok / {len(busy)} busy in {seconds:.2f} s (slowest answer "
                          f"{max(r['seconds'] for r in results):.2f} s), max loop lag {lag.max_lag * 1000:.1f} ms "
                          f"(blocked by work {lag.max_busy * 1000:.1f} ms) over {lag.samples} samples, load "
                          f"{os.getloadavg()[0]:.1f} on {cpu_count()} CPUs, strict {strict_now}, RSS {rss[-1]:.0f} MiB; by owner: {lag.by_owner()}")
    finally:
        await server.close()
    # No unbounded growth: the third batch costs (almost) nothing more than the second.
    assert rss[2] - rss[1] < 30, rss
    print("\n" + "\n".join(report))


async def test_request_size_capped_before_reading_it_all(tiny_pipeline):
    settings = Settings(ort_threads=1, max_image_bytes=1 << 20, http_max_request_bytes=2 << 20)
    async with TestClient(TestServer(create_app(tiny_pipeline, settings))) as client:
        for size in (1 << 20 | 1, 8 << 20):
            form = aiohttp.FormData()
            form.add_field("file", b"\xff\xd8\xff" + b"\0" * size, filename="big.jpg", content_type="image/jpeg")
            r = await client.post("/detect", data=form)
            assert r.status == 413 and "too large" in (await r.json())["error"]
        assert client.app[RUNNER].pending == 0


async def test_exception_inside_one_inference(tiny_pipeline, photo, caplog):
    secret = "DISCORD_TOKEN=MTIzNDU2Nzg5.secret"
    calls = []

    class Flaky:
        settings = tiny_pipeline.settings
        info = tiny_pipeline.info

        def recognize(self, *a, **k):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError(f"model exploded ({secret}, {ROOT})")
            return tiny_pipeline.recognize(*a, **k)

    app = create_app(Flaky(), Settings(ort_threads=1))
    with caplog.at_level(logging.ERROR, logger="crystal_eyes.api"):
        async with TestClient(TestServer(app)) as client:
            form = aiohttp.FormData()
            form.add_field("file", photo, filename="p.jpg", content_type="image/jpeg")
            r = await client.post("/detect", data=form)
            text = await r.text()
            assert r.status == 500 and r.content_type == "application/json"
            assert json.loads(text) == {"error": "Internal error; the request was not processed."}
            assert "secret" not in text and "RuntimeError" not in text and str(ROOT) not in text
            for _ in range(2):  # the server keeps serving
                form = aiohttp.FormData()
                form.add_field("file", photo, filename="p.jpg", content_type="image/jpeg")
                r = await client.post("/detect", data=form)
                assert r.status == 200 and set(await r.json()) == {"preds", "head_locs"}
            assert app[RUNNER].pending == 0
    assert any("RuntimeError" in (rec.exc_text or "") for rec in caplog.records)  # the operator sees it


def _bad_bundles(tiny_bundle: Path, tmp: Path) -> dict[str, Path]:
    import shutil

    out = {}
    out["empty_dir"] = tmp / "empty"
    out["empty_dir"].mkdir()
    out["not_a_dir"] = tmp / "nowhere"
    for name in ("missing_file", "corrupt_file", "sha_mismatch", "garbage_onnx", "bad_manifest"):
        out[name] = Path(shutil.copytree(tiny_bundle, tmp / name))
    (out["missing_file"] / "encoder.onnx").unlink()
    data = bytearray((out["corrupt_file"] / "detector.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (out["corrupt_file"] / "detector.onnx").write_bytes(bytes(data))
    m = json.loads((out["sha_mismatch"] / "manifest.json").read_text())
    m["encoder"]["sha256"] = "0" * 64
    (out["sha_mismatch"] / "manifest.json").write_text(json.dumps(m))
    garbage = b"this is not an onnx model"  # the sha matches; onnxruntime must refuse it
    (out["garbage_onnx"] / "encoder.onnx").write_bytes(garbage)
    m = json.loads((out["garbage_onnx"] / "manifest.json").read_text())
    m["encoder"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (out["garbage_onnx"] / "manifest.json").write_text(json.dumps(m))
    (out["bad_manifest"] / "manifest.json").write_text("{not json")
    return out


def test_bad_bundle_is_one_clear_startup_error(tiny_bundle, tmp_path):
    expect = {"empty_dir": "No model bundle", "not_a_dir": "No model bundle", "missing_file": "missing",
              "corrupt_file": "sha256", "sha_mismatch": "sha256", "garbage_onnx": "onnxruntime",
              "bad_manifest": "not valid JSON"}
    bundles = _bad_bundles(tiny_bundle, tmp_path)
    env = {**os.environ, "DISCORD_TOKEN": "MTIzNDU2Nzg5.secret-token"}
    procs = {name: subprocess.Popen([sys.executable, "-m", "inference", "serve", "--bundle", str(path),
                                     "--host", "127.0.0.1", "--port", "59"], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, path in bundles.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert p.returncode == 2, (name, p.returncode, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect[name] in lines[0], (name, err)
        assert "Traceback" not in err and "secret" not in err + out, (name, err)


def test_lag_monitor_sees_a_blocked_loop():
    """The monitor is not vacuous: 250 ms of blocking work on the loop shows up as >= 200 ms of lag."""

    async def main():
        with LagMonitor() as lag:
            await asyncio.sleep(0.05)
            time.sleep(0.25)  # blocks the loop on purpose
            await asyncio.sleep(0.05)
        return lag.max_lag

    assert asyncio.run(main()) >= 0.2
