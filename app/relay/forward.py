"""Sends one granted request to its upstream and streams the answer back, telling its exchange as it goes.

Bodies flow chunk by chunk both ways and are never buffered: the request
body as the client sends it (a stream, when it was not read), the answer as
the upstream sends it (``batching``: what already arrived goes out in one
write). A streamed answer (no Content-Length: SSE, chunked) has its headers
sent the moment the upstream's arrive (with its first event when that came
with them), so a client sees the response start while the model is still
thinking, and each event the moment it comes. The grant is released exactly once, when the body is
done, the upstream breaks, or the client hangs up, whichever comes first:
that is what lets a model be evicted again. The exchange
(``app.observe.exchange``) hears the response, each chunk, and the end with
its outcome, on every one of those paths.

An answer cut short (the upstream died, closed early, was unloaded or
cancelled) must read as cut to the client, never as a clean end: the body
raises ``StreamBroken`` out to the WSGI server, which then drops the
connection without the chunked body's terminating chunk (or short of its
Content-Length), as Go's reverse proxy does with ``http.ErrAbortHandler``.
It is a ``ConnectionResetError`` so that gunicorn closes the socket quietly
(the relay has logged the cause already).
"""

from __future__ import annotations

import errno
import functools
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import gevent
import requests
from flask import Response

from app.config.model import Timeouts
from app.errors import UpstreamUnreachable
from app.observe.exchange import Exchange, Outcome, environ_header_name
from app.relay.batching import batched_chunks
from app.relay.grants import Grant
from app.relay.hangup import HangupWatch
from app.relay.transport import UpstreamTransport, abort, chunk_waiting, lift_read_timeout
from scheduler.errors import ClientGone

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
WATCH_AFTER = 0.02  # seconds into a stream before its client's socket is watched for a hang-up


class StreamBroken(ConnectionResetError):
    """Raised out of a response body that was cut short: the WSGI server must drop the connection."""

    def __init__(self, message: str):
        super().__init__(errno.ECONNRESET, message)
        self.message = message


@dataclass(frozen=True)
class Outgoing:
    """What goes upstream: ``path`` (with its query) is appended to the grant's ``proxy_url``."""

    method: str
    path: str
    body: bytes | Iterable[bytes] | None
    headers: Mapping[str, str]
    timeouts: Timeouts | None = None


def upstream_headers(environ: dict) -> dict[str, str]:
    """The client's headers, as they may go upstream."""
    headers = {}
    for key, value in environ.items():
        if value and (key.startswith("HTTP_") or key == "CONTENT_TYPE"):
            name = _header_name(key)
            if name is not None:
                headers[name] = value
    return headers


@functools.lru_cache(maxsize=256)
def _header_name(environ_key: str) -> str | None:
    """``HTTP_X_API_KEY`` → ``X-Api-Key``; None for a header that is not forwarded upstream."""
    name = environ_header_name(environ_key)
    return None if name.lower() in NOT_FORWARDED_UP else name


def request_timeouts(timeouts: Timeouts | None) -> tuple[float | None, float | None]:
    """A model's ``timeouts`` as requests' ``(connect, read)``; 0 means none.

    Go's ``responseHeader`` bounds only the wait for the response headers,
    while requests' read timeout bounds every wait between bytes. So it is
    given to requests for the headers and lifted (``lift_read_timeout``)
    once they have arrived: a model that thinks for minutes between tokens
    is not cut off, exactly as in Go.
    """
    if timeouts is None:
        return CONNECT_TIMEOUT, None
    return timeouts.connect or None, timeouts.response_header or None


def forward(grant: Grant, outgoing: Outgoing, exchange: Exchange, transport: UpstreamTransport,
            environ: dict) -> Response:
    """Proxy to the granted upstream; the returned response owns the grant and ends the exchange."""
    exchange.granted(grant.queued, grant.loading)
    # A cancel or a hang-up while the upstream has not answered yet (for a non-streamed answer, the
    # whole generation; for any, the prompt's processing) interrupts the wait: the connection is
    # dropped, the grant released below. The watch then follows the answer's body (``_Relay``).
    waiting = gevent.getcurrent()

    def interrupt(why: str) -> None:
        gevent.kill(waiting, ClientGone(f"{why} while model {grant.model} was answering"))  # raised in its wait

    exchange.set_canceller(lambda: interrupt("request cancelled"))
    watch = HangupWatch(environ, lambda: interrupt("client went away"), after=WATCH_AFTER)
    connect, header = request_timeouts(outgoing.timeouts)
    try:
        upstream = transport.send(outgoing.method, grant.proxy_url, outgoing.path, outgoing.headers,
                                  outgoing.body, (connect, header))
    except BaseException as exc:
        watch.stop()
        error = _refusal(exc, grant, exchange)
        if error is exc:
            raise
        raise error from exc
    exchange.set_canceller(None)  # until the relay below takes over
    if header is not None:
        lift_read_timeout(upstream)

    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        # set, not added: an upstream that is itself a proxy (a peer) sent one already
        headers = [(k, v) for k, v in headers if k.lower() != "x-accel-buffering"]
        headers.append(("X-Accel-Buffering", "no"))
    exchange.responded(upstream.status_code, headers)
    streamed = "content-length" not in upstream.headers
    return Response(_Relay(upstream, grant, exchange, watch, streamed), status=upstream.status_code,
                    headers=headers, direct_passthrough=True)


