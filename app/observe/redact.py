"""Which headers are secrets, and the header map the watchers show with those secrets masked.

llama-swap masks ``Authorization``, ``Proxy-Authorization``, ``Cookie``,
``Set-Cookie`` and ``x-api-key`` wherever it shows headers (in-flight rows,
captures); the peer key header the proxy adds on its way to a peer is one
more (``X-Api-Key`` is already covered).
"""

from __future__ import annotations

from typing import Iterable

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})


def redacted_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The first value of each header, secrets masked (llama-swap's ``map<string,string>``)."""
    shown: dict[str, str] = {}
    for name, value in headers:
        if name not in shown:
            shown[name] = REDACTED if name.lower() in SECRET_HEADERS else value
    return shown
