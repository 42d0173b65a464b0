"""The ``/metrics`` page: the app's own collectors, then the upstreams' families, in Prometheus text 0.0.4.

One rendering pass (``prometheus_client.exposition.generate_latest``) over
everything, so escaping and the HELP/TYPE lines are the library's. A
collector that raises is logged and left out of this scrape: one broken
gauge must not blank the page. Upstream families whose names the app's own
already use are left out (``upstream_metrics.merge``).
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.observe.upstream_metrics import exposed_name, merge

log = logging.getLogger("llama-swap.observe")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def collect_all(collectors: Iterable[Collector]) -> list[Metric]:
    """Every family of every collector; one that raises is skipped (and logged)."""
    families: list[Metric] = []
    for collector in collectors:
        try:
            families.extend(collector.collect())
        except Exception:
            log.exception("metrics: collector %s failed; left out of this scrape", type(collector).__name__)
    return families


def render(collectors: Iterable[Collector], upstream: Mapping[str, Sequence[Metric]]) -> bytes:
    """The page: ``collectors``' families, then the upstreams' (by model) merged and labelled."""
    own = collect_all(collectors)
    return generate_latest(_Families(own + merge(upstream, taken={exposed_name(family) for family in own})))
