"""The in-flight table: every proxied request from the moment it is routed until it ends, and cancelling one.

An exchange observer. Each request is a row in llama-swap's
``InflightRequestEntry`` shape (``id``, ``timestamp``, ``model``,
``req_path``, ``method``, ``req_headers`` (first value, secrets redacted),
``remote_ip``, ``resp_headers``, ``resp_bytes``, ``elapsed_ms``,
``metadata``), and its changes are published on the bus as
``InflightChanged``, as llama-swap's tracker does (each with its older
``total`` too: how many requests are shown, which its older web UI reads), with one difference:
a request is shown once it has been in flight for ``PROGRESS_EVERY``
(an ``upsert``), then upserted when its response headers arrive and at
most every ``PROGRESS_EVERY`` while its body flows, and removed when it
ends. A request that ends sooner (most non-streamed ones) is never
published: a row that would blink in and out of a dashboard costs the
feed and its clients nothing. ``snapshot()`` lists every request.

None of it costs anything per chunk: one ticker greenlet, alive while
requests come, every ``PROGRESS_EVERY`` seconds shows the rows old enough
and republishes those whose byte count moved.

``cancel(id)`` ends a request on an operator's word through its exchange
(``Exchange.cancel``): a queued request leaves the router's queue, a
streaming one has its upstream connection cut and its lease released.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import gevent

from app.observe.events import InflightChanged
from app.observe.exchange import Exchange, ExchangeObserver
from app.observe.redact import redacted_headers, request_header_list
from app.observe.timestamps import rfc3339

log = logging.getLogger("llama-swap.proxy")

PROGRESS_EVERY = 0.25  # seconds in flight before a request is shown, then between its progress upserts
TICKER_LINGER = 2.0  # seconds the ticker stays up with nothing in flight (a steady load never respawns it)


def client_ip(exchange: Exchange) -> str:
    """The first ``X-Forwarded-For`` entry, else ``X-Real-IP``, else the socket's address (as llama-swap)."""
    environ = exchange.environ or {}
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")[0].strip()
    return forwarded or str(environ.get("HTTP_X_REAL_IP", "")).strip() or exchange.remote_addr


@dataclass(eq=False)
class _Row:
    exchange: Exchange
    request: dict[str, Any] | None = None  # the entry's fixed part, built when first shown (most never are)
    published: bool = False  # shown in the feed (upserted at least once)
    published_bytes: int = 0


class InflightTracker(ExchangeObserver):
    """Owns the in-flight table; publishes its changes with ``publish`` (the event bus's)."""

    def __init__(self, publish: Callable[[object], None], clock: Callable[[], float] | None = None):
        self._publish = publish
        self._now = clock or time.monotonic
        self._rows: dict[str, _Row] = {}
        self._shown = 0  # rows published: what the feed's clients list, llama-swap's older "total"
        self._ticker: gevent.Greenlet | None = None
        self._last_start = 0.0

    # ----------------------------------------------------------------- reading

    def snapshot(self) -> list[dict[str, Any]]:
        """Every request in flight, oldest first, as llama-swap lists them; each is published from now on,
        so that whoever got the snapshot also gets its ``remove``."""
        entries = []
        for row in self._rows.values():
            self._shown += not row.published
            row.published = True
            row.published_bytes = row.exchange.response_bytes
            entries.append(self._entry(row))
        return entries

    def __len__(self) -> int:
        return len(self._rows)

    def cancel(self, request_id: str) -> bool:
        """End the request ``request_id``; False when no such request is in flight."""
        row = self._rows.get(request_id)
        if row is None:
            return False
        log.info("%s: request %s %s cancelled by an operator (in flight %.2fs)", row.exchange.model,
                 row.exchange.method, row.exchange.path, self._now() - row.exchange.began)
        return row.exchange.cancel()

    # ----------------------------------------------------------------- the exchange's steps

    def on_start(self, exchange: Exchange) -> None:
        self._rows[str(exchange.id)] = _Row(exchange)
        self._last_start = self._now()
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick)

    def on_response(self, exchange: Exchange) -> None:
        row = self._rows.get(str(exchange.id))
        if row is not None and row.published:
            self._upsert(row)

    def on_end(self, exchange: Exchange) -> None:
        row = self._rows.pop(str(exchange.id), None)
        if row is not None and row.published:
            self._shown -= 1
            self._publish(InflightChanged("remove", {"id": str(exchange.id), "total": self._shown}))

    # ----------------------------------------------------------------- publishing

    def _entry(self, row: _Row) -> dict[str, Any]:
        exchange = row.exchange
        if row.request is None:
            row.request = {
                "id": str(exchange.id), "timestamp": rfc3339(exchange.started_at), "model": exchange.model,
                "req_path": exchange.path, "method": exchange.method,
                "req_headers": redacted_headers(request_header_list(exchange.request_headers(), exchange.environ or {})),
                "remote_ip": client_ip(exchange)}
        entry = dict(row.request)
        entry["resp_headers"] = redacted_headers(exchange.response_headers)
        entry["resp_bytes"] = exchange.response_bytes
        entry["elapsed_ms"] = int((self._now() - exchange.began) * 1000)
        if exchange.metadata:
            entry["metadata"] = dict(exchange.metadata)
        return entry

    def _upsert(self, row: _Row) -> None:
        self._shown += not row.published
        row.published = True
        row.published_bytes = row.exchange.response_bytes
        self._publish(InflightChanged("upsert", {"request": self._entry(row), "total": self._shown}))

    def _tick(self) -> None:
        try:
            while self._rows or self._now() - self._last_start < TICKER_LINGER:
                gevent.sleep(PROGRESS_EVERY)
                now = self._now()
                for row in list(self._rows.values()):
                    if row.exchange.ended:
                        continue
                    if not row.published:
                        if now - row.exchange.began >= PROGRESS_EVERY:
                            self._upsert(row)
                    elif row.exchange.response_bytes != row.published_bytes:
                        self._upsert(row)
        finally:
            self._ticker = None

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.kill(block=False)
            self._ticker = None
