"""The per-model gauges read from the router at scrape time: each model's state, its requests in flight and waiting.

Nothing is kept between scrapes and nothing is paid per request: ``collect``
asks the router (through a function the runtime hands it) for its processes' states
and its ``occupancy()`` snapshot. Every configured model has a state series
for each state, 1 for the one it is in (Prometheus's enum idiom), so a
model that is not running still shows, as ``stopped``.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scheduler.fifo import Occupancy
from scheduler.state import ProcessState

PREFIX = "llamaswap_"


class StatedProcess(Protocol):
    @property
    def state(self) -> ProcessState: ...


class RouterView(Protocol):
    """What the gauges read of ``scheduler.router.Router``."""

    @property
    def processes(self) -> Mapping[str, StatedProcess]: ...

    def occupancy(self) -> dict[str, Occupancy]: ...


class ModelGauges(Collector):
    """A custom collector: register it once; ``router`` is called at each scrape (None: nothing to report)."""

    def __init__(self, router: Callable[[], RouterView | None]) -> None:
        self._router = router

    def describe(self) -> list[GaugeMetricFamily]:
        # Named up front so registering does not call ``collect`` (no router may exist yet).
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        router = self._router()
        state, in_flight, waiting, queued = self._families()
        if router is not None:
            for model, process in sorted(router.processes.items()):
                current = process.state
                for each in ProcessState:
                    state.add_metric([model, each.value], 1.0 if each is current else 0.0)
            occupancy = router.occupancy()
            for model in sorted(router.processes):
                counts = occupancy.get(model, Occupancy(0, 0, 0))
                in_flight.add_metric([model], counts.in_flight)
                waiting.add_metric([model], counts.waiting)
                queued.add_metric([model], counts.queued)
        yield from (state, in_flight, waiting, queued)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(PREFIX + "model_state", "1 for the state each model's process is in, 0 for the others.",
                              labels=("model", "state")),
            GaugeMetricFamily(PREFIX + "model_requests_in_flight",
                              "Requests granted to the model and not yet done.", labels=("model",)),
            GaugeMetricFamily(PREFIX + "model_requests_waiting",
                              "Requests waiting for a grant: queued, or waiting for the model to load.",
                              labels=("model",)),
            GaugeMetricFamily(PREFIX + "model_queue_depth",
                              "Of the waiting requests, those queued behind busy models (the FIFO queue).",
                              labels=("model",)),
        )
