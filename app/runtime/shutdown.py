"""Stopping the server from whatever thread a host stops in: its stop hook, atexit, or SIGTERM.

``close_app`` is the one way a host stops the app: the live feeds end, every
upstream stops (graceful, then forced), the activity is flushed. Under a
gevent host it runs where it is called; behind the thread bridge it runs on
the core hub, and the calling thread waits for it (bounded: a hub that does
not answer leaves the upstreams to the guardian, which kills them as the
process ends).

Hosts without a stop hook of their own reach it through ``stop_at_exit``:
the interpreter's ``atexit`` (waitress, ``flask run``, gunicorn without our
``gunicorn.conf.py``, a ``gevent.pywsgi`` script; uWSGI's threaded workers
only when no request is in flight: uWSGI skips every exit hook of a busy one)
and uWSGI's own ``uwsgi.atexit`` (its gevent loop calls only that one: uWSGI
skips Python's ``atexit`` in async mode). ``stop_on_sigterm`` turns a SIGTERM
that the host leaves at its default (the process would die at once, atexit
unrun) into a normal exit that runs it. ``end_feeds_on_graceful_stop`` serves
gunicorn's workers without our ``gunicorn.conf.py``: their SIGTERM waits for
the requests in flight, and the UI's event feed never ends by itself.
"""

from __future__ import annotations

import atexit
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


def stop_at_exit(app: Flask) -> None:
    """Stop ``app``'s server when the process ends: at the interpreter's exit and, under uWSGI, in its
    ``uwsgi.atexit`` hook too (kept: a hook already there still runs, after ours)."""
    atexit.register(close_app, app)
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return
    previous = getattr(uwsgi, "atexit", None)

    def at_uwsgi_exit() -> None:
        close_app(app)
        if previous is not None:
            previous()

    uwsgi.atexit = at_uwsgi_exit


def sigterm_at_default() -> bool:
    """Whether nothing handles or ignores SIGTERM: neither a Python handler nor one set outside Python's
    ``signal`` module (a gevent ``signal_handler``, a C server's), which only the kernel's view shows."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    try:
        with open("/proc/self/status") as file:
            return not caught_or_ignored(file.read(), signal.SIGTERM)
    except OSError:  # no /proc: Python's own view is all there is
        return True


def caught_or_ignored(status: str, signum: int) -> bool:
    """Whether ``/proc/<pid>/status`` text (``status``) says the process catches or ignores ``signum``."""
    bit = 1 << (signum - 1)
    for line in status.splitlines():
        name, _, mask = line.partition(":")
        if name in ("SigCgt", "SigIgn") and int(mask.strip(), 16) & bit:
            return True
    return False


def stop_on_sigterm(gevent_host: bool) -> None:
    """Make SIGTERM a normal exit (``atexit`` runs) where the host leaves it at its default (the process dies).

    In a gevent host (a ``gevent.pywsgi`` script) a gevent signal watcher
    throws ``SystemExit`` into the main greenlet, where the host's
    ``serve_forever`` waits: the server stops listening and the interpreter
    exits. Elsewhere (behind the bridge) a Python handler raises it in the
    main thread. Only from the main thread, and never under uWSGI, whose
    workers handle their signals themselves.
    """
    if threading.current_thread() is not threading.main_thread() or "uwsgi" in sys.modules:
        return
    if not sigterm_at_default():
        return
    if gevent_host:
        import gevent

        main = gevent.get_hub().parent  # the greenlet the hub returns to: the host's own

        def exit_the_host() -> None:
            log.info("SIGTERM: stopping")
            gevent.kill(main, SystemExit(0))

        gevent.signal_handler(signal.SIGTERM, exit_the_host)
        return

    def exit_normally(signum: int, frame: Any) -> None:
        log.info("SIGTERM: stopping")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_normally)


def end_feeds_on_graceful_stop(app: Flask) -> None:
    """In a gunicorn worker, end the live feeds (the UI's event feed, log streams) when SIGTERM begins
    gunicorn's graceful stop, which waits for every request in flight: a feed never ends by itself, so the
    master's ``--graceful-timeout`` would SIGKILL the worker, and the guardian every upstream, instead of
    the worker's exit stopping them. gunicorn's own handler still runs, first. (``gunicorn.conf.py``
    installs its own stop after this, for its gevent worker.)
    """
    if "gunicorn" not in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    graceful = signal.getsignal(signal.SIGTERM)
    if not callable(graceful):
        return

    def stop_gracefully(signum: int, frame: Any) -> None:
        graceful(signum, frame)
        end_live_feeds(app)

    signal.signal(signal.SIGTERM, stop_gracefully)


def end_live_feeds(app: Flask) -> None:
    """End ``app``'s live feeds and log streams now, without waiting (from a signal handler too)."""
    server: Server | None = app.extensions.get(EXTENSION)
    if server is None:
        return
    core = app.extensions.get(CORE_KEY)
    if core is None:
        import gevent

        gevent.spawn(server.observatory.close)
    else:
        core.spawn(server.observatory.close)
