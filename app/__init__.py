"""HTTP in and out: the Flask app built from a llama-swap config.

The rooms: ``config`` (YAML → frozen dataclasses), ``runtime`` (the running
server built from a config), ``routes`` (one blueprint per URL family),
``naming`` (what a requested name means), ``relay`` (moving one request to
its upstream and back), ``observe`` (the event bus and the observers of each
exchange), and ``auth`` / ``errors``. ``docs/ARCHITECTURE.md`` draws the
arrows between them.

``create_app`` is resolved on first use: ``python -m app`` runs in the
gunicorn master, which must not import gevent, requests or Flask before its
worker forks and gevent patches the world there.
"""

from __future__ import annotations

import os
from typing import Any

# The config path, --config-dir (and --watch-config) handed from the CLI (gunicorn master) to the worker.
CONFIG_ENV = "LLAMA_SWAP_CONFIG"
CONFIG_DIR_ENV = "LLAMA_SWAP_CONFIG_DIR"  # --config-dir; "" when not given
WATCH_ENV = "LLAMA_SWAP_WATCH_CONFIG"
# The descriptor of the master's unlinked file where the last config texts that loaded are kept,
# for a worker gunicorn respawns while the config is mid-edit (``app.runtime.lastgood``).
LAST_GOOD_ENV = "LLAMA_SWAP_LAST_GOOD"
# "none": no exchange observers at all (no access log, metrics, in-flight, activity); for benchmarks only.
OBSERVERS_ENV = "LLAMA_SWAP_OBSERVERS"
# Seconds a SIGTERM leaves the requests already in to finish (new ones get 503) before upstreams stop.
SHUTDOWN_GRACE_ENV = "LLAMA_SWAP_SHUTDOWN_GRACE"
SHUTDOWN_GRACE = 5.0
# Seconds a request body may send nothing before it is refused (408).
BODY_TIMEOUT_ENV = "LLAMA_SWAP_BODY_TIMEOUT"


def seconds_from_env(name: str, default: float) -> float:
    """A number of seconds from the environment variable ``name`` (``default`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name}={text!r}: expected a number of seconds, 0 or more")
    return value


def shutdown_grace() -> float:
    return seconds_from_env(SHUTDOWN_GRACE_ENV, SHUTDOWN_GRACE)


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.runtime.factory import create_app

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
