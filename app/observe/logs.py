"""The log monitors: each log's recent history, its live readers, and how the logs feed one another.

``LogHub`` owns every monitor, for the life of the app (config reloads keep
them): ``proxy`` (llama-swap's own lines), ``upstream`` (every child's
output), one per local model (created on demand, the first time a model
writes or a reader asks for it; its writes also go to ``upstream``), and
``mux``, the combined log that ``/logs`` serves and that goes to stdout.
``logToStdout`` decides what reaches the mux, as in llama-swap: ``proxy``
(the default) the proxy's lines, ``upstream`` the upstreams', ``both``
both, ``none`` nothing (no stdout; the mux's history stays empty, the other
monitors keep theirs). What goes to stdout is queued for a thread of its own
(``app.observe.stdout_writer``): a slow or stuck stdout never blocks the
hub, it loses lines instead, and says how many bytes.

Each monitor keeps its last ``HISTORY_BYTES`` bytes. A live reader
(``LogStream``) has a buffer of at most ``LIVE_BUFFER_BYTES``: a write never
waits for a reader; what does not fit is dropped, and the reader's stream
says so where the gap is, with a line ``— N bytes dropped —``.

Every write to ``proxy`` or ``upstream`` is published on the event bus as
``LogWritten`` (the ``/api/events`` feed's ``logData``), whatever
``logToStdout`` says.

Like the bus, this is written for the one gevent hub: no locks, and a
reader waits on a gevent ``Event``. Lines may be logged from other threads
though: a threaded WSGI host's own threads and its request threads (issue
13's bridge runs the server on a hub of its own thread), gevent's thread
pool (a config parsed off the hub). Such a write is handed to the hub that
built the ``LogHub`` (``run_callback_threadsafe``) and done there, in order:
no gevent object of that hub is ever touched from another thread, and the
stdout writer keeps its one producer. On the hub's own thread the check
costs one ``get_ident`` call. Once that hub's loop is destroyed, a write is
done where it is made; a hub whose thread ends must be destroyed, or lines
logged after its end are lost.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, TextIO

import gevent
from gevent.event import Event
from gevent.monkey import get_original

from app.observe.events import LogWritten
from app.observe.stdout_writer import StdoutWriter, shared_stdout

HISTORY_BYTES = 100 * 1024
LIVE_BUFFER_BYTES = 256 * 1024
_thread_ident = get_original("_thread", "get_ident")  # the OS thread's, patched or not (not a greenlet's)
MUX_SOURCES = {"proxy": (True, False), "upstream": (False, True), "both": (True, True), "none": (False, False)}


def dropped_line(count: int) -> bytes:
    return f"— {count} bytes dropped —\n".encode()


class History:
    """The last ``capacity`` bytes written: whole chunks, the oldest let go once the rest still fill it."""

    __slots__ = ("capacity", "_chunks", "_size")

    def __init__(self, capacity: int = HISTORY_BYTES):
        self.capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def append(self, data: bytes) -> None:
        if len(data) >= self.capacity:
            self._chunks.clear()
            data = data[-self.capacity:]
            self._size = 0
        self._chunks.append(data)
        self._size += len(data)
        # Keep the oldest chunk while the others alone are short of the capacity:
        # ``read`` cuts it, so the history is always the last ``capacity`` bytes.
        while self._size - len(self._chunks[0]) >= self.capacity:
            self._size -= len(self._chunks.popleft())

    def read(self) -> bytes:
        data = b"".join(self._chunks)
        return data[-self.capacity:] if len(data) > self.capacity else data


class LogStream:
    """One live reader of a monitor: ``get`` what was written since, ``close`` when done."""

    def __init__(self, monitor: "LogMonitor", max_bytes: int):
        self._monitor = monitor
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._dropped = 0  # bytes lost since the reader last took what was there
        self._arrived = Event()
        self.dropped_total = 0
        self.closed = False

    def offer(self, data: bytes) -> None:
        """Queue ``data``; never blocks. Once full, everything is dropped until the reader catches up."""
        if self._dropped or self._size + len(data) > self._max_bytes:
            self._dropped += len(data)
            self.dropped_total += len(data)
        else:
            self._chunks.append(data)
            self._size += len(data)
        self._arrived.set()

    def get(self, timeout: float | None = None) -> bytes | None:
        """All that arrived since the last ``get`` (the gap, if any, said at its place).

        None when ``timeout`` passes first or the stream is closed.
        """
        if not self._chunks and not self._dropped and not self.closed:
            self._arrived.clear()
            self._arrived.wait(timeout)
        if self.closed or not (self._chunks or self._dropped):
            return None
        if self._dropped:
            self._chunks.append(dropped_line(self._dropped))
        data = b"".join(self._chunks)
        self._chunks, self._size, self._dropped = [], 0, 0
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._monitor.unsubscribe(self)
            self._arrived.set()


class LogMonitor:
    """One log: its history and its live readers."""

    def __init__(self, name: str, capacity: int = HISTORY_BYTES):
        self.name = name
        self._history = History(capacity)
        self._streams: tuple[LogStream, ...] = ()
        self._closed = False

    def write(self, data: bytes) -> None:
        self._history.append(data)
        for stream in self._streams:
            stream.offer(data)

    def history(self) -> bytes:
        return self._history.read()

    def subscribe(self, max_bytes: int = LIVE_BUFFER_BYTES) -> LogStream:
        """A live reader from now on; already closed once the monitor is."""
        stream = LogStream(self, max_bytes)
        if self._closed:
            stream.close()
        else:
            self._streams = (*self._streams, stream)
        return stream

    def unsubscribe(self, stream: LogStream) -> None:
        self._streams = tuple(s for s in self._streams if s is not stream)

    @property
    def readers(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """End every live reader (shutdown); writes still go to the history."""
        self._closed = True
        for stream in self._streams:
            stream.close()


class LogHub:
    """Every log monitor of the app, and the one place that writes to them."""

    def __init__(self, publish: Callable[[object], None] | None = None, stdout: TextIO | None = None,
                 capacity: int = HISTORY_BYTES):
        self._publish = publish or (lambda event: None)
        # None: the process's stdout, through the queue its own thread drains; a stream (tests): written at once
        self._stdout: StdoutWriter | TextIO = stdout or shared_stdout()
        self._capacity = capacity
        self.proxy = LogMonitor("proxy", capacity)
        self.upstream = LogMonitor("upstream", capacity)
        self.mux = LogMonitor("mux", capacity)
        self._models: dict[str, LogMonitor] = {}
        self._proxy_to_mux, self._upstream_to_mux = MUX_SOURCES["proxy"]
        self._closed = False
        self._thread = _thread_ident()  # the hub's thread: writes happen there
        self._loop = gevent.get_hub().loop

    def configure(self, log_to_stdout: str) -> None:
        """What reaches the mux (and stdout): ``proxy``, ``upstream``, ``both`` or ``none``."""
        self._proxy_to_mux, self._upstream_to_mux = MUX_SOURCES.get(log_to_stdout, MUX_SOURCES["proxy"])

    def model(self, model_id: str) -> LogMonitor:
        """The model's own log, made the first time it is asked for."""
        monitor = self._models.get(model_id)
        if monitor is None:
            monitor = self._models[model_id] = LogMonitor(model_id, self._capacity)
            if self._closed:
                monitor.close()
        return monitor

    def write_proxy(self, text: str) -> None:
        """One or more whole proxy lines, line ends included; from any thread."""
        if _thread_ident() != self._thread and self._handed(self.write_proxy, text):
            return
        data = text.encode("utf-8", "replace")
        self.proxy.write(data)
        self._publish(LogWritten("proxy", text))
        if self._proxy_to_mux:
            self._to_mux(data, text)

    def write_upstream(self, model: str, text: str) -> None:
        """Output of ``model``'s process (line ends included): to its log, then the upstream log; from any thread."""
        if _thread_ident() != self._thread and self._handed(self.write_upstream, model, text):
            return
        data = text.encode("utf-8", "replace")
        self.model(model).write(data)
        self.upstream.write(data)
        self._publish(LogWritten("upstream", text, model))
        if self._upstream_to_mux:
            self._to_mux(data, text)

    def _handed(self, write: Callable[..., None], *args: str) -> bool:
        """Whether ``write(*args)`` was handed to the hub's thread; False once its loop is destroyed (the hub is
        gone, nothing is left to race with: the caller writes)."""
        try:
            self._loop.run_callback_threadsafe(write, *args)
        except ValueError:  # "operation on destroyed loop"
            return False
        return True

    def _to_mux(self, data: bytes, text: str) -> None:
        self.mux.write(data)
        stdout = self._stdout
        if isinstance(stdout, StdoutWriter):
            stdout.write(data)
            return
        try:
            stdout.write(text)
            stdout.flush()
        except (OSError, ValueError):  # stdout closed or gone: the histories still have it
            pass

    def close(self) -> None:
        """The app is shutting down: end every live reader, so no response waits for more log."""
        self._closed = True
        for monitor in (self.proxy, self.upstream, self.mux, *self._models.values()):
            monitor.close()
