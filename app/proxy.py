"""Sends one granted request to its upstream and streams the answer back.

One pooled ``requests.Session`` per upstream (keep-alive to the model
server). Bodies flow chunk by chunk (``iter_content(None)`` yields each
upstream chunk as it arrives) and are never buffered. The lease is released
exactly once, when the body is done, the upstream breaks, or the client hangs
up, whichever comes first: that is what lets a model be evicted again.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import requests
from flask import Response

from app.batching import batched_chunks
from app.errors import UpstreamUnreachable
from app.hangup import HangupWatch
from scheduler.httpclient import upstream_session
from scheduler.router import Lease

log = logging.getLogger("llama-swap.proxy")

# Never forwarded either way: they describe one connection, not the message.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
# Also not forwarded upstream: requests sets Host and Content-Length itself, and
# asking for identity encoding keeps the body byte-for-byte what the upstream sent.
NOT_FORWARDED_UP = HOP_BY_HOP | {"host", "content-length", "accept-encoding"}

CONNECT_TIMEOUT = 30.0
BEGAN_KEY = "llama_swap.began"  # environ key: monotonic time the request arrived


class UpstreamSessions:
    """One keep-alive connection pool per upstream base URL."""

    def __init__(self, pool_size: int = 64):
        self._pool_size = pool_size
        self._sessions: dict[str, requests.Session] = {}

    def for_url(self, base_url: str) -> requests.Session:
        session = self._sessions.get(base_url)
        if session is None:
            session = self._sessions[base_url] = upstream_session(self._pool_size)
        return session

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def upstream_headers(environ: dict) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key == "CONTENT_TYPE":
            name = "Content-Type"
        else:
            continue
        if name.lower() not in NOT_FORWARDED_UP and value:
            headers[name] = value
    return headers


def forward(lease: Lease, sessions: UpstreamSessions, environ: dict, method: str,
            path: str, body: bytes | None) -> Response:
    """Proxy to the leased upstream; the returned response owns the lease."""
    url = lease.proxy_url + path
    try:
        upstream = sessions.for_url(lease.proxy_url).request(
            method, url, data=body, headers=upstream_headers(environ), stream=True,
            timeout=(CONNECT_TIMEOUT, None), allow_redirects=False)
    except requests.RequestException as exc:
        lease.release()
        log.warning("%s: upstream %s unreachable: %s", lease.model, lease.proxy_url, exc)
        raise UpstreamUnreachable(f"upstream for model {lease.model} unreachable: {exc}") from exc

    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if is_sse:
        headers.append(("X-Accel-Buffering", "no"))
    # A body of unknown length is a stream: watch for the client hanging up so
    # the upstream is closed (and the model freed) at once, not at the next chunk.
    watch = HangupWatch(environ, upstream.close) if "content-length" not in upstream.headers else None
    finished = False
    sent = 0

    def finish() -> None:
        nonlocal finished
        if not finished:
            finished = True
            if watch is not None:
                watch.stop()
            upstream.close()
            lease.release()
            began = environ.get(BEGAN_KEY)
            took = f" in {time.monotonic() - began:.3f}s" if began is not None else ""
            log.info("%s: %s %s %d, %d bytes%s", lease.model, method, path, upstream.status_code, sent, took)

    def body_chunks() -> Iterator[bytes]:
        nonlocal sent
        try:
            for chunk in batched_chunks(upstream):
                sent += len(chunk)
                yield chunk
        except Exception as exc:  # upstream died or was closed by a hang-up
            log.info("%s: stream from upstream ended early: %s", lease.model, exc)
        finally:
            finish()

    response = Response(body_chunks(), status=upstream.status_code, headers=headers,
                        direct_passthrough=True)
    response.call_on_close(finish)
    return response
