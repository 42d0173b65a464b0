"""What the core tells the world as it happens: model state changes and swaps.

The router and the process owners hand these to the ``publish`` callable
they were built with (``app.observe.bus.EventBus.publish`` in the server,
a list's ``append`` in tests). They are plain frozen records: publishing
never blocks and never reaches back into the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from scheduler.state import ProcessState

Publish = Callable[[object], None]
# Who asked for a model, in the words of whoever asked (e.g. ``{"by": "request", "id": "12",
# "method": "POST", "path": "/v1/chat/completions"}``): the core carries it, never reads it.
Origin = Mapping[str, str]
# How a caller hands its origin over: asked only when a swap starts for it, so a request that finds its
# model ready (nearly all of them) never builds one.
OriginOf = Callable[[], Origin]


def publish_nothing(event: object) -> None:
    """The default ``publish``: nobody listens."""


@dataclass(frozen=True)
class ModelStateChanged:
    """One upstream process moved from ``previous`` to ``state`` (``pid`` of the child, if any)."""

    model: str
    previous: ProcessState
    state: ProcessState
    pid: int | None
    at: float  # the owner's clock


@dataclass(frozen=True)
class SwapBegan:
    """The router began swapping ``model`` in, stopping ``evict`` first, for the request ``cause`` (its origin)."""

    swap_id: int
    model: str
    evict: frozenset[str]
    at: float
    cause: Origin | None = None


@dataclass(frozen=True)
class SwapEnded:
    """The swap ``swap_id`` is over: ``error`` is None when ``model`` is ready."""

    swap_id: int
    model: str
    error: str | None
    seconds: float
    at: float
