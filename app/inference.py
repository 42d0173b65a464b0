"""The inference endpoints: pick the model from the JSON body, get a lease, proxy.

Views are thin: read the body, resolve the model name (aliases included),
wait for the router's grant while watching for the client hanging up, and
hand the lease to ``app.proxy.forward``.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

from app.errors import BadRequest
from app.hangup import HangupWatch
from app.proxy import forward
from app.server import Server, current
from scheduler.errors import ModelNotFound
from scheduler.router import Lease

bp = Blueprint("inference", __name__)

IMMEDIATE_GRANT = 0.02  # seconds a request may wait before its client's socket is watched

JSON_MODEL_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/completion",
)


def model_from_json(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    name = payload.get("model")
    if not isinstance(name, str) or not name:
        raise BadRequest("missing or invalid 'model' key in request body")
    return name


def resolve(server: Server, name: str) -> str:
    model = server.config.resolve(name)
    if model is None:
        raise ModelNotFound(f"could not find model: {name}")
    return model


def acquire(server: Server, model: str, environ: dict) -> Lease:
    """Wait for the router's grant; a client that hangs up meanwhile leaves the queue."""
    ticket = server.router.submit(model)
    # Most requests are granted on the router's next turn: watch the client
    # socket only for those that really wait (a swap, a queue).
    lease = ticket.wait(IMMEDIATE_GRANT)
    if lease is not None:
        return lease
    watch = HangupWatch(environ, lambda: server.router.cancel(ticket))
    try:
        return ticket.wait()
    finally:
        watch.stop()


def raw_path(environ: dict) -> str:
    """The path and query as the client sent them (percent-encoding preserved)."""
    return environ.get("RAW_URI") or request.full_path.rstrip("?")


def proxy_json_request() -> Response:
    server = current()
    body = request.get_data(cache=False)
    model = resolve(server, model_from_json(body))
    lease = acquire(server, model, request.environ)
    return forward(lease, server.sessions, request.environ, "POST", raw_path(request.environ), body)


for _path in JSON_MODEL_PATHS:
    bp.add_url_rule(_path, view_func=proxy_json_request, methods=["POST"],
                    endpoint="proxy" + _path.replace("/", "_"))


@bp.get("/v1/models")
def list_models() -> Response:
    server = current()
    created = int(server.started_at)
    data = []
    for model in server.config.models.values():
        if model.unlisted:
            continue
        record = {"id": model.id, "object": "model", "created": created, "owned_by": "llama-swap"}
        if model.name:
            record["name"] = model.name
        if model.description:
            record["description"] = model.description
        data.append(record)
    data.sort(key=lambda r: r["id"])
    return jsonify({"object": "list", "data": data})
