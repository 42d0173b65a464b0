"""create_app(): load the config, build the server, register the routes and the hooks every request runs.

Nothing happens at import time; everything the app needs is built here, once
per gunicorn worker (after gevent has patched the world). The parts that
outlive a config reload (the event bus, the exchange observers, with the
access log as the first observer, the log monitors) are built here once; the ``Server`` is
built from the config and rebuilt on each reload.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask

from app import CONFIG_ENV, WATCH_ENV, auth
from app.config import Config, load_config
from app.errors import register_error_handlers
from app.observe.access_log import AccessLog
from app.observe.bus import EventBus
from app.observe.logs import LogHub
from app.routes import register_routes
from app.runtime.build import build_server
from app.runtime.reload import watch_config
from app.runtime.server import EXTENSION, Observatory

log = logging.getLogger("llama-swap")

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


def create_app(config_path: str | None = None, config: Config | None = None,
               watch: bool | None = None) -> Flask:
    """The Flask app; ``watch`` (default: $LLAMA_SWAP_WATCH_CONFIG) reloads on config changes."""
    config_path = config_path or os.environ.get(CONFIG_ENV, "config.yaml")
    if config is None:
        config = load_config(config_path)
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/ui")
    bus = EventBus()
    observatory = Observatory(bus=bus, logs=LogHub(publish=bus.publish))
    observatory.observers.add(AccessLog())
    app.extensions[EXTENSION] = build_server(config, observatory)
    app.json.sort_keys = False
    register_error_handlers(app)
    register_routes(app)
    auth.install(app)  # after the routes' hooks: a 401 goes out without Nagle's delay too

    if watch is None:
        watch = os.environ.get(WATCH_ENV) == "1"
    if watch:
        watch_config(app, config_path, lambda new: build_server(new, observatory))
        log.info("watching %s for changes", config_path)
    log.info("llama-swap ready: %d models (%s)", len(config.models), ", ".join(config.models))
    return app
