"""The core's own gevent hub in a thread of its own, for hosts whose requests run in OS threads.

In a threaded or sync WSGI host (waitress, ``flask run``, gunicorn's sync and
gthread workers, uWSGI with threads, mod_wsgi) nothing is monkey-patched, and
the thread that imported the app never runs gevent again. The server's parts
(the router loop, the process owners, the relay of each request) are greenlets,
so they get a hub that always runs: a daemon thread, ``llama-swap-core``,
started once per process, whose only job is to run its hub for as long as the
process lives. Upstreams are started from it too, which matters: the kernel's
parent-death signal is tied to the thread that started a child, and this one
lives as long as the process.

Other threads never touch its gevent objects. They hand it work with
``spawn`` (fire and forget) or ``call`` (wait for the result), both through
the loop's thread-safe callback; code already on the hub runs directly.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, TypeVar

import gevent

T = TypeVar("T")

CORE_KEY = "llama_swap.core"  # app.extensions: the CoreHub the app runs on, behind the thread bridge
THREAD_NAME = "llama-swap-core"
KEEPALIVE_S = 3600.0  # the hub's loop needs a live watcher to keep running while no request is in


class CoreHub:
    """A gevent hub running for ever in a daemon thread; other threads hand it work."""

    def __init__(self, name: str = THREAD_NAME):
        started = threading.Event()
        self._loop: Any = None
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()
        if self._loop is None:
            raise RuntimeError("the core hub's thread failed to start its gevent hub")

    def _run(self, started: threading.Event) -> None:
        try:
            self._loop = gevent.get_hub().loop
        finally:
            started.set()  # the starting thread waits for this, whatever happens here
        while True:
            gevent.sleep(KEEPALIVE_S)

    @property
    def here(self) -> bool:
        """Whether the calling code runs on this hub's thread."""
        return threading.current_thread() is self._thread

    def spawn(self, work: Callable[..., Any], *args: Any) -> None:
        """Run ``work(*args)`` in a new greenlet on the hub; from any thread, at once."""
        if self.here:
            gevent.spawn(work, *args)
        else:
            self._loop.run_callback_threadsafe(gevent.spawn, work, *args)

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the hub itself (it must not block): the way to set a gevent event from outside."""
        if self.here:
            callback(*args)
        else:
            self._loop.run_callback_threadsafe(callback, *args)

    def call(self, work: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``work(*args)`` run in a greenlet on the hub; the calling thread waits for its result (or exception).

        ``TimeoutError`` if it has not finished in ``timeout`` seconds (it goes on running).
        """
        if self.here:
            return work(*args)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(work(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
                done.set_exception(exc)

        self.spawn(run)
        return done.result(timeout)


_core: CoreHub | None = None
_core_lock = threading.Lock()


def core_hub() -> CoreHub:
    """This process's core hub, started on first use."""
    global _core
    with _core_lock:
        if _core is None:
            _core = CoreHub()
        return _core
