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

from gunicorn import sock
from gunicorn.arbiter import Arbiter as _Arbiter

from app.quick_exit import exit_now

WAKE_AT_LEAST_EVERY = 0.1  # seconds: the graceful deadline is checked this often even with no signal


class Arbiter(_Arbiter):
    """gunicorn's arbiter with a stop that ends when the worker has (see the module's docstring)."""

    def stop(self, graceful: bool = True) -> None:
        if graceful and self.WORKERS:
            # As gunicorn's own stop, the listeners close first: a new connection is refused at once
            # (once the worker's copy closes too, within its 1 s tick), never queued for nobody.
            unlink = (self.reexec_pid == self.master_pid == 0 and not self.systemd and not self.cfg.reuse_port)
            sock.close_sockets(self.LISTENERS, unlink)
            self.LISTENERS = []
            self.kill_workers(signal.SIGTERM)
            if not self._wait_for_workers(time.monotonic() + self.cfg.graceful_timeout) and self.WORKERS:
                self.kill_workers(signal.SIGKILL)  # its graceful_timeout is spent: not a second one below
        super().stop(graceful)  # finds no worker left, unless a quick shutdown was asked for meanwhile

    def _wait_for_workers(self, deadline: float) -> bool:
        """Reap workers as they exit, until none is left or ``deadline``; True if SIGINT/SIGQUIT cut it short."""
        while self.WORKERS:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                sig = self.SIG_QUEUE.get(timeout=min(left, WAKE_AT_LEAST_EVERY))
            except queue.Empty:
                sig = None
            if sig in (signal.SIGINT, signal.SIGQUIT):
                self.SIG_QUEUE.put_nowait(sig)  # for gunicorn's own stop: its quick shutdown
                return True
            if sig == signal.SIGHUP:  # a reload asked for while stopping: nothing left to reload
                continue
            self.reap_workers()
        return False

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)
        except SystemExit as done:
            exit_now(done.code)
