"""The only way the bot runs inference: a bounded thread pool behind a bounded queue.

`workers` jobs run at once and `queue_size` more may wait; one more and `Busy` is raised at once, so a
flood of pictures gets "busy, try again in a moment" instead of piling up in memory. The event loop never
runs inference itself: every job goes through `loop.run_in_executor`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

MORE_TOP_K = 10  # every recognition asks for this many candidates so "more candidates" needs no second run


class Busy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self) -> None:
        super().__init__("I'm busy with other pictures right now, try again in a moment.")


@dataclass(frozen=True)
class Recognition:
    result: Any  # inference.result.Result
    annotated: bytes  # the annotated picture, encoded
    fmt: str  # "png" or "jpg"


class Recognizer:
    def __init__(self, pipeline: Any, *, workers: int = 1, queue_size: int = 8) -> None:
        self.pipeline = pipeline
        self.workers = max(1, int(workers))
        self.capacity = self.workers + max(0, int(queue_size))
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="crystal-eyes-infer")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn, /, *args, **kwargs):
        """Run `fn(*args, **kwargs)` in the pool; raise `Busy` at once when the pool and queue are full."""
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy()
            self._pending += 1
        state = {"started": False, "cancelled": False}
        guard = threading.Lock()

        def job():
            with guard:
                if state["cancelled"]:
                    return None
                state["started"] = True
            try:
                return fn(*args, **kwargs)
            finally:
                self._release()

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(job))
        except asyncio.CancelledError:
            with guard:
                if not state["started"]:
                    state["cancelled"] = True
                    self._release()
            raise

    # -- the jobs ------------------------------------------------------------------------------------------------
    def _recognize(self, data, top_k, whole_image, gallery, threshold, max_bytes) -> Recognition:
        result = self.pipeline.recognize(
            data, top_k=top_k, whole_image=whole_image, gallery=gallery, threshold=threshold
        )
        # PNG keeps line art crisp; JPEG when the PNG would not fit the upload limit.
        annotated = self.pipeline.annotate(result, fmt="PNG", max_bytes=None)
        fmt = "png"
        if max_bytes is not None and len(annotated) > max_bytes:
            annotated = self.pipeline.annotate(result, fmt="JPEG", max_bytes=max_bytes)
            fmt = "jpg"
        # Drop the decoded picture: the result is kept by the reply's buttons for minutes, the pixels are not needed.
        return Recognition(result=replace(result, image=None), annotated=annotated, fmt=fmt)

    async def recognize(
        self,
        data: bytes,
        *,
        top_k: int = MORE_TOP_K,
        whole_image: bool = False,
        gallery: Any = None,
        threshold: float | None = None,
        max_bytes: int | None = None,
    ) -> Recognition:
        return await self.run(self._recognize, data, top_k, whole_image, gallery, threshold, max_bytes)

    async def embed_for_enroll(self, data: bytes, *, whole_image: bool = False):
        return await self.run(self.pipeline.embed_for_enroll, data, whole_image=whole_image)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
