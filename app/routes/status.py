"""Operational endpoints llama-swap has outside ``/api``: /health, /running, /unload, and the root redirect."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect

from app.runtime.server import current
from scheduler.state import ProcessState

bp = Blueprint("status", __name__)


@bp.get("/health")
def health() -> Response:
    return Response("OK", mimetype="text/plain")


@bp.get("/")
def root() -> Response:
    return redirect("ui/", code=302)  # relative: right behind a sub-path proxy


@bp.get("/running")
def running() -> Response:
    server = current()
    records = []
    for model_id, process in sorted(server.router.processes.items()):
        state = process.state
        if state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
            continue
        model = server.config.models[model_id]
        records.append({
            "model": model_id, "state": state.value, "cmd": " ".join(model.cmd),
            "proxy": model.proxy, "ttl": model.ttl, "name": model.name,
            "description": model.description})
    return jsonify({"running": records})


@bp.get("/unload")
def unload_all() -> Response:
    current().router.unload()
    return jsonify({"msg": "ok"})
