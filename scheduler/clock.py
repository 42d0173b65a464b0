"""Time, as the owners see it: the one place the core reads the clock, waits or sets a timer.

The router and the process owners take a ``Clock`` instead of calling
``time.monotonic`` and gevent's timers themselves, so their tests drive time
by hand (``tests/helpers/fakes.FakeClock``): a TTL, a health-poll backoff, an
unload timeout or a ``maxWait`` hold happens when the test advances the
clock, never after a real sleep.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

import gevent
from gevent.event import Event


class Timer(Protocol):
    def cancel(self) -> None:
        """Make sure the callback does not run (a no-op once it has)."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in its own greenlet ``delay`` seconds from now."""
        ...

    def wait(self, event: Event, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` passes; whether it was set."""
        ...


class _GreenletTimer:
    __slots__ = ("_greenlet",)

    def __init__(self, greenlet: gevent.Greenlet):
        self._greenlet = greenlet

    def cancel(self) -> None:
        self._greenlet.kill(block=False)


class GeventClock:
    """The real clock: ``time.monotonic`` and gevent's hub."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return _GreenletTimer(gevent.spawn_later(max(0.0, delay), callback))

    def wait(self, event: Event, timeout: float) -> bool:
        return event.wait(timeout)
