"""Which headers are secrets, and the header map the watchers show with those secrets masked.

llama-swap masks ``Authorization``, ``Proxy-Authorization``, ``Cookie``,
``Set-Cookie`` and ``x-api-key`` wherever it shows headers (in-flight rows,
captures); the peer key header the proxy adds on its way to a peer is one
more (``X-Api-Key`` is already covered). The credentials the API-key check
took out of a request before it went on (``STRIPPED_CREDENTIALS``) are shown
too, masked: a reader sees the client did send one.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from app.observe.exchange import environ_header_name

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
# environ: the credential headers (environ keys) the API-key check took out before the request went on
STRIPPED_CREDENTIALS = "llama_swap.stripped_credentials"


def request_header_list(headers: list[tuple[str, str]], environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """The client's headers, with the credentials the API-key check took out back in, redacted."""
    taken = environ.get(STRIPPED_CREDENTIALS) or ()
    return headers + [(environ_header_name(key), REDACTED) for key in taken]  # type: ignore[union-attr]


def redacted_headers(headers: Iterable[tuple[str, str]], leave_out: frozenset[str] = frozenset()) -> dict[str, str]:
    """The first value of each header, secrets masked (llama-swap's ``map<string,string>``); names in
    ``leave_out`` (lower case) are not shown."""
    shown: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in leave_out or name in shown:
            continue
        shown[name] = REDACTED if lower in SECRET_HEADERS else value
    return shown
