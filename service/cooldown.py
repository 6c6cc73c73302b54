"""Per-user and per-guild rate limits shared by every recognition trigger (slash, menu, reaction, watch)."""

from __future__ import annotations

import time
from collections import deque


class _Window:
    """At most `uses` events per `per` seconds for one key (sliding window)."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: deque[float] = deque()

    def retry_after(self, now: float, uses: int, per: float) -> float:
        while self.events and now - self.events[0] >= per:
            self.events.popleft()
        if len(self.events) < uses:
            return 0.0
        return per - (now - self.events[0])


class Limiter:
    """`check()` returns 0.0 and records a use when both the user and the guild have room, otherwise the
    seconds to wait (and records nothing). A limit of 0 uses disables that limit."""

    def __init__(self, user: tuple[int, float], guild: tuple[int, float], *, max_keys: int = 10_000) -> None:
        self.user = user
        self.guild = guild
        self._users: dict[int, _Window] = {}
        self._guilds: dict[int, _Window] = {}
        self._max_keys = max_keys

    def _window(self, table: dict[int, _Window], key: int) -> _Window:
        window = table.get(key)
        if window is None:
            if len(table) >= self._max_keys:  # forget idle keys rather than grow without bound
                for stale in [k for k, w in table.items() if not w.events][: self._max_keys // 2] or list(table)[:1]:
                    del table[stale]
            window = table[key] = _Window()
        return window

    def check(self, user_id: int, guild_id: int | None) -> float:
        now = time.monotonic()
        checks = []
        if self.user[0] > 0:
            checks.append((self._window(self._users, user_id), *self.user))
        if guild_id is not None and self.guild[0] > 0:
            checks.append((self._window(self._guilds, guild_id), *self.guild))
        wait = max((w.retry_after(now, uses, per) for w, uses, per in checks), default=0.0)
        if wait > 0:
            return wait
        for w, _, _ in checks:
            w.events.append(now)
        return 0.0

    async def acquire(self, user_id: int, guild_id: int | None) -> float:
        """`check` as the bot calls it (the same interface as `service.postgres.PostgresLimiter`)."""
        return self.check(user_id, guild_id)
