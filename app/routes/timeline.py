"""``GET /api/timeline``: the swap timeline's last hour (states, swaps with their causes, queue depth).

The shape is ``app.observe.timeline.SwapTimeline.document``'s; the live feed
carries each new entry as a ``timeline`` message in the same shape.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.runtime.server import current

bp = Blueprint("timeline", __name__)


@bp.get("/api/timeline")
def timeline() -> Response:
    return jsonify(current().observatory.timeline.document())
