from __future__ import annotations

import asyncio
import io
import threading

import pytest
from PIL import Image

from inference.errors import ImageError
from service.recognizer import MORE_TOP_K, Busy, Recognizer


async def test_recognize_returns_the_result_and_an_annotated_picture(tiny_pipeline, scene_bytes):
    rec = Recognizer(tiny_pipeline, workers=1, queue_size=1)
    try:
        out = await rec.recognize(scene_bytes, threshold=0.3)
        assert len(out.result.heads) == 2
        assert all(len(h.candidates) == min(MORE_TOP_K, len(tiny_pipeline.labels)) for h in out.result.heads)
        assert out.fmt == "jpg" and out.annotated.startswith(b"\xff\xd8")
        assert Image.open(io.BytesIO(out.annotated)).size == (out.result.width, out.result.height)

        small = await rec.recognize(scene_bytes, max_bytes=30_000)  # over the upload limit -> smaller JPEG
        assert small.fmt == "jpg" and len(small.annotated) <= 30_000 < len(out.annotated)
        with pytest.raises(ImageError):
            await rec.recognize(b"not a picture")
        assert rec.pending == 0
    finally:
        rec.close()


async def test_busy_when_workers_and_queue_are_full(tiny_pipeline):
    rec = Recognizer(tiny_pipeline, workers=1, queue_size=2)
    gate = threading.Event()
    started = threading.Event()

    def block():
        started.set()
        return gate.wait(10)

    try:
        jobs = [asyncio.ensure_future(rec.run(block)) for _ in range(3)]
        await asyncio.sleep(0)
        assert rec.pending == 3
        with pytest.raises(Busy, match="try again in a moment"):
            await rec.run(block)
        assert rec.pending == 3
        gate.set()
        assert await asyncio.gather(*jobs) == [True, True, True]
        assert rec.pending == 0
        assert await rec.run(lambda: 42) == 42
    finally:
        gate.set()
        rec.close()


async def test_a_cancelled_waiting_job_frees_its_slot(tiny_pipeline):
    rec = Recognizer(tiny_pipeline, workers=1, queue_size=1)
    gate = threading.Event()
    ran = []
    try:
        running = asyncio.ensure_future(rec.run(gate.wait, 10))
        waiting = asyncio.ensure_future(rec.run(ran.append, "queued"))
        await asyncio.sleep(0.05)
        assert rec.pending == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert rec.pending == 1
        gate.set()
        await running
        await asyncio.sleep(0.05)
        assert rec.pending == 0 and ran == []  # the cancelled job never ran
    finally:
        gate.set()
        rec.close()


async def test_inference_does_not_run_on_the_event_loop(tiny_pipeline):
    rec = Recognizer(tiny_pipeline, workers=1, queue_size=0)
    try:
        name = await rec.run(lambda: threading.current_thread().name)
        assert name.startswith("crystal-eyes-infer")
    finally:
        rec.close()