def _refusal(exc: BaseException, grant: Grant, exchange: Exchange) -> BaseException:
    """What to raise for ``exc``, which ended the wait for the upstream's answer; the grant is released."""
    grant.release()
    if isinstance(exc, requests.RequestException):
        what = "timed out" if isinstance(exc, requests.Timeout) else "unreachable"
        log.warning("%s: upstream %s %s: %s", grant.model, grant.proxy_url, what, exc)
        error = UpstreamUnreachable(f"upstream for model {grant.model} {what}: {exc}")
        exchange.end(Outcome.UPSTREAM_ERROR, status=error.status, error=error.message)
        return error
    if isinstance(exc, OSError):  # the client went away while its upload was being relayed
        exchange.end(Outcome.CLIENT_GONE, error=str(exc))
    # else a bug, a cancel, a hang-up, or the greenlet killed: the view's handler ends the exchange
    return exc


class _Relay:
    """The answer's body, as the WSGI server iterates it; ``close`` ends everything, once.

    werkzeug hands a direct_passthrough body to the server as it is, so the
    body itself must finish on ``close()``: whether it ran to its end,
    stopped at a failed write, or never started (a HEAD answer, a loading
    stream that gives up before relaying it).
    """

    __slots__ = ("_upstream", "_grant", "_exchange", "_watch", "_streamed", "_body", "_client_gone",
                 "_error", "_complete", "_finished")

    def __init__(self, upstream: requests.Response, grant: Grant, exchange: Exchange, watch: HangupWatch,
                 streamed: bool):
        self._upstream = upstream
        self._grant = grant
        self._exchange = exchange
        self._streamed = streamed
        self._client_gone = self._complete = self._finished = False
        self._error: str | None = None
        # A client that hangs up, whatever the upstream is doing (thinking before its first token,
        # streaming, silent), has the upstream closed (and the model freed) at once, not at the next
        # chunk. The watch began with the request (WATCH_AFTER in: a short answer costs no watch).
        self._watch = watch
        watch.on_hangup = self._hung_up
        watch.renew()  # an upload's body, seen pending while it was relayed, is sent by now
        self._body = self._chunks()
        exchange.set_canceller(self._cancelled)  # runs at once if a cancel came meanwhile

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        self._body.close()  # runs its finally, if it started
        self._finish()

    def _hung_up(self) -> None:
        # Called from the watch's greenlet while this one may be blocked reading
        # the upstream: cut the connection under the read, it ends at once.
        self._client_gone = True
        abort(self._upstream)

    def _cancelled(self) -> None:
        # An operator's cancel: the upstream connection is cut like on a hang-up;
        # the client's answer ends where it stands.
        abort(self._upstream)

    def _chunks(self) -> Iterator[bytes]:
        exchange = self._exchange
        more_waiting = chunk_waiting(self._upstream)
        try:
            if self._streamed and not (more_waiting is not None and more_waiting()):
                # The model is still thinking: the headers go out now (gunicorn
                # sends them on the first write), not with the first event.
                yield b""
            for chunk in batched_chunks(self._upstream, more_waiting):
                exchange.sent(chunk)
                yield chunk
            self._complete = True
        except Exception as exc:  # upstream died, or was closed by a hang-up or a cancel
            if self._client_gone:
                return
            self._error = f"stream from upstream ended early: {exc}"
            log.info("%s: stream from upstream ended early: %s", self._grant.model, exc)
            raise StreamBroken(self._error) from None
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._watch.stop()
        self._upstream.close()
        self._grant.release()
        if self._complete:
            outcome = Outcome.COMPLETE
        elif self._error is not None:
            outcome = Outcome.UPSTREAM_ERROR
        else:
            outcome = Outcome.CLIENT_GONE  # a hang-up seen by the watch, or a write to the client that failed
        self._exchange.end(outcome, error=self._error)
