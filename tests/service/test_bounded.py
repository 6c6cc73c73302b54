"""The bot's bounded state (service/bounded.py): what is remembered, what is forgotten first, what expires."""

from __future__ import annotations

from service.bounded import LiveViews, RecentIds


class View:
    def __init__(self, finished: bool = False) -> None:
        self.finished, self.expired = finished, False

    def is_finished(self) -> bool:
        return self.finished

    def expire(self) -> None:
        self.expired = True


def test_recent_ids_forget_the_oldest_first():
    recent = RecentIds(3)
    assert [recent.first_time(k) for k in (1, 2, 1, 3, 4)] == [True, True, False, True, True]
    assert len(recent) == 3
    assert recent.first_time(1)  # 1 was the oldest and went when 4 came
    recent.forget(4)
    assert recent.first_time(4) and not recent.first_time(3)


def test_live_views_expire_the_oldest_past_either_bound():
    views = LiveViews(max_count=2, max_bytes=100)
    a, b, c = View(), View(), View()
    views.keep(a)
    views.keep(b, 10)
    views.keep(c)
    assert a.expired and not b.expired and len(views) == 2  # over the count
    big = View()
    views.keep(big, 95)  # 10 + 95 held > 100: the oldest holder goes, the newest stays even alone
    assert b.expired and not big.expired and views.held == 95
    huge = View()
    views.keep(huge, 500)
    assert len(views) == 1 and views.held == 500 and not huge.expired


def test_finished_views_are_dropped_without_expiring_them():
    views = LiveViews(max_count=2, max_bytes=10**6)
    done, live = View(finished=True), View()
    views.keep(done, 7)
    views.keep(live)
    views.keep(View())
    assert not done.expired and not live.expired and len(views) == 2 and views.held == 0
