"""Running blocking work (disk, a driver call) off the gevent hub: the calling greenlet waits, the others run."""

from __future__ import annotations

from typing import Callable, TypeVar

import gevent

T = TypeVar("T")


def in_threadpool(work: Callable[[], T]) -> T:
    """Run ``work`` on gevent's threadpool; the calling greenlet waits, the hub does not."""
    return gevent.get_hub().threadpool.apply(work)
