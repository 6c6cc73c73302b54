from __future__ import annotations

import time

import pytest

from service.cooldown import Limiter


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def test_per_user_limit(clock):
    limiter = Limiter(user=(2, 10.0), guild=(0, 0.0))
    assert limiter.check(1, 5) == 0 and limiter.check(1, 5) == 0
    assert limiter.check(1, 5) == pytest.approx(10.0)
    assert limiter.check(2, 5) == 0  # another user
    clock[0] += 4
    assert limiter.check(1, 5) == pytest.approx(6.0)
    clock[0] += 6
    assert limiter.check(1, 5) == 0


def test_per_guild_limit_and_refusals_do_not_count(clock):
    limiter = Limiter(user=(5, 10.0), guild=(3, 60.0))
    assert [limiter.check(u, 1) for u in (1, 2, 3)] == [0, 0, 0]
    assert limiter.check(4, 1) == pytest.approx(60.0)
    assert limiter.check(4, 2) == 0  # another guild
    assert limiter.check(4, None) == 0  # DMs only have the user limit
    clock[0] += 60
    assert limiter.check(4, 1) == 0


def test_zero_disables(clock):
    limiter = Limiter(user=(0, 0.0), guild=(0, 0.0))
    assert all(limiter.check(1, 1) == 0 for _ in range(100))


def test_keys_are_bounded(clock):
    limiter = Limiter(user=(1, 1.0), guild=(0, 0.0), max_keys=10)
    for user in range(100):
        limiter.check(user, None)
    assert len(limiter._users) <= 10
