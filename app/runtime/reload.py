"""``--watch-config``: rebuild the server when the config file, or a file of ``--config-dir``, changes.

The file is polled (mtime, size, inode) once a second, and so is each
``*.yml`` / ``*.yaml`` file of the directory: a fragment added, changed or
removed is a change. As in Go, a config file that is missing, or a directory
that is missing or holds no fragment, is taken for an edit in progress and
waited out (nothing reloads until it is back). A change that fails
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
from app.config import Config, ConfigError, ConfigSources, load_sources
from app.config.sources import yaml_files
from app.runtime.server import EXTENSION, Server

log = logging.getLogger("llama-swap")

POLL_INTERVAL = 1.0


def _signature(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _directory_signature(directory: str) -> tuple | None:
    """Each fragment's name and signature; None when the directory is missing or has none."""
    try:
        files = yaml_files(directory)
    except OSError:
        return None
    signatures = tuple((path, _signature(path)) for path in files)
    return signatures or None


def _sources_signature(sources: ConfigSources) -> tuple | None:
    """What the watch compares; None while a source is missing (an edit in progress)."""
    parts = []
    if sources.file:
        parts.append(_signature(sources.file))
    if sources.directory:
        parts.append(_directory_signature(sources.directory))
    return None if None in parts else tuple(parts)


def watch_config(app: Flask, sources: ConfigSources, build: Callable[[Config], Server],
                 interval: float = POLL_INTERVAL) -> gevent.Greenlet:
    def loop() -> None:
        seen = _sources_signature(sources)
        while True:
            gevent.sleep(interval)
            current = _sources_signature(sources)
            if current == seen or current is None:
                continue
            seen = current
            try:
                config = load_sources(sources)
            except ConfigError as exc:
                log.error("config %s changed but is invalid, keeping the running config: %s", sources, exc)
                continue
            log.info("config %s changed: stopping all models and reloading", sources)
            app.extensions[EXTENSION].close()
            server = app.extensions[EXTENSION] = build(config)
            active = server.active_profile.name if server.active_profile is not None else None
            server.observatory.bus.publish(ConfigReloaded(tuple(config.models), active))
            log.info("config reloaded: %d models", len(config.models))

    return gevent.spawn(loop)
