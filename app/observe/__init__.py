"""Watching the server: the event bus, and the observers of each proxied exchange.

``bus`` carries what the core publishes (model state changes, swaps);
``exchange`` is the record of one proxied request that observers see as it
happens; ``access_log`` is the first observer. The Prometheus side:
``model_metrics`` (per-model series), ``model_gauges`` (read from the router
at scrape time), ``upstream_metrics`` (the upstreams' own ``/metrics``) and
``exposition`` (the page). This package is imported by
the rest of ``app`` and imports none of its views.
"""
