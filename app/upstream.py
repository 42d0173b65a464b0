"""``/upstream/<model>/<path>``: direct passthrough to a model's own server (not yet built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("upstream", __name__)
