"""The URL families, one blueprint each, and the hook every request runs first.

``inference`` (the model-dispatched route table), ``passthrough``
(``/upstream`` and the ComfyUI page socket), ``models`` (the listing),
``status`` (health, running, unload), ``metrics`` (Prometheus), ``api`` (``/api/*``), ``logs`` (``/logs*``), ``events`` (the live
``/api/events`` feed, in-flight cancel), ``system``
(``/api/performance``, ``/api/hardware``, ``/api/version``), ``metrics_api``
(activity records and captures), ``timeline`` (the swap timeline), ``ui``. Views
are thin: parse the request, ask ``naming`` / ``relay`` / the runtime, turn
the answer into a response; refusals are raised and answered by
``app.errors``.
"""

from __future__ import annotations

from flask import Flask

from app.routes import (api, common, events, inference, logs, metrics, metrics_api, models, passthrough, status, system,
                        timeline, ui)


def register_routes(app: Flask) -> None:
    app.before_request(common.stamp_arrival)
    app.before_request(common.refuse_connect)
    for module in (inference, passthrough, models, status, metrics, api, logs, events, system, metrics_api, timeline,
                   ui):
        app.register_blueprint(module.bp)
