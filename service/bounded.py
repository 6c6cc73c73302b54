"""The bot's two pieces of state that grow with traffic, each with a bound: the messages a trigger has answered,
and the reply buttons still live. Plain logic, no Discord: `tests/service/test_bounded.py`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol


class RecentIds:
    """The last `cap` keys seen, oldest forgotten first: "has this message been answered already?"."""

    def __init__(self, cap: int) -> None:
        self.cap = int(cap)
        self._ids: OrderedDict[Hashable, None] = OrderedDict()

    def first_time(self, key: Hashable) -> bool:
        """True (and remember it) the first time `key` is seen since it was last forgotten."""
        if key in self._ids:
            return False
        self._ids[key] = None
        while len(self._ids) > self.cap:
            self._ids.popitem(last=False)
        return True

    def forget(self, key: Hashable) -> None:
        self._ids.pop(key, None)

    def __len__(self) -> int:
        return len(self._ids)


class Expiring(Protocol):
    def is_finished(self) -> bool: ...

    def expire(self) -> None: ...


class LiveViews:
    """Reply views still live, each with the bytes it holds (a picture kept for a retry button). Past `max_count`
    views or `max_bytes` held, the oldest are expired early; finished ones are dropped as new ones come."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count, self.max_bytes = int(max_count), int(max_bytes)
        self._views: OrderedDict[int, tuple[Expiring, int]] = OrderedDict()

    def keep(self, view: Expiring, held: int = 0) -> None:
        for key in [k for k, (v, _) in self._views.items() if v.is_finished()]:
            del self._views[key]
        self._views[id(view)] = (view, int(held))
        while len(self._views) > 1 and (len(self._views) > self.max_count or self.held > self.max_bytes):
            _, (old, _) = self._views.popitem(last=False)
            old.expire()

    @property
    def held(self) -> int:
        return sum(h for _, h in self._views.values())

    def __len__(self) -> int:
        return len(self._views)
