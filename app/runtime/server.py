"""The running server's state: one config's router, transport and profile, and the app-wide observers.

A ``Server`` is built from the first config (``app.runtime.build``) and
lives as long as the app: a reload (``reload``) hands the new config's
models to the router, which keeps what is unchanged (``Router.apply``), and
then serves the new config; views reach it through ``current()`` and read
``config`` once per request. ``close()`` is its one teardown path: stop every
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
from typing import Any, Callable

from flask import current_app
from gevent.event import Event
from prometheus_client import CollectorRegistry

from app.config import Config, ProfileConfig
from app.observe.activity_store import ActivityStore
from app.observe.bus import EventBus
from app.observe.events import ConfigReloaded, ProfileChanged
from app.observe.exchange import Observers
from app.observe.feed import EventFeed
from app.observe.inflight import InflightTracker
from app.naming.listing import status_records
from app.observe.nvml import Nvml
from app.observe.performance import PerformanceMonitor
from app.observe.captures import CaptureCache
from app.observe.recorder import Recorder
from app.observe.model_metrics import ModelMetrics
from app.observe.logs import LogHub
from app.observe.timeline import SwapTimeline
from app.relay.grants import PeerTraffic
from app.relay.transport import UpstreamTransport
from scheduler.router import Applied, Router
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap")

EXTENSION = "llama_swap"


@dataclass
class Observatory:
    """The app-wide watchers: built once, shared by every Server the app runs."""

    bus: EventBus = field(default_factory=EventBus)
    observers: Observers = field(default_factory=Observers)
    # The app's Prometheus registry (never prometheus_client's global one: a
    # process may build many apps): the per-model series, the scrape-time
    # gauges and the HTTP metrics live here.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Prometheus collectors beyond those (host, GPU): ``/metrics`` collects each one at every scrape.
    collectors: list[object] = field(default_factory=list)
    inflight: InflightTracker = field(init=False)
    feed: EventFeed = field(init=False)  # /api/events; its model list is set by the factory
    # Activity records and captures (the first config's metricsMaxInMemory, store.path, captureBuffer).
    activity: ActivityStore = field(default_factory=ActivityStore)
    captures: CaptureCache = field(default_factory=CaptureCache)
    recorder: Recorder = field(init=False)
    # NVIDIA's library, shared by the hardware snapshot and the performance sampler.
    nvml: Nvml = field(default_factory=Nvml)
    # The sampler behind /api/performance; None when ``performance.disabled``.
    performance: PerformanceMonitor | None = None
    # /api/hardware's snapshot, taken once at startup; None when detection failed.
    hardware: dict[str, Any] | None = None

    # The last hour of states, swaps and queue depth (/api/timeline); its router is set by the factory.
    timeline: SwapTimeline = field(init=False)

    # Requests, tokens (``count_tokens``), latencies, swaps, loads; in ``registry``.
    model_metrics: ModelMetrics = field(init=False)

    # The log monitors (proxy, upstream, per model, the mux), publishing on the bus.
    logs: LogHub = field(init=False)

    def __post_init__(self) -> None:
        self.logs = LogHub(publish=self.bus.publish)
        self.model_metrics = ModelMetrics(self.registry)
        self.inflight = InflightTracker(self.bus.publish)
        self.observers.add(self.inflight)
        self.feed = EventFeed(self.bus)
        self.feed.activity_through = self.activity.next_id() - 1  # a store file's records: told as kept
        self.recorder = Recorder(self.activity, self.captures, self.bus.publish)
        self.timeline = SwapTimeline(self.bus.publish)

    def flush(self) -> None:
        """Store every activity record still queued (at shutdown)."""
        self.recorder.flush()

    def close(self) -> None:
        """At shutdown (a reload keeps the observatory): end the live feeds and log streams, so no response
        waits on them; stop the in-flight ticker, the metrics reader and the sampler; release NVML."""
        self.logs.close()
        self.feed.close()
        self.inflight.close()
        self.model_metrics.close()
        self.timeline.close()
        stopped = self.performance.stop() if self.performance is not None else True
        if stopped:  # never shut NVML down under a read still running in a thread
            self.nvml.close()


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
    # Hands a reloaded config's models and policy to the router (``app.runtime.build`` supplies it).
    reconfigure: Callable[[Config], Applied] | None = None
    _closing: bool = False
    _closed: Event = field(default_factory=Event)  # set once every upstream is stopped

    @property
    def observers(self) -> Observers:
        return self.observatory.observers

    def running_models(self) -> dict[str, ProcessState]:
        """Each model whose process is neither stopped nor shut down, with its state: a snapshot."""
        return {model: process.state for model, process in self.router.processes.items()
                if process.state not in (ProcessState.STOPPED, ProcessState.SHUTDOWN)}

    def close(self, grace: float = 0.0, *, hurry: bool = False) -> None:
        """Stop every upstream (graceful, then forced) and drop the pools; idempotent.

        With ``grace`` (a SIGTERM), the requests already in get up to that
        many seconds to finish first, while new ones are answered 503; what
        is left then is cut. A second caller (a second SIGTERM, gunicorn's
        ``worker_exit`` while the first close is still stopping upstreams)
        returns when the first is done, never before: the process must not
        exit under a graceful stop. ``hurry`` (Ctrl-C during that grace) ends
        the grace now.
        """
        if self._closing:
            if hurry:
                self.router.cut_drain()
            self._closed.wait()
            return
        self._closing = True
        began = time.monotonic()
        try:
            if grace > 0 and not self.router.drain(grace):
                log.warning("requests still in after the %gs shutdown grace are cut", grace)
            self.router.shutdown()
            self.transport.close()
        finally:
            self._closed.set()
        log.info("all upstreams stopped in %.2fs", time.monotonic() - began)

    def reload(self, config: Config) -> Applied:
        """Serve ``config`` from now on: the router takes its models first (a name it serves is never
        unknown to it), then the views see it. No profile is active after it, as in llama-swap."""
        if self._closing or self.reconfigure is None:
            return Applied()
        applied = self.reconfigure(config)
        self.config = config
        self.active_profile = None
        self.observatory.bus.publish(ConfigReloaded(tuple(config.models), None))
        return applied

    def activate_profile(self, name: str | None) -> ProfileConfig | None:
        """Make ``name`` the active profile (None: no profile); KeyError if there is no such profile."""
        profile = None if name is None else self.config.profiles[name]
        previous = self.active_profile
        self.active_profile = profile
        self.observatory.bus.publish(ProfileChanged(name))
        log.info("profile: %s active (was %s)", name or "no profile",
                 previous.name if previous else "none")
        return profile


def model_status(server: Server) -> list[dict[str, Any]]:
    """llama-swap's ``ApiModel`` list for ``/api/events``: each model with its process's state now."""
    def state_of(model: str) -> str:
        state = server.router.model_state(model)
        return state.value if state is not None else "stopped"

    return status_records(server.config, state_of)


def current() -> Server:
    return current_app.extensions[EXTENSION]
