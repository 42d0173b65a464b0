"""Operational endpoints llama-swap has outside ``/api``: health, /running, /unload, the favicon and the root redirect.

``/health`` and ``/wol-health`` (what llama-swap's wake-on-LAN proxy polls)
answer plain ``OK``; ``GET /unload`` stops every local model and answers
``OK`` too. ``/running`` lists the processes that are not stopped, with
``ttl`` in whole seconds as Go gives it (a fractional TTL, which Go's config
refuses, is shown as it is). ``/favicon.ico`` is the UI's icon, for the
browsers that ask for it at the root.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, send_from_directory

from app.routes.ui import STATIC_DIR
from app.runtime.server import current

bp = Blueprint("status", __name__)


@bp.get("/health")
@bp.get("/wol-health")
def health() -> Response:
    return Response("OK", mimetype="text/plain")


@bp.get("/")
def root() -> Response:
    return redirect("ui/", code=302)  # relative: right behind a sub-path proxy


@bp.get("/running")
def running() -> Response:
    server = current()
    records = []
    for model_id, state in sorted(server.running_models().items()):
        model = server.config.models[model_id]
        records.append({
            "model": model_id, "state": state.value, "cmd": " ".join(model.cmd),
            "proxy": model.proxy, "ttl": whole_seconds(model.ttl), "name": model.name,
            "description": model.description})
    return jsonify({"running": records})


def whole_seconds(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


@bp.get("/unload")
def unload_all() -> Response:
    current().router.unload()
    return Response("OK", mimetype="text/plain")


@bp.get("/favicon.ico")
def favicon() -> Response:
    return send_from_directory(STATIC_DIR, "favicon.svg", mimetype="image/svg+xml")
