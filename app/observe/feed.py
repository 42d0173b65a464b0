"""The live feed behind ``/api/events``: bus events turned into llama-swap's messages, numbered, kept for replay.

One pump greenlet reads the event bus and turns each event into the
message llama-swap sends (``Message``: a type and its ``data``, a JSON
document): ``modelStatus`` (the whole model list, on a state change, a
reload or a profile switch), ``logData``, ``activity``, ``inflight``,
``profileChanged``; ``metrics`` (the new activity record itself, in a
list: what llama-swap sent before ``activity`` replaced it, and what its
older web UI still reads); and ours: ``timeline`` (an entry of the swap
timeline, ``app.observe.timeline``). Each message gets an id, ``<boot>-<seq>``: ``seq``
counts up for the life of the process, ``boot`` tells one process's ids
from another's, so a client that reconnects to a restarted server is not
mistaken for one that missed a few messages.

The last ``REPLAY`` messages are kept in one shared buffer, and that buffer
is every client's queue: a client (``Reader``) is only a cursor into it.
Publishing a message costs the same with one client or a thousand (append,
then one wake-up event for whoever waits), and a client that reconnects
with ``Last-Event-ID`` resumes from its id (``reader(after=...)``) when the
buffer still holds everything after it. A slow or stuck client never slows
the pump, the proxy or another client: when the buffer has moved past its
cursor, the messages it lost are counted (``Reader.take`` raises
``FellBehind``) and it must resync from the initial payload, as llama-swap's
UI does on every reconnect.

What the messages say about the model list comes from ``model_status``, a
callable the runtime supplies (it knows the config and the router; this
module knows neither).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterable

import gevent
from gevent.event import Event

from app.observe.bus import EventBus, Published
from app.observe.events import (ActivityRecorded, ConfigReloaded, InflightChanged, LogWritten, ProfileChanged,
                                TimelineChanged)
from scheduler.events import ModelStateChanged

log = logging.getLogger("llama-swap.proxy")

REPLAY = 4096  # messages kept: what a client may fall behind, or miss while reconnecting
PUMP_QUEUE = 16384  # the pump's own bus queue
LOG_TEXT_LIMIT = 16 * 1024  # characters of one log write in a logData message (the logs keep it whole)


@dataclass(frozen=True)
class Message:
    """One message; its encodings are built once, on first use, and shared by every client."""

    id: str
    type: str
    data: str  # a JSON document, as llama-swap double-encodes it in the envelope

    def envelope(self) -> str:
        return json.dumps({"type": self.type, "data": self.data}, separators=(",", ":"))

    @cached_property
    def sse(self) -> bytes:
        """The message as one SSE event: llama-swap's framing, with an ``id:`` line first."""
        return f"id:{self.id}\nevent:message\ndata:{self.envelope()}\n\n".encode()

    @cached_property
    def frame(self) -> str:
        """The message as one websocket text frame: ``{"id", "type", "data"}``, ``data`` the document itself."""
        return f'{{"id":"{self.id}","type":"{self.type}","data":{self.data}}}'


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class FellBehind(Exception):
    """The buffer moved past a reader's cursor: ``lost`` messages it will never get."""

    def __init__(self, lost: int):
        super().__init__(f"{lost} messages dropped")
        self.lost = lost


class Reader:
    """One client's cursor into the feed; ``close()`` when the client leaves (wakes a waiting ``wait``)."""

    def __init__(self, feed: "EventFeed", after: int):
        self._feed = feed
        self.cursor = after  # the seq of the last message this client has
        self.closed = False
        self._closed_event = Event()

    def take(self) -> list[Message]:
        """Every message after the cursor (none: an empty list), moving the cursor; ``FellBehind`` if some were lost."""
        messages = self._feed._after(self.cursor)
        if messages:
            self.cursor = int(messages[-1].id.rpartition("-")[2])
        return messages

    def wait(self, timeout: float | None) -> bool:
        """Until a message past the cursor is there (True), ``timeout`` passes or the reader closes (False)."""
        while not self.closed and self._feed._seq <= self.cursor:
            arrived = self._feed._arrived
            if gevent.wait([arrived, self._closed_event], timeout=timeout, count=1) == []:
                return False
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._feed._readers.discard(self)
            self._closed_event.set()


