"""What the app itself publishes on the event bus, beside the core's ``scheduler.events``.

Plain frozen records, as the core's are: the watchers (log monitors, the
activity recorder, the in-flight tracker, the runtime) publish them, and the
live feed (``/api/events``) and the metrics read them from the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class LogWritten:
    """Text written to a log monitor: ``source`` is ``proxy`` or ``upstream``; ``model`` the writer, if one."""

    source: str
    text: str
    model: str | None = None


@dataclass(frozen=True)
class ActivityRecorded:
    """A metered request ended and its activity record was stored under ``id``; its tokens (−1: unknown).

    ``entry`` is the record as ``/api/metrics`` lists it (llama-swap's
    ``ActivityLogEntry``), for the feed's ``metrics`` message.
    """

    id: int
    model: str
    input_tokens: int = -1
    output_tokens: int = -1
    entry: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class InflightChanged:
    """The in-flight table changed: ``operation`` is ``snapshot``, ``upsert`` or ``remove`` (llama-swap's shape).

    ``payload`` is the message's JSON object as llama-swap sends it
    (``requests`` for a snapshot, ``request`` for an upsert, ``id`` for a removal).
    """

    operation: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class TimelineChanged:
    """The swap timeline kept an entry: ``kind`` is ``state``, ``swap`` or ``queue``; ``entry`` as ``/api/timeline`` gives it."""

    kind: str
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class ProfileChanged:
    """``PUT /api/profiles/active`` switched the active profile (None: none)."""

    active: str | None


@dataclass(frozen=True)
class ConfigReloaded:
    """A new config is serving; the model list may have changed, and ``active_profile`` is the new server's."""

    models: tuple[str, ...]
    active_profile: str | None = None
