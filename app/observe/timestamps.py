"""How the watchers write a moment: RFC 3339 in UTC with microseconds, as every JSON shape of ``/api`` carries it."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(when: datetime | float) -> str:
    """``when`` (an aware datetime, or unix seconds) as ``2026-05-01T12:00:00.123456Z``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
