"""The URL families, one blueprint each, and the hook every request runs first.

``inference`` (the model-dispatched route table), ``passthrough``
(``/upstream`` and the ComfyUI page socket), ``models`` (the listing),
``status`` (health, running, unload), ``api`` (``/api/*``), ``logs``
(``/logs*``), ``ui``. Views
are thin: parse the request, ask ``naming`` / ``relay`` / the runtime, turn
the answer into a response; refusals are raised and answered by
``app.errors``.
"""

from __future__ import annotations

from flask import Flask

from app.routes import api, common, inference, logs, models, passthrough, status, ui


def register_routes(app: Flask) -> None:
    app.before_request(common.stamp_arrival)
    for module in (inference, passthrough, models, status, api, logs, ui):
        app.register_blueprint(module.bp)
