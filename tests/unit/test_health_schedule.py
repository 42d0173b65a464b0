"""The health-poll schedule: fast at first (swaps end as soon as the upstream is up), capped at 100 ms."""

import pytest

from scheduler.process import HEALTH_FIRST_INTERVAL, next_health_interval


def schedule(seconds: float) -> list[float]:
    """The poll times an upstream that never gets healthy would see in ``seconds``."""
    times, t, interval = [0.0], 0.0, HEALTH_FIRST_INTERVAL
    while t < seconds:
        interval = next_health_interval(t, interval)
        t += interval
        times.append(t)
    return times


def test_first_polls_are_10_ms_apart():
    times = schedule(1.0)
    assert times[0] == 0.0 and times[1] <= 0.010
    assert all(b - a <= 0.010 + 1e-9 for a, b in zip(times, times[1:]) if b <= 1.0)


def test_polls_back_off_to_at_most_100_ms():
    times = schedule(30.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 0.100 + 1e-9
    assert gaps[-1] == pytest.approx(0.100)
    assert all(b >= a - 1e-9 for a, b in zip(gaps, gaps[1:]))  # never faster again once backing off
