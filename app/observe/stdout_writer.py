"""The process's stdout as the logs see it: a bounded queue on the hub, drained by an OS thread of its own.

A write to stdout blocks while its reader is slow or gone (a full pipe
nobody reads, a stopped terminal, a journald under load). Made on the gevent
hub, that write would stall every request and stream of the worker. Here a
write never blocks: ``StdoutWriter.write`` appends to a queue of at most
``MAX_QUEUED_BYTES`` and returns; a thread (a real one, not a greenlet: it
is the one that may block) writes the queue to the file descriptor. When the
queue is full the text is dropped and counted, and once there is room again
a line ``— N bytes dropped (stdout too slow) —`` marks the gap, as a slow
live log reader's stream does (``app.observe.logs``).

One producer (the hub) and one consumer (the thread), no lock shared with
the hub: the queue is a ``deque`` (appends and pops are atomic), the byte
counts are each written by one side only, and the thread sleeps on a lock
the hub releases at most once per wake-up, so the hub never waits on it.
The thread writes with ``os.write`` on the descriptor, bypassing
``sys.stdout``'s buffer and its lock: a writer stuck in the kernel cannot
make a ``sys.stdout.flush()`` on the hub (``app.quick_exit``) wait too.
``drain`` gives the queue a bounded time to go out before the process ends.

The one producer is the hub that owns the logs (``app.observe.logs`` hands
it the lines other threads log); ``write`` is not safe to call from two
threads at once.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from typing import Callable

import gevent
from gevent.monkey import get_original

MAX_QUEUED_BYTES = 4 * 1024 * 1024

_start_thread, _allocate_lock = get_original("_thread", ["start_new_thread", "allocate_lock"])
_sleep = get_original("time", "sleep")


def dropped_marker(count: int) -> bytes:
    return f"— {count} bytes dropped (stdout too slow) —\n".encode()


def stdout_fd() -> int:
    return sys.stdout.fileno()


class StdoutWriter:
    """Queues text for a file descriptor (stdout unless told); ``write`` never blocks the caller."""

    def __init__(self, fd: Callable[[], int] = stdout_fd, max_bytes: int = MAX_QUEUED_BYTES):
        self._fd = fd
        self._max_bytes = max_bytes
        self._queue: deque[bytes] = deque()
        self._queued_in = 0  # bytes ever queued: written by the producer only
        self._written = 0  # bytes ever taken off the queue: written by the thread only
        self._dropped = 0  # bytes dropped since the last marker
        self.dropped_total = 0
        self._wake = _allocate_lock()
        self._signalled = True  # the lock starts held: the thread's first acquire waits for a write
        self._owner_pid = 0  # the thread belongs to the process that started it (gunicorn forks)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the thread; dropped (and counted) when the queue is full."""
        if self._queued_in - self._written + len(data) > self._max_bytes:
            self._dropped += len(data)
            self.dropped_total += len(data)
            return
        if self._dropped:
            marker, self._dropped = dropped_marker(self._dropped), 0
            self._put(marker)
        self._put(data)
        self._ensure_thread()
        if not self._signalled:
            self._signalled = True
            self._wake.release()

    def pending(self) -> int:
        """Bytes queued and not yet handed to the descriptor."""
        return self._queued_in - self._written

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to go out (the process is about to end)."""
        deadline = time.monotonic() + timeout
        while self.pending() and self._owner_pid == os.getpid():
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.005)  # patched or not: other greenlets of this hub may still log meanwhile
        return True

    def _put(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued_in += len(data)

    def _ensure_thread(self) -> None:
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._wake = _allocate_lock()
            self._wake.acquire()  # held: the thread waits on it until ``write`` releases it
            self._signalled = False
            _start_thread(self._run, ())

    def _run(self) -> None:
        while True:
            self._wake.acquire()
            self._signalled = False
            while self._queue:
                data = self._queue.popleft()
                self._write_all(data)
                self._written += len(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd(), view):]
            except InterruptedError:
                continue
            except BlockingIOError:  # a descriptor someone made non-blocking: wait here, not on the hub
                _sleep(0.01)
            except (OSError, ValueError):  # stdout closed or gone: the histories still have it
                return


_shared: StdoutWriter | None = None


def shared_stdout() -> StdoutWriter:
    """The one writer of this process's stdout."""
    global _shared
    if _shared is None:
        _shared = StdoutWriter()
    return _shared


def drain_stdout(timeout: float = 1.0) -> None:
    """Let what the logs queued for stdout go out, for at most ``timeout`` seconds (at exit)."""
    if _shared is not None:
        _shared.drain(timeout)
