"""``/ui``: the web UI, plain static files from ``static/`` (Flask serves ``/ui/<file>`` itself)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

bp = Blueprint("ui", __name__)


@bp.get("/ui")
def index() -> Response:
    return current_app.send_static_file("index.html")
