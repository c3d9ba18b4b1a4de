"""mlci.polling.poll with fake time: the pauses it takes, where it stops, what it returns."""

from __future__ import annotations

import pytest

from mlci.polling import poll


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 6))
        self.now += seconds


def test_pauses_grow_up_to_the_cap_and_the_last_is_cut_at_the_deadline():
    fake = FakeTime()
    calls: list[float] = []

    def check() -> int:
        calls.append(fake.now)
        return len(calls)

    last = poll(
        check,
        lambda n: n > 100,
        10.0,
        1.0,
        growth=2.0,
        most=3.0,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert fake.pauses == [1.0, 2.0, 3.0, 3.0, 1.0]  # 1 + 2 + 3 + 3 = 9; the last pause ends at 10
    assert last == len(calls) == 6  # the last result, from a call at the deadline
    assert calls[-1] == 10.0


def test_a_fixed_pause_by_default_and_done_stops_at_once():
    fake = FakeTime()
    results = iter([None, None, "ready", "not asked"])
    answer = poll(lambda: next(results), bool, 60.0, 0.25, sleep=fake.sleep, clock=fake.clock)
    assert answer == "ready"
    assert fake.pauses == [0.25, 0.25]


def test_an_exception_from_the_check_ends_the_wait_as_it_is():
    fake = FakeTime()

    def check() -> bool:
        raise PermissionError("wrong credentials")

    with pytest.raises(PermissionError, match="wrong credentials"):
        poll(check, bool, 60.0, 1.0, sleep=fake.sleep, clock=fake.clock)
    assert fake.pauses == []
