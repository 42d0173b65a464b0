"""``/v1/models`` and ``/models``: the model listing (records from ``app.naming.listing``)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.naming.listing import model_records
from app.runtime.server import current

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
@bp.get("/models")
def list_models() -> Response:
    server = current()
    running = {model: state.value for model, state in server.running_models().items()}
    records = model_records(server.config, int(server.started_at), server.active_profile, running)
    return jsonify({"object": "list", "data": records})
