"""Event-loop lag measurement shared by the HTTP and the bot load tests, and when the strict 100 ms
bound of issue 7 is asserted (always where the machine is not oversubscribed, or with LOOP_LAG_STRICT=1)."""

from __future__ import annotations

import asyncio
import os
import time

from inference.settings import cpu_count


class LagMonitor:
    """Sleeps 10 ms in a loop and records how late it wakes up.

    - `max_lag`: the longest wall-clock delay of the loop (what a user would feel);
    - `max_busy`: the most CPU time the loop's own thread spent between two wake-ups, i.e. how long
      the loop was really *blocked by work* (a blocking call on the loop shows up here, while time
      the OS gave to other processes on a busy machine does not).
    """

    def __init__(self, interval: float = 0.01):
        self.interval, self.max_lag, self.max_busy, self.samples = interval, 0.0, 0.0, 0
        self._task: asyncio.Task | None = None

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            t, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(self.interval)
            self.max_lag = max(self.max_lag, loop.time() - t - self.interval)
            self.max_busy = max(self.max_busy, time.thread_time() - cpu)
            self.samples += 1

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


def oversubscribed() -> bool:
    """More runnable work than CPUs (shared CI boxes, training jobs beside the tests)."""
    return os.getloadavg()[0] > cpu_count()


def strict(auto: bool = True) -> bool:
    """Assert the 100 ms bound now? LOOP_LAG_STRICT=1: whatever the load; =0: never; unset: when `auto` and the
    machine is not oversubscribed at the moment of asserting (the load is read then, not at import)."""
    env = os.environ.get("LOOP_LAG_STRICT", "")
    return {"1": True, "0": False}.get(env, auto and not oversubscribed())
HARD_BUSY, HARD_LAG = 0.5, 3.0  # asserted always: generous bounds that hold on an oversubscribed shared box
