"""Stopping the server from whatever thread a host stops in: its stop hook, atexit, or SIGTERM.

``close_app`` is the one way a host stops the app: the live feeds end, every
upstream stops (graceful, then forced), the activity is flushed. Under a
gevent host it runs where it is called; behind the thread bridge it runs on
the core hub, and the calling thread waits for it (bounded: a hub that does
not answer leaves the upstreams to the guardian, which kills them as the
process ends).

Hosts without a stop hook of their own (waitress, ``flask run``) stop the
server from ``atexit``; ``stop_on_sigterm`` turns their SIGTERM, which would
end the process at once, into a normal exit that runs it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from flask import Flask

from app.observe.stdout_writer import drain_stdout
from app.runtime.core_hub import CORE_KEY
from app.runtime.server import EXTENSION, Server

log = logging.getLogger("llama-swap")

CLOSE_MARGIN_S = 10.0  # beyond the grace and the slowest unloadTimeout, for a bridged close to finish


def close_app(app: Flask, grace: float = 0.0, hurry: bool = False) -> None:
    """Stop ``app``'s server: new requests 503, ``grace`` seconds for those in, then every upstream. Idempotent."""
    server: Server | None = app.extensions.get(EXTENSION)
    if server is None:
        return
    core = app.extensions.get(CORE_KEY)
    if core is None or core.here:
        _close(server, grace, hurry)
    else:
        bound = grace + server.config.slowest_unload() + CLOSE_MARGIN_S
        try:
            core.call(_close, server, grace, hurry, timeout=bound)
        except TimeoutError:  # the logs go through the hub that does not answer: straight to stderr
            print(f"llama-swap: the server did not stop within {bound:.0f}s; its upstreams are killed as the "
                  "process ends", file=sys.stderr, flush=True)
    drain_stdout()  # the last lines, before the interpreter's exit stops the writer's thread


def _close(server: Server, grace: float, hurry: bool) -> None:
    server.observatory.close()  # live feeds and log streams end now
    server.close(grace, hurry=hurry)
    server.observatory.flush()  # the activity of the streams that close() just ended


def stop_on_sigterm() -> None:
    """Make SIGTERM a normal exit (``atexit`` runs) where the host leaves it at its default (the process dies).

    Only from the main thread, and never under uWSGI, whose workers handle
    their signals themselves.
    """
    if threading.current_thread() is not threading.main_thread() or "uwsgi" in sys.modules:
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def exit_normally(signum: int, frame: Any) -> None:
        log.info("SIGTERM: stopping")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_normally)
