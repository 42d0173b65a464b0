"""API keys (``apiKeys``) and CORS for every protected route (not yet built)."""

from __future__ import annotations

from flask import Flask


def install(app: Flask) -> None:
    """Register the key check and CORS handling on ``app``."""
