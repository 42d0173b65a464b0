"""The event bus: what the core publishes, fanned out to subscribers that each read at their own pace.

Publishing never blocks and never fails: each subscriber has a bounded
queue, and when a slow (or stuck) subscriber's queue is full the oldest
event is dropped and counted (``Subscription.dropped``), so neither the
router, a process owner nor another subscriber ever waits for it. Events are
whatever the publishers hand over (``scheduler.events`` records today); each
is stamped with a sequence number (``Published.seq``), increasing for the
life of the bus, so a reader can tell what it missed.

The bus outlives config reloads: the runtime builds it once per app and
hands it to every server built from a config.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass

from typing import Callable

from gevent.event import Event

log = logging.getLogger("llama-swap.proxy")

DEFAULT_QUEUE = 1024


@dataclass(frozen=True)
class Published:
    seq: int
    event: object


class Subscription:
    """One subscriber's queue: ``get`` the next event, ``close`` when done.

    ``kinds``: only events of these types are queued (the others cost the
    subscriber nothing, not even a wake-up); None: every event.
    """

    def __init__(self, bus: "EventBus", maxsize: int, kinds: tuple[type, ...] | None = None):
        self._bus = bus
        self.kinds = kinds
        self._items: deque[Published] = deque(maxlen=maxsize)
        self._arrived = Event()
        self.dropped = 0  # events lost because this subscriber fell behind
        self.closed = False

    def offer(self, item: Published) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1  # the deque drops the oldest as this one goes in
        self._items.append(item)
        self._arrived.set()

    def get(self, timeout: float | None = None) -> Published | None:
        """The next event; None when ``timeout`` passes first or the subscription is closed."""
        if not self._items and not self.closed:
            self._arrived.clear()
            self._arrived.wait(timeout)
        return self._items.popleft() if self._items else None

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self.closed = True
        self._bus.unsubscribe(self)
        self._arrived.set()


def consume(subscription: Subscription, handle: Callable[[object], None], who: str) -> None:
    """Hand each event of ``subscription`` to ``handle`` until it is closed (run it in its own greenlet).

    A failure on one event is logged (naming ``who``) and the next event handled.
    """
    while not subscription.closed:
        item = subscription.get()
        if item is None:
            continue
        try:
            handle(item.event)
        except Exception:
            log.exception("%s: failed on %r", who, item.event)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._seq = itertools.count(1)

    def publish(self, event: object) -> None:
        item = Published(next(self._seq), event)
        for subscriber in self._subscribers:
            if subscriber.kinds is None or isinstance(event, subscriber.kinds):
                subscriber.offer(item)

    def subscribe(self, maxsize: int = DEFAULT_QUEUE, kinds: tuple[type, ...] | None = None) -> Subscription:
        subscription = Subscription(self, maxsize, kinds)
        self._subscribers = [*self._subscribers, subscription]
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers = [s for s in self._subscribers if s is not subscription]

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
