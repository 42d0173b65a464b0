"""Operational endpoints: /health, /running, unloading, and the root redirect."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect

from app.server import current
from scheduler.errors import ModelNotFound
from scheduler.state import ProcessState

bp = Blueprint("status", __name__)


@bp.get("/health")
def health() -> Response:
    return Response("OK", mimetype="text/plain")


@bp.get("/")
def root() -> Response:
    return redirect("/ui", code=302)


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


@bp.post("/api/models/unload")
@bp.get("/unload")
def unload_all() -> Response:
    current().router.unload()
    return jsonify({"msg": "ok"})


@bp.post("/api/models/unload/<path:name>")
def unload_one(name: str) -> Response:
    server = current()
    model = server.config.resolve(name)
    if model is None:
        raise ModelNotFound(f"model not found: {name}")
    server.router.unload([model])
    return Response("OK", mimetype="text/plain")
