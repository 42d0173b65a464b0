"""The per-model Prometheus series that change as things happen: requests, tokens, latencies, swaps, loads.

``ModelMetrics`` owns these series, in the registry it is given (the app's,
never prometheus_client's global one: tests build many apps in one
process). It is fed three ways:

* as an exchange observer: ``on_end`` of each proxied exchange counts the
  request (model, status code, outcome) and observes its time to first
  byte, total duration and queue wait. This is on the request path, so it
  does only a few dictionary lookups and ``inc``/``observe`` calls on label
  children cached per model (``labels()`` itself validates and locks);
* from the event bus (``follow``): ``SwapEnded`` counts a swap by result and
  observes its duration; a ``ModelStateChanged`` from starting to ready
  observes how long the process took to load;
* through ``count_tokens``: the activity recorder, which reads each
  answer's usage, calls it once per metered request (this module reads no
  bodies).

What is a state rather than an event (model states, requests in flight and
waiting) is read from the router at scrape time (``app.observe.model_gauges``),
at no cost per request.
"""

from __future__ import annotations

from typing import Any, Callable

import gevent
from prometheus_client import CollectorRegistry, Counter, Histogram

from app.observe.bus import EventBus, Subscription, consume
from app.observe.exchange import Exchange, ExchangeObserver
from app.observe.events import ActivityRecorded
from scheduler.events import ModelStateChanged, SwapEnded
from scheduler.state import ProcessState


PREFIX = "llamaswap_"
# An LLM answer takes from milliseconds (a cached embedding) to minutes (a long generation).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Loading a model: a second for a small one already in the page cache, minutes for a large one from disk.
LOAD_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
NO_STATUS = "none"  # the ``code`` of an exchange that ended before any status (a client gone while queued)


class ModelMetrics(ExchangeObserver):
    """The per-model counters and histograms; one per app, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(PREFIX + "model_requests", "Proxied requests by model, status code and outcome.",
                                ("model", "code", "outcome"), registry=registry)
        self.tokens = Counter(PREFIX + "model_tokens", "Tokens by model and type (input: prompt, output: generated).",
                              ("model", "type"), registry=registry)
        self.time_to_first_byte = Histogram(
            PREFIX + "model_time_to_first_byte_seconds",
            "From a request's arrival to the first body byte sent back (queue and load included).",
            ("model",), buckets=LATENCY_BUCKETS, registry=registry)
        self.duration = Histogram(PREFIX + "model_request_duration_seconds",
                                  "From a request's arrival to its end (queue and load included).",
                                  ("model",), buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram(PREFIX + "model_queue_wait_seconds",
                                    "How long a request waited for the router's grant (loading included).",
                                    ("model",), buckets=LATENCY_BUCKETS, registry=registry)
        self.load = Histogram(PREFIX + "model_load_seconds",
                              "How long a model's process took from start to ready (health check passed).",
                              ("model",), buckets=LOAD_BUCKETS, registry=registry)
        self.swaps = Counter(PREFIX + "swaps", "Swaps by target model and result (ok, error).",
                             ("model", "result"), registry=registry)
        self.swap_duration = Histogram(PREFIX + "swap_duration_seconds",
                                       "How long a swap took: stopping what it evicts, then starting the model.",
                                       ("model",), buckets=LOAD_BUCKETS, registry=registry)
        self.scrape_errors = Counter(PREFIX + "upstream_scrape_errors",
                                     "Failed scrapes of a ready upstream's own /metrics.",
                                     ("model",), registry=registry)
        self._children: dict[tuple, Any] = {}  # (series, *label values) -> the labelled child
        self._starting_since: dict[str, float] = {}  # model -> when its process began starting (owner's clock)
        self._subscription: Subscription | None = None

    # ---- fed by the exchanges

    def on_end(self, exchange: Exchange) -> None:
        model = exchange.model
        code = NO_STATUS if exchange.status is None else str(exchange.status)
        outcome = exchange.outcome.value if exchange.outcome is not None else "unknown"
        self._child(self.requests, model, code, outcome).inc()
        if exchange.total is not None:
            self._child(self.duration, model).observe(exchange.total)
        if exchange.first_byte is not None:
            self._child(self.time_to_first_byte, model).observe(exchange.first_byte)
        if exchange.queued is not None:
            self._child(self.queue_wait, model).observe(exchange.queued)

    def count_tokens(self, model: str, input_tokens: int | None, output_tokens: int | None) -> None:
        """Add one request's token usage (None or negative: unknown, not counted); fed by ``ActivityRecorded``."""
        if input_tokens is not None and input_tokens > 0:
            self._child(self.tokens, model, "input").inc(input_tokens)
        if output_tokens is not None and output_tokens > 0:
            self._child(self.tokens, model, "output").inc(output_tokens)

    def count_scrape_error(self, model: str) -> None:
        self._child(self.scrape_errors, model).inc()

    # ---- fed by the event bus

    def on_event(self, event: object) -> None:
        if isinstance(event, ActivityRecorded):
            self.count_tokens(event.model, event.input_tokens, event.output_tokens)
        elif isinstance(event, SwapEnded):
            self._child(self.swaps, event.model, "ok" if event.error is None else "error").inc()
            self._child(self.swap_duration, event.model).observe(event.seconds)
        elif isinstance(event, ModelStateChanged):
            if event.state is ProcessState.STARTING:
                self._starting_since[event.model] = event.at
            else:
                began = self._starting_since.pop(event.model, None)
                if began is not None and event.state is ProcessState.READY:
                    self._child(self.load, event.model).observe(max(0.0, event.at - began))

    def follow(self, bus: EventBus, spawn: Callable[..., Any] = gevent.spawn) -> Any:
        """Read ``bus`` in a background greenlet until ``close``; returns the greenlet."""
        self._subscription = bus.subscribe(kinds=(ActivityRecorded, SwapEnded, ModelStateChanged))
        return spawn(consume, self._subscription, self.on_event, "metrics")

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()

    # ----

    def _child(self, series: Any, *values: str) -> Any:
        key = (id(series), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = series.labels(*values)
        return child