class EventFeed:
    """Numbers, keeps and serves the messages; owns the pump greenlet and the buffer."""

    def __init__(self, bus: EventBus, model_status: Callable[[], list[dict[str, Any]]] | None = None,
                 replay: int = REPLAY):
        self.model_status = model_status or (lambda: [])
        self.boot = f"{int(time.time()):x}{os.getpid() & 0xffff:04x}"
        self._seq = 0
        self._kept: deque[Message] = deque(maxlen=replay)
        self._arrived = Event()  # replaced by a fresh one at each message: set wakes the waiting readers
        self._readers: set[Reader] = set()
        # The newest activity id told in a ``metrics`` message: a client's initial ``metrics`` list holds
        # the records up to it, the messages after its cursor the rest (no record twice, none missed).
        self.activity_through = 0
        self._source = bus.subscribe(PUMP_QUEUE, kinds=(LogWritten, InflightChanged, ActivityRecorded,
                                                        ModelStateChanged, ConfigReloaded, ProfileChanged,
                                                        TimelineChanged))
        self._pump = gevent.spawn(self._run)

    # ----------------------------------------------------------------- for the views

    @property
    def last_id(self) -> str:
        """The id of the newest message (what a snapshot taken now is current to)."""
        return f"{self.boot}-{self._seq}"

    def message(self, type_: str, data: Any) -> Message:
        """A message outside the sequence (an initial payload's), carrying ``last_id``."""
        return Message(self.last_id, type_, dumps(data))

    def resumable(self, last_event_id: str) -> int | None:
        """The seq a client that last saw ``last_event_id`` can resume after; None when it must resync."""
        boot, _, seq_text = last_event_id.strip().rpartition("-")
        if boot != self.boot or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        oldest = self._seq - len(self._kept) + 1  # the first seq still kept
        return seq if oldest - 1 <= seq <= self._seq else None

    def reader(self, after: int | None = None) -> Reader:
        """A client's cursor: after ``after`` (a ``resumable`` seq), else from now on."""
        reader = Reader(self, self._seq if after is None else after)
        self._readers.add(reader)
        return reader

    def replay_after(self, last_event_id: str) -> list[Message] | None:
        """The kept messages after ``last_event_id``; None when they cannot all be given (resync)."""
        seq = self.resumable(last_event_id)
        return None if seq is None else self._after(seq)

    @property
    def subscribers(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        """At shutdown: the pump stops and every reader is closed (their streams end)."""
        self._source.close()
        self._pump.kill(block=False)
        for reader in list(self._readers):
            reader.close()

    # ----------------------------------------------------------------- the buffer

    def _after(self, seq: int) -> list[Message]:
        missed = self._seq - seq
        if missed <= 0:
            return []
        if missed > len(self._kept):
            raise FellBehind(missed - len(self._kept))
        return list(itertools.islice(self._kept, len(self._kept) - missed, None))

    # ----------------------------------------------------------------- the pump

    def _run(self) -> None:
        while not self._source.closed:
            item = self._source.get()
            if item is None:
                continue
            if self._source.dropped:
                log.warning("events feed: %d bus events dropped (the feed fell behind)", self._source.dropped)
                self._source.dropped = 0
            try:
                for type_, data in self._translate(item):
                    self._emit(type_, data)
            except Exception:
                log.exception("events feed: could not turn %r into a message", item.event)

    def _emit(self, type_: str, data: Any) -> None:
        self._seq += 1
        self._kept.append(Message(f"{self.boot}-{self._seq}", type_, dumps(data)))
        arrived, self._arrived = self._arrived, Event()
        arrived.set()

    def _translate(self, item: Published) -> Iterable[tuple[str, Any]]:
        event = item.event
        if isinstance(event, LogWritten):
            text = event.text
            if len(text) > LOG_TEXT_LIMIT:  # a whole prompt logged by a verbose upstream: the replay stays bounded
                text = text[:LOG_TEXT_LIMIT] + f"… ({len(event.text) - LOG_TEXT_LIMIT} characters cut)\n"
            yield "logData", ({"source": event.source, "data": text} if event.model is None
                              else {"source": event.source, "data": text, "model": event.model})
        elif isinstance(event, InflightChanged):
            yield "inflight", {"operation": event.operation, **event.payload}
        elif isinstance(event, ActivityRecorded):
            yield "activity", {"id": event.id, "model": event.model}
            if event.entry is not None:
                self.activity_through = max(self.activity_through, event.id)
                yield "metrics", [event.entry]
        elif isinstance(event, ModelStateChanged):
            yield "modelStatus", self.model_status()
        elif isinstance(event, ConfigReloaded):  # the new server starts with its own profile (none)
            yield "profileChanged", {"active": event.active_profile}
            yield "modelStatus", self.model_status()
        elif isinstance(event, TimelineChanged):
            yield "timeline", {"kind": event.kind, "entry": event.entry}
        elif isinstance(event, ProfileChanged):
            yield "profileChanged", {"active": event.active}
            yield "modelStatus", self.model_status()
