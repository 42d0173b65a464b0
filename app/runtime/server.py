"""The running server's state: one config's router, transport and profile, and the app-wide observers.

A ``Server`` is built from one config (``app.runtime.build``) and replaced
whole on a reload; views reach the current one through ``current()`` and
nothing else holds it. ``close()`` is its one teardown path: stop every
upstream (graceful, then forced), then drop the connection pools.

``Observatory`` is what outlives a reload: the event bus, the exchange
observers and the watchers built on them (log monitors, activity, captures,
in-flight, metrics, the performance sampler), built once per app, so a
subscriber or an observer keeps seeing events across config changes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from flask import current_app

from app.config import Config, ProfileConfig
from app.observe.bus import EventBus
from app.observe.exchange import Observers
from app.observe.logs import LogHub
from app.relay.grants import PeerTraffic
from app.relay.transport import UpstreamTransport
from scheduler.router import Router

log = logging.getLogger("llama-swap")

EXTENSION = "llama_swap"


@dataclass
class Observatory:
    """The app-wide watchers: built once, shared by every Server the app runs."""

    bus: EventBus = field(default_factory=EventBus)
    observers: Observers = field(default_factory=Observers)
    # Prometheus collectors beyond the per-model metrics (``/metrics`` registers each one).
    collectors: list[object] = field(default_factory=list)
    # The log monitors (proxy, upstream, per model, the mux); create_app hands them the bus.
    logs: LogHub = field(default_factory=LogHub)

    def close(self) -> None:
        """The app is shutting down: end the live feeds, so no response waits on them."""
        self.logs.close()


@dataclass
class Server:
    config: Config
    router: Router
    transport: UpstreamTransport
    observatory: Observatory
    started_at: float = field(default_factory=time.time)
    # The profile whose pins apply now; none at start and after a reload.
    active_profile: ProfileConfig | None = None
    peer_traffic: PeerTraffic = field(default_factory=PeerTraffic)  # requests in flight to peers
    _closed: bool = False

    @property
    def observers(self) -> Observers:
        return self.observatory.observers

    def close(self) -> None:
        """Stop every upstream (graceful, then forced) and drop the pools; idempotent."""
        if self._closed:
            return
        self._closed = True
        began = time.monotonic()
        self.router.shutdown()
        self.transport.close()
        log.info("all upstreams stopped in %.2fs", time.monotonic() - began)

    def activate_profile(self, name: str | None) -> ProfileConfig | None:
        """Make ``name`` the active profile (None: no profile); KeyError if there is no such profile."""
        profile = None if name is None else self.config.profiles[name]
        previous = self.active_profile
        self.active_profile = profile
        log.info("profile: %s active (was %s)", name or "no profile",
                 previous.name if previous else "none")
        return profile


def current() -> Server:
    return current_app.extensions[EXTENSION]
