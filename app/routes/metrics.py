"""``GET /metrics``: the app's Prometheus registry and collectors, then the ready upstreams' own metrics.

The page is the app's registry (the per-model series, the scrape-time
gauges, the HTTP metrics of prometheus-flask-exporter), every collector in
``Observatory.collectors`` (host and GPU gauges), then each READY
upstream's ``/metrics`` labelled with its model (``app.observe.upstream_metrics``):
scraping never starts, holds or waits for a model. The key check
(``app.auth``) covers this route as llama-swap HEAD does.

``track_http`` installs prometheus-flask-exporter's request count and
duration on the management routes only: on the inference routes the
per-model series already count every request (and time it to its real end,
where the exporter's ``after_request`` fires when a stream *starts*), and
the exporter's hooks would add to every proxied request's latency.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, Response
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics

from app.observe.exposition import CONTENT_TYPE, render
from app.observe.upstream_metrics import fetch_with, scrape_ready
from app.routes import inference
from app.runtime.server import current

bp = Blueprint("metrics", __name__)


def untracked_paths() -> str:
    """One pattern (the exporter tries each of its patterns per request) for the paths it leaves alone.

    The proxied paths (the inference route table, ``/upstream/``,
    ``/comfyui/``), which the per-model series cover, and ``/metrics`` itself.
    """
    exact = sorted({re.escape(route.path) for route in inference.ROUTES if not route.path.startswith("/comfyui/")})
    return r"(?:/metrics|%s)$|/upstream/|/comfyui/" % "|".join(exact)


@bp.get("/metrics")
def metrics() -> Response:
    server = current()
    observatory = server.observatory
    upstream = scrape_ready(server.router.processes, fetch_with(server.transport.send),
                            observatory.model_metrics.count_scrape_error)
    body = render([observatory.registry, *observatory.collectors], upstream)
    return Response(body, status=200, content_type=CONTENT_TYPE)


def track_http(app: Flask, registry: CollectorRegistry) -> PrometheusMetrics:
    """prometheus-flask-exporter's ``llamaswap_http_request_*`` series, by route rule, management routes only."""
    return PrometheusMetrics(app, path=None, registry=registry, defaults_prefix="llamaswap", group_by="url_rule",
                             excluded_paths=untracked_paths())
