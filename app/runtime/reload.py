"""``--watch-config``: rebuild the server when the config file changes.

The file is polled (mtime, size, inode) once a second. A change that fails
to validate is logged with the key it names and the running config stays.
A valid one stops every upstream of the old server first (so ports are free),
then swaps in a server built from the new file; requests already streaming
keep the old objects and finish or fail on their own.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import gevent
from flask import Flask

from app.observe.events import ConfigReloaded
from app.config import Config, ConfigError, load_config
from app.runtime.server import EXTENSION, Server

log = logging.getLogger("llama-swap")

POLL_INTERVAL = 1.0


def _signature(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def watch_config(app: Flask, path: str, build: Callable[[Config], Server],
                 interval: float = POLL_INTERVAL) -> gevent.Greenlet:
    def loop() -> None:
        seen = _signature(path)
        while True:
            gevent.sleep(interval)
            current = _signature(path)
            if current == seen or current is None:
                continue
            seen = current
            try:
                config = load_config(path)
            except ConfigError as exc:
                log.error("config %s changed but is invalid, keeping the running config: %s", path, exc)
                continue
            log.info("config %s changed: stopping all models and reloading", path)
            app.extensions[EXTENSION].close()
            server = app.extensions[EXTENSION] = build(config)
            active = server.active_profile.name if server.active_profile is not None else None
            server.observatory.bus.publish(ConfigReloaded(tuple(config.models), active))
            log.info("config reloaded: %d models", len(config.models))

    return gevent.spawn(loop)
