"""``/api/performance``, ``/api/hardware``, ``/api/version``: what the proxy knows of its machine and itself.

``GET /api/performance`` answers the sampler's last hour, ``{"enabled": true,
"sys_stats": [...], "gpu_stats": [...]}`` (GPU snapshots flattened);
``?after=<RFC3339>`` keeps only readings stamped strictly later (400 for a
time that is not RFC 3339); 503 ``{"enabled": false}`` when
``performance.disabled``. ``GET /api/hardware`` answers the snapshot taken at
startup (503 when detection failed). ``GET /api/version`` answers
``{"version", "commit", "build_date"}``.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from app.errors import ApiError, BadRequest, echoed
from app.runtime.server import current
from app.version import build_info

bp = Blueprint("system", __name__)

# RFC 3339: date, "T", time, optional fraction, and a zone (Z or ±hh:mm) that is required.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime; ValueError for anything RFC 3339 does not allow (a missing zone included)."""
    # An unescaped "+" in a query string arrives as a space.
    text = re.sub(r" (\d\d:\d\d)$", r"+\1", text.strip())
    if not _RFC3339.fullmatch(text):
        raise ValueError(text)
    return datetime.fromisoformat(text.upper())  # 3.11 takes "Z" and drops digits past microseconds


@bp.get("/api/performance")
def performance() -> Response:
    monitor = current().observatory.performance
    if monitor is None:
        response = jsonify({"enabled": False})
        response.status_code = 503
        return response
    after = None
    if "after" in request.args:
        try:
            after = parse_rfc3339(request.args["after"])
        except ValueError:
            raise BadRequest(f"after: {echoed(request.args['after'])!r} is not an RFC 3339 time "
                             "(such as 2026-01-02T15:04:05Z)") from None
    sys_stats, gpu_stats = monitor.history(after)
    return jsonify({"enabled": True, "sys_stats": [s.to_json() for s in sys_stats],
                    "gpu_stats": [g.to_json() for g in gpu_stats]})


@bp.get("/api/hardware")
def hardware() -> Response:
    snapshot = current().observatory.hardware
    if snapshot is None:
        raise ApiError("hardware detection failed", status=503)
    return jsonify(snapshot)


@bp.get("/api/version")
def version() -> Response:
    return jsonify(build_info())
