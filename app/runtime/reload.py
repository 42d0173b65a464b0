"""``--watch-config``: apply the config file, or the files of ``--config-dir``, again when their content changes.

The files are polled (mtime, size, inode) once a second, and so is each
``*.yml`` / ``*.yaml`` file of the directory: a fragment added, changed or
removed is a change. As in Go, a config file that is missing, or a directory
that is missing or holds no fragment, is taken for an edit in progress and
waited out (nothing reloads until it is back).

A change is judged by content: the texts are read and compared with those
the running config came from (a ``touch`` changes nothing), then parsed and
validated in gevent's thread pool (the hub keeps serving meanwhile), and a
config equal to the running one is not applied either. A config that fails
to load is logged with the key it names and the running one keeps serving;
the watch goes on, whatever the failure, and the next good edit applies. A
good one is applied by difference (``app.runtime.build.reload_server``):
unchanged models keep their processes and requests, changed ones restart
once their requests are done, removed ones stop, new ones are there at once.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import gevent
from flask import Flask

from app.config import Config, ConfigError, ConfigSources, SourceTexts, load_texts, read_sources
from app.config.sources import yaml_files
from app.runtime.lastgood import remember
from app.runtime.server import EXTENSION
from scheduler.router import Applied

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


def load_off_the_hub(sources: ConfigSources, texts: SourceTexts) -> Config:
    """``load_texts`` in gevent's thread pool: parsing a large or hostile file never stalls the requests."""
    def load() -> Config | Exception:
        try:
            return load_texts(sources, texts)
        except Exception as exc:  # handed back, not raised in the pool (which prints a traceback of it)
            return exc

    outcome = gevent.get_hub().threadpool.apply(load)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


class ConfigWatch:
    """Owns what the watch has seen: the texts the running config came from, and the files' signature."""

    def __init__(self, app: Flask, sources: ConfigSources, texts: SourceTexts,
                 apply: Callable[[Config], Applied]):
        self._app = app
        self._sources = sources
        self._tried = texts  # the newest texts loaded, good or bad (at first, the running config's): judged once
        self._apply = apply
        self._seen: tuple | None = None  # the first look reads the files (they may have changed since start)

    def poll(self) -> None:
        """Look once; apply what changed. Never raises: the watch outlives any failure."""
        try:
            self._poll()
        except Exception:
            log.exception("config %s: the reload failed; the running config keeps serving", self._sources)

    def _poll(self) -> None:
        current = _sources_signature(self._sources)
        if current is None or current == self._seen:
            return
        self._seen = current
        try:
            texts = read_sources(self._sources)
            if texts == self._tried:  # touched, or written back as it was
                log.info("config %s touched: its content is the same, nothing to reload", self._sources)
                return
            self._tried = texts
            config = load_off_the_hub(self._sources, texts)
        except ConfigError as exc:
            log.error("config %s changed but is invalid, keeping the running config: %s", self._sources, exc)
            return
        server = self._app.extensions[EXTENSION]
        remember(self._sources, texts)
        if config == server.config:
            log.info("config %s changed but means the same: nothing to reload", self._sources)
            return
        applied = self._apply(config)
        log.info("config reloaded: %d models; kept %s; restarting %s; removed %s; added %s",
                 len(config.models), *(", ".join(names) or "none" for names in
                                       (applied.kept, applied.restarted, applied.removed, applied.added)))


def watch_config(app: Flask, sources: ConfigSources, texts: SourceTexts, apply: Callable[[Config], Applied],
                 interval: float = POLL_INTERVAL) -> gevent.Greenlet:
    """Poll ``sources`` every ``interval`` seconds; ``texts``: those the running config came from."""
    watch = ConfigWatch(app, sources, texts, apply)

    def loop() -> None:
        while True:
            gevent.sleep(interval)
            watch.poll()

    return gevent.spawn(loop)
