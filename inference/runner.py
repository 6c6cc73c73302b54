"""A bounded thread pool behind a bounded queue, for async callers (the HTTP API and the bot).

`workers` jobs run at once and `queue_size` more may wait; one more raises `Busy` at once, so a flood
of requests gets a polite "busy" instead of piling up in memory. The event loop never runs inference
itself: every job goes through `loop.run_in_executor`. A job cancelled while still queued frees its
slot without running.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from .errors import Busy

__all__ = ["BoundedRunner", "Busy"]




class BoundedRunner:
    def __init__(self, workers: int = 1, queue_size: int = 8, name: str = "crystal-eyes-infer") -> None:
        self.workers = max(1, int(workers))
        self.capacity = self.workers + max(0, int(queue_size))
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    @property
    def full(self) -> bool:
        """True when a new job would be refused right now (callers can refuse before doing any work)."""
        return self._pending >= self.capacity

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

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except asyncio.CancelledError:
            with guard:
                if not state["started"]:
                    state["cancelled"] = True
                    self._release()
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
