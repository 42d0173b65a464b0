"""Health checks while an upstream starts: how often to poll, and the probe that asks.

The schedule: the first poll right after spawn, then every 10 ms for the
first second (most swaps of small models land there), then every 20 ms for
as long as the model loads. So a model is served at most ~20 ms after it
turns healthy, whatever its load time (the Go version waits 250 ms, then
polls once a second). A health endpoint is cheap: 50 polls a second cost an
upstream nothing it would notice. And an upstream usually says when it is
ready: a line of its output matching ``READY_HINT`` (llama-server's "model
loaded" and "server is listening", vLLM's "startup complete", ...) makes the
poll happen at once, so such a model is served within a health check's time
of saying so. A line that matches too early costs one extra poll.

The probe is the HTTP layer's (``app.relay.transport.HealthProbe``): the
core speaks no HTTP. ``open`` gives one check session per start, closed when
the poll ends, so no idle keep-alive connection to a model outlives its
start (llama-server takes ~100 ms longer to exit while one is open).
"""

from __future__ import annotations

import re
from typing import Protocol

HEALTH_FIRST_INTERVAL = 0.010
HEALTH_FAST_PERIOD = 1.0
HEALTH_MAX_INTERVAL = 0.020
HEALTH_BACKOFF = 1.5
READY_HINT = re.compile(r"model loaded|listening|startup complete|ready", re.IGNORECASE)


def next_health_interval(elapsed: float, previous: float) -> float:
    """Seconds until the next health poll, ``elapsed`` seconds after spawn."""
    if elapsed <= HEALTH_FAST_PERIOD:
        return HEALTH_FIRST_INTERVAL
    return min(HEALTH_MAX_INTERVAL, previous * HEALTH_BACKOFF)


class HealthCheck(Protocol):
    def check(self, timeout: float) -> bool:
        """True when the check endpoint answers 200 within ``timeout``; False on anything else."""
        ...

    def close(self) -> None:
        """Drop the connection this check kept open."""
        ...


class HealthProbe(Protocol):
    def open(self, url: str) -> HealthCheck:
        """A check of ``url`` for the duration of one start."""
        ...
