"""The gunicorn master: gunicorn's arbiter, stopping as soon as its worker has.

gunicorn's stop polls its workers every 0.1 s and then tears the interpreter
down; with one worker that exits the moment its upstreams are stopped, that
polling and teardown were half of a restart's time. Here the master wakes on
the worker's exit (the SIGCHLD gunicorn queues) and leaves at once. A second
SIGINT or SIGQUIT during the wait still turns into gunicorn's quick shutdown.
"""

from __future__ import annotations

import queue
import signal
import time

from gunicorn.arbiter import Arbiter as _Arbiter

from app.quick_exit import exit_now

WAKE_AT_LEAST_EVERY = 0.1  # seconds: the graceful deadline is checked this often even with no signal


class Arbiter(_Arbiter):
    def stop(self, graceful: bool = True) -> None:
        if graceful and self.WORKERS:
            self.kill_workers(signal.SIGTERM)
            self._wait_for_workers(time.monotonic() + self.cfg.graceful_timeout)
        super().stop(graceful)  # closes the listeners; finds no worker left unless the wait was cut short

    def _wait_for_workers(self, deadline: float) -> None:
        while self.WORKERS:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                sig = self.SIG_QUEUE.get(timeout=min(left, WAKE_AT_LEAST_EVERY))
            except queue.Empty:
                sig = None
            if sig in (signal.SIGINT, signal.SIGQUIT):
                self.SIG_QUEUE.put_nowait(sig)  # for gunicorn's own stop: its quick shutdown
                return
            self.reap_workers()

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)
        except SystemExit as done:
            exit_now(done.code)
