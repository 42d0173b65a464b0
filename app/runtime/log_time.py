"""The timestamp in front of a proxy log line: llama-swap's ``logTimeFormat`` names, written as Go writes them.

The names are Go's ``time`` layout constants (``rfc3339``, ``kitchen``,
``stampmilli``, ...), in local time; English day and month names whatever
the locale. Go prints nanoseconds; Python's clock gives microseconds, so
the last three digits of a ``nano`` layout are zeros.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _zone(t: datetime) -> str:
    """Go's ``MST``: the zone's abbreviation, or its offset when it has none."""
    name = t.tzname() or ""
    return name if name.isalpha() else _offset(t)


def _offset(t: datetime, colon: bool = False) -> str:
    text = t.strftime("%z") or "+0000"
    return text[:3] + ":" + text[3:] if colon else text


def _rfc3339(t: datetime, fraction: bool) -> str:
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction and t.microsecond:
        stamp += f".{t.microsecond:06d}".rstrip("0")  # Go's .999999999 trims trailing zeros
    offset = _offset(t, colon=True)
    return stamp + ("Z" if offset == "+00:00" else offset)


def _stamp(t: datetime, digits: int = 0) -> str:
    text = f"{_MONTHS[t.month - 1]} {t.day:>2} {t:%H:%M:%S}"
    if digits:
        text += "." + f"{t.microsecond:06d}{'000'}"[:digits]
    return text


def _day(t: datetime) -> str:
    return _DAYS[t.weekday()]


def _month(t: datetime) -> str:
    return _MONTHS[t.month - 1]


LAYOUTS: dict[str, Callable[[datetime], str]] = {
    "ansic": lambda t: f"{_day(t)} {_month(t)} {t.day:>2} {t:%H:%M:%S} {t.year}",
    "unixdate": lambda t: f"{_day(t)} {_month(t)} {t.day:>2} {t:%H:%M:%S} {_zone(t)} {t.year}",
    "rubydate": lambda t: f"{_day(t)} {_month(t)} {t.day:02d} {t:%H:%M:%S} {_offset(t)} {t.year}",
    "rfc822": lambda t: f"{t.day:02d} {_month(t)} {t:%y %H:%M} {_zone(t)}",
    "rfc822z": lambda t: f"{t.day:02d} {_month(t)} {t:%y %H:%M} {_offset(t)}",
    "rfc850": lambda t: f"{_LONG_DAYS[t.weekday()]}, {t.day:02d}-{_month(t)}-{t:%y %H:%M:%S} {_zone(t)}",
    "rfc1123": lambda t: f"{_day(t)}, {t.day:02d} {_month(t)} {t.year} {t:%H:%M:%S} {_zone(t)}",
    "rfc1123z": lambda t: f"{_day(t)}, {t.day:02d} {_month(t)} {t.year} {t:%H:%M:%S} {_offset(t)}",
    "rfc3339": lambda t: _rfc3339(t, fraction=False),
    "rfc3339nano": lambda t: _rfc3339(t, fraction=True),
    "kitchen": lambda t: f"{(t.hour % 12) or 12}:{t.minute:02d}{'PM' if t.hour >= 12 else 'AM'}",
    "stamp": lambda t: _stamp(t),
    "stampmilli": lambda t: _stamp(t, 3),
    "stampmicro": lambda t: _stamp(t, 6),
    "stampnano": lambda t: _stamp(t, 9),
}


def time_formatter(name: str) -> Callable[[float], str] | None:
    """``logTimeFormat`` → a function of a Unix time giving the stamp; None for ``""`` (no stamp)."""
    layout = LAYOUTS.get(name.lower()) if name else None
    if layout is None:
        return None
    return lambda when: layout(datetime.fromtimestamp(when).astimezone())
