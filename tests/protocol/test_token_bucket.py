"""TokenBucket with an injected clock: no sleeping, no real time."""

from __future__ import annotations

from fastapi_realtime.ratelimit import TokenBucket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def takes(bucket: TokenBucket, n: int) -> list[bool]:
    return [bucket.take() for _ in range(n)]


def test_a_full_bucket_allows_the_burst_at_once() -> None:
    bucket = TokenBucket(rate=1, burst=3, clock=FakeClock())
    assert takes(bucket, 4) == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=2, clock=clock)
    assert takes(bucket, 3) == [True, True, False]
    clock.advance(0.25)  # half a token
    assert bucket.take() is False
    clock.advance(0.25)  # now a whole one
    assert takes(bucket, 2) == [True, False]


def test_refused_takes_do_not_spend_partial_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(3):
        clock.advance(0.125)  # a quarter of a token (binary-exact steps)
        assert bucket.take() is False
    clock.advance(0.125)
    assert bucket.take() is True


def test_refill_is_capped_at_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, burst=5, clock=clock)
    assert all(takes(bucket, 5))
    clock.advance(3600)
    assert takes(bucket, 6) == [True] * 5 + [False]


def test_sustained_rate_is_allowed_forever() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    for _ in range(1000):
        assert bucket.take()
        clock.advance(0.25)


def test_clock_standing_still_never_refills() -> None:
    bucket = TokenBucket(rate=1e9, burst=2, clock=FakeClock())
    assert takes(bucket, 5) == [True, True, False, False, False]


def test_clock_is_read_once_per_take() -> None:
    calls = []

    def clock() -> float:
        calls.append(1)
        return 0.0

    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    calls.clear()
    bucket.take()
    bucket.take()
    assert len(calls) == 2
