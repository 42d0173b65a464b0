"""create_app(): load the config, build the router, register the blueprints.

Nothing happens at import time; everything the app needs is built here, once
per gunicorn worker (after gevent has patched the world).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from flask import Flask, request

from app import CONFIG_ENV, WATCH_ENV, auth, inference, profiles, status, upstream
from app.config import Config, load_config
from app.errors import register_error_handlers
from app.logs import setup_logging, upstream_output_sink
from app.preload import preload
from app.proxy import BEGAN_KEY, UpstreamSessions
from app.reload import watch_config
from app.server import Server
from app.wiring import build_router

log = logging.getLogger("llama-swap")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def build_server(config: Config) -> Server:
    setup_logging(config)
    for warning in config.warnings:
        log.warning("config: %s", warning)
    server = Server(config=config, router=build_router(config, upstream_output_sink()),
                    sessions=UpstreamSessions())
    preload(server.router, config.preload)
    return server


def create_app(config_path: str | None = None, config: Config | None = None,
               watch: bool | None = None) -> Flask:
    """The Flask app; ``watch`` (default: $LLAMA_SWAP_WATCH_CONFIG) reloads on config changes."""
    config_path = config_path or os.environ.get(CONFIG_ENV, "config.yaml")
    if config is None:
        config = load_config(config_path)
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/ui")
    app.extensions["llama_swap"] = build_server(config)
    app.json.sort_keys = False
    register_error_handlers(app)
    app.register_blueprint(inference.bp)
    app.register_blueprint(status.bp)
    app.register_blueprint(profiles.bp)
    app.register_blueprint(upstream.bp)

    @app.before_request
    def _note_arrival_and_no_nagle() -> None:
        request.environ[BEGAN_KEY] = time.monotonic()
        # gunicorn writes headers and body in separate sends: without
        # TCP_NODELAY a delayed-ACK client would stall the body ~40 ms.
        sock = request.environ.get("gunicorn.socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    auth.install(app)  # after the hook above: a 401 goes out without Nagle's delay too

    @app.get("/ui")
    def _ui_index():
        return app.send_static_file("index.html")

    if watch is None:
        watch = os.environ.get(WATCH_ENV) == "1"
    if watch:
        watch_config(app, config_path, build_server)
        log.info("watching %s for changes", config_path)
    log.info("llama-swap ready: %d models (%s)", len(config.models), ", ".join(config.models))
    return app
