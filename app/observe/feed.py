"""The live feed behind ``/api/events``: bus events turned into llama-swap's messages, numbered, kept for replay.

One pump greenlet reads the event bus and turns each event into the
message llama-swap sends (``Message``: a type and its ``data``, a JSON
document): ``modelStatus`` (the whole model list, on a state change, a
reload or a profile switch), ``logData``, ``activity``, ``inflight``,
``profileChanged``. Each message gets an id, ``<boot>-<seq>``: ``seq``
counts up for the life of the process, ``boot`` tells one process's ids
from another's, so a client that reconnects to a restarted server is not
mistaken for one that missed a few messages.

The last ``REPLAY`` messages are kept: a client reconnecting with
``Last-Event-ID`` gets what it missed (``replay_after``); when that id is
older than the buffer or from another boot, it gets None and must resync
from the initial payload, as llama-swap's UI does on every reconnect.

Subscribers (``subscribe``) each get a bounded queue (the bus's
``Subscription``): a slow or stuck one loses its oldest messages, counted,
and never slows the pump, the proxy or another subscriber. The pump itself
reads the bus through a large queue of its own.

What the messages say about the model list comes from ``model_status``, a
callable the runtime supplies (it knows the config and the router; this
module knows neither).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gevent

from app.observe.bus import EventBus, Published, Subscription
from app.observe.events import ActivityRecorded, ConfigReloaded, InflightChanged, LogWritten, ProfileChanged
from scheduler.events import ModelStateChanged

log = logging.getLogger("llama-swap.proxy")

REPLAY = 4096  # messages kept for clients that reconnect
PUMP_QUEUE = 16384  # the pump's own bus queue
SUBSCRIBER_QUEUE = 1024  # messages one client may fall behind before its oldest are dropped


@dataclass(frozen=True)
class Message:
    id: str
    type: str
    data: str  # a JSON document, as llama-swap double-encodes it in the envelope

    def envelope(self) -> str:
        return json.dumps({"type": self.type, "data": self.data}, separators=(",", ":"))

    def sse(self) -> bytes:
        """The message as one SSE event: llama-swap's framing, with an ``id:`` line first."""
        return f"id:{self.id}\nevent:message\ndata:{self.envelope()}\n\n".encode()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class EventFeed:
    """Numbers, keeps and fans out the messages; owns the pump greenlet."""

    def __init__(self, bus: EventBus, model_status: Callable[[], list[dict[str, Any]]] | None = None,
                 replay: int = REPLAY):
        self.model_status = model_status or (lambda: [])
        self.boot = f"{int(time.time()):x}{os.getpid() & 0xffff:04x}"
        self._seq = 0
        self._kept: deque[Message] = deque(maxlen=replay)
        self._out = EventBus()
        self._source = bus.subscribe(PUMP_QUEUE)
        self._pump = gevent.spawn(self._run)

    # ----------------------------------------------------------------- for the views

    @property
    def last_id(self) -> str:
        """The id of the newest message (what a snapshot taken now is current to)."""
        return f"{self.boot}-{self._seq}"

    def message(self, type_: str, data: Any, *, id_: str | None = None) -> Message:
        """A message outside the sequence (an initial payload's), carrying ``id_`` (default: ``last_id``)."""
        return Message(id_ or self.last_id, type_, dumps(data))

    def subscribe(self) -> Subscription:
        """A client's queue of messages from now on; ``close()`` it when the client leaves."""
        return self._out.subscribe(SUBSCRIBER_QUEUE)

    def replay_after(self, last_event_id: str) -> list[Message] | None:
        """The kept messages after ``last_event_id``; None when they cannot all be given (resync)."""
        boot, _, seq_text = last_event_id.strip().rpartition("-")
        if boot != self.boot or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self._seq:
            return None
        missed = self._seq - seq
        if missed > len(self._kept):
            return None  # some were dropped from the buffer already
        return list(self._kept)[len(self._kept) - missed:] if missed else []

    @property
    def subscribers(self) -> int:
        return self._out.subscribers

    def close(self) -> None:
        self._source.close()
        self._pump.kill(block=False)

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
        message = Message(f"{self.boot}-{self._seq}", type_, dumps(data))
        self._kept.append(message)
        self._out.publish(message)

    def _translate(self, item: Published) -> Iterable[tuple[str, Any]]:
        event = item.event
        if isinstance(event, LogWritten):
            yield "logData", {"source": event.source, "data": event.text}
        elif isinstance(event, InflightChanged):
            yield "inflight", {"operation": event.operation, **event.payload}
        elif isinstance(event, ActivityRecorded):
            yield "activity", {"id": event.id}
        elif isinstance(event, ModelStateChanged | ConfigReloaded):
            yield "modelStatus", self.model_status()
        elif isinstance(event, ProfileChanged):
            yield "profileChanged", {"active": event.active}
            yield "modelStatus", self.model_status()
