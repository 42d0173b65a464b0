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
from typing import Iterable, Iterator, Mapping, Protocol

import requests
from flask import Response
from werkzeug.wsgi import ClosingIterator

from app.batching import batched_chunks
from app.config.model import Timeouts
from app.errors import UpstreamUnreachable
from app.hangup import HangupWatch
from scheduler.httpclient import upstream_session

log = logging.getLogger("llama-swap.proxy")

# Never forwarded either way: they describe one connection, not the message.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
# Also not forwarded upstream: requests sets Host and Content-Length itself, and
# asking for identity encoding keeps the body byte-for-byte what the upstream sent.
# "Expect: 100-continue" was answered by gunicorn already; requests sends the body
# without waiting, so passing it on would only earn an interim 100 from the upstream.
NOT_FORWARDED_UP = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "expect"}

CONNECT_TIMEOUT = 30.0
BEGAN_KEY = "llama_swap.began"  # environ key: monotonic time the request arrived


class Grant(Protocol):
    """The right to send one request upstream: where to, for which model (in logs), released once.

    A router ``Lease`` is one (the model stays loaded until it is released);
    so is ``app.peers.PeerGrant`` (the peer's in-flight count).
    """

    @property
    def proxy_url(self) -> str: ...

    @property
    def model(self) -> str: ...

    def release(self) -> None: ...


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


def request_timeouts(timeouts: Timeouts | None) -> tuple[float | None, float | None]:
    """A model's ``timeouts`` as requests' ``(connect, read)``; 0 means none.

    Go's ``responseHeader`` bounds only the wait for the response headers,
    while requests' read timeout bounds every wait between bytes. So it is
    given to requests for the headers and lifted (``_lift_read_timeout``)
    once they have arrived: a model that thinks for minutes between tokens
    is not cut off, exactly as in Go.
    """
    if timeouts is None:
        return CONNECT_TIMEOUT, None
    return timeouts.connect or None, timeouts.response_header or None


def _lift_read_timeout(upstream: requests.Response) -> None:
    sock = getattr(getattr(upstream.raw, "_connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(None)


def forward(lease: Grant, sessions: UpstreamSessions, environ: dict, method: str,
            path: str, body: bytes | Iterable[bytes] | None, *,
            timeouts: Timeouts | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """Proxy to the leased upstream; the returned response owns the lease.

    ``body`` may be a stream (anything requests sends as a streamed body):
    the ``/upstream`` passthrough hands the client's body over unread, and a
    multipart upload is sent as it is read from the client. ``timeouts`` are
    the model's (see ``request_timeouts``); without them, Go's defaults.
    ``headers`` replace the client's (``upstream_headers``) when given.
    """
    url = lease.proxy_url + path
    connect, header = request_timeouts(timeouts)
    try:
        upstream = sessions.for_url(lease.proxy_url).request(
            method, url, data=body, headers=upstream_headers(environ) if headers is None else headers,
            stream=True, timeout=(connect, header), allow_redirects=False)
    except requests.Timeout as exc:
        lease.release()
        log.warning("%s: upstream %s timed out: %s", lease.model, lease.proxy_url, exc)
        raise UpstreamUnreachable(f"upstream for model {lease.model} timed out: {exc}") from exc
    except requests.RequestException as exc:
        lease.release()
        log.warning("%s: upstream %s unreachable: %s", lease.model, lease.proxy_url, exc)
        raise UpstreamUnreachable(f"upstream for model {lease.model} unreachable: {exc}") from exc
    except BaseException:
        lease.release()  # e.g. the client went away while its upload was being relayed
        raise
    if header is not None:
        _lift_read_timeout(upstream)

    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if is_sse:  # set, not added: an upstream that is itself a proxy (a peer) sent one already
        headers = [(k, v) for k, v in headers if k.lower() != "x-accel-buffering"]
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

    # werkzeug hands a direct_passthrough body to the server as it is, so the
    # body itself must finish on close(): whether it ran to its end, stopped
    # at a failed write, or never started (a HEAD answer, a loading stream
    # that gives up before relaying it).
    return Response(ClosingIterator(body_chunks(), finish), status=upstream.status_code,
                    headers=headers, direct_passthrough=True)
