"""One scheduler per server, whatever the host forks: the process that builds the app claims the server.

The router, the process owners and the upstreams live in the process that
built the app. A host that runs several worker processes (``gunicorn -w 2``,
uWSGI's prefork) would give each its own scheduler: two copies of one model
could start, and an unload in one worker would not be seen by the other. So
the first worker to build the app takes an exclusive lock named after its
parent (the host's master) and its config; a second worker of the same host
waits a while for it (a graceful restart starts the new worker before the old
one has gone), then refuses to start, saying to run one worker. It says why
before it waits, not only when it refuses: a host may kill a worker that
takes long to load (gunicorn before 22 kills one silent for ``--timeout``
seconds, boot included; from 22 on its heartbeat check spares a worker that
has not booted yet).
``gunicorn.conf.py`` refuses ``-w 2`` at once, before any worker starts.

The lock is ``flock`` on a file in the temporary directory: the kernel drops
it with the process that held it, however it ends. ``wsgi.py`` claims it (the
entry point of every other host); ``python -m app`` runs one worker by
construction, and an app built in-process (``build_app(config=...)``, as
tests do) claims nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
import time
from typing import Mapping

from app import CONFIG_DIR_ENV, CONFIG_ENV, seconds_from_env

WAIT_FOR_OTHER_S = 20.0  # a graceful restart's old worker drains and stops its upstreams meanwhile
WAIT_ENV = "LLAMA_SWAP_SECOND_WORKER_WAIT"  # seconds instead of WAIT_FOR_OTHER_S (tests make it short)
_held: dict[str, int] = {}  # lock path -> descriptor, for this process's lifetime


class SecondWorker(RuntimeError):
    """Another worker process of this host already serves this config."""


def config_key(environ: Mapping[str, str] = os.environ) -> str:
    """The config a host's worker serves, as ``create_app`` will find it (``$LLAMA_SWAP_CONFIG``,
    ``$LLAMA_SWAP_CONFIG_DIR``, else ``config.yaml``), as absolute paths: two servers started from
    different directories on their own ``config.yaml`` are two servers."""
    directory = environ.get(CONFIG_DIR_ENV) or ""
    file = environ.get(CONFIG_ENV) or ("" if directory else "config.yaml")
    return "|".join(os.path.realpath(path) if path else "" for path in (file, directory))


def lock_path(config_key: str, parent: int | None = None) -> str:
    """The lock of the workers of one host process (``parent``, default ours) serving one config."""
    parent = os.getppid() if parent is None else parent
    digest = hashlib.sha256(f"{parent}\0{config_key}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"llama-swap-{digest}.lock")


def claim(config_key: str, wait: float | None = None, poll: float = 0.1, parent: int | None = None) -> None:
    """Take this host's one-worker lock for ``config_key``; SecondWorker when another process keeps it
    for ``wait`` seconds (default: $LLAMA_SWAP_SECOND_WORKER_WAIT, else ``WAIT_FOR_OTHER_S``)."""
    if wait is None:
        wait = seconds_from_env(WAIT_ENV, WAIT_FOR_OTHER_S)
    path = lock_path(config_key, parent)
    if path in _held:  # this process built the app before (a test, a second create_app): still ours
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + wait
    busy = (f"another worker process (of parent pid {os.getppid()}) already serves this config: "
            "llama-swap keeps its models and their scheduler in one process, so run the host with "
            "exactly one worker (gunicorn -w 1, uWSGI --processes 1); see docs/DEPLOY.md")
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise SecondWorker(busy) from None
            if not said:  # said now: a host may kill a worker that waits (gunicorn before 22 at --timeout)
                print(f"llama-swap: {busy}; waiting {wait:g}s for it to go (a graceful restart) before refusing",
                      file=sys.stderr, flush=True)
                said = True
            time.sleep(poll)
            continue
        _held[path] = fd
        return
