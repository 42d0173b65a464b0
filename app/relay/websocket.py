"""Relaying one websocket between a client and an upstream: connect, hand over, pump both ways.

The upstream is connected first, so until the client's upgrade is accepted
any failure is still an ordinary HTTP error answer (502 unreachable, or the
status the upstream refused the handshake with). Then messages are copied
both ways as they are (text stays text, binary stays binary) until either
side closes, and the other side is closed with its code. The grant is
released and the exchange ended (status 101, bytes moved) when the relay is
over. The view's answer after a hand-over (``HandedOver``) makes the WSGI
server write nothing more on the connection the websocket took.

Both sides wait cooperatively with or without gevent's monkey patching:
each side's reader (simple-websocket runs one per connection, a
``threading.Thread`` by default) is a greenlet of the calling hub and its
wake-ups gevent ``Event`` objects, and the upstream's socket (the probe's
too) is a gevent one. Patched, those are what simple-websocket's defaults
become; unpatched, its defaults would block the hub on the first read. (The
thread bridge of a threaded host refuses websocket upgrades today: the
client's socket belongs to the host's thread. This keeps the relay correct
on any hub, for when a host hands it over.)
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import gevent
import gevent.socket
import gevent.ssl
import simple_websocket
from flask import Response
from gevent.event import Event
from wsproto import ConnectionType
from wsproto.utilities import LocalProtocolError

from app.errors import UpstreamRefused, UpstreamUnreachable
from app.observe.exchange import Exchange, Outcome
from app.relay.forward import CONNECT_TIMEOUT, upstream_headers
from app.relay.grants import Grant
from app.relay.transport import cut

log = logging.getLogger("llama-swap.proxy")


class HandedOver(Response):
    """The answer of a view whose connection the websocket took over: the server must write nothing.

    The same hand-over flask-sock performs (it needs simple-websocket's
    ``mode``): gunicorn's async workers close the connection, writing
    nothing, when the app raises StopIteration.
    """

    def __init__(self, mode: str):
        super().__init__()
        self._mode = mode

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        if self._mode == "gunicorn":
            raise StopIteration()
        if self._mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []


def websocket_url(proxy_url: str, path: str) -> str:
    """``proxy_url`` as a ws:// (wss://) URL to ``path``, its host pinned to an address that answers.

    simple-websocket connects to the first address a name resolves to, and
    "localhost" often resolves to ::1 first while model servers listen on
    127.0.0.1 only: a probe connection (trying each address, as requests
    does) finds the one to use.
    """
    parts = urlsplit(proxy_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamUnreachable(f"cannot open a websocket to {proxy_url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    if parts.scheme == "http" and not is_ip_literal(host):  # TLS needs the name, for SNI and the certificate
        with gevent.socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as probe:
            host = probe.getpeername()[0]
    if ":" in host:
        host = f"[{host}]"
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}{path}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def handshake_headers(environ: dict) -> list[tuple[bytes, bytes]]:
    """The client's headers worth passing on (cookies, auth, origin); the handshake's own are redone."""
    return [(name.encode("latin-1"), value.encode("latin-1"))
            for name, value in upstream_headers(environ).items()
            if not name.lower().startswith("sec-websocket-")]


def requested_subprotocols(environ: dict) -> list[str]:
    offered = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


class ReaderGreenlet:
    """simple-websocket's ``thread_class``: its reader loop, run as a greenlet of the calling hub."""

    def __init__(self, target: Callable[[], None]):
        self.name = "simple_websocket(_thread)"
        self._target = target

    def start(self) -> None:
        gevent.spawn(self._target)


COOPERATIVE = {"thread_class": ReaderGreenlet, "event_class": Event}


class UpstreamClient(simple_websocket.Client):
    """simple-websocket's client over a gevent socket, minus a stall: it reads only the first event of the handshake.

    A message the upstream sends right behind its 101 (a status push on
    connect, as ComfyUI does) often arrives in the same read; left in the
    protocol buffer, it would only surface when more data came.
    """

    def __init__(self, url: str, subprotocols: list[str], headers: list[tuple[bytes, bytes]]):
        # What simple_websocket.Client.__init__ sets, its socket made here: gevent's, and tried on each address.
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        self.host = parts.hostname
        self.port = parts.port or (443 if secure else 80)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.subprotocols = subprotocols
        self.extra_headeers = headers  # (sic) simple-websocket's name
        sock = gevent.socket.create_connection((self.host, self.port))  # bounded by the caller's Timeout
        if secure:
            sock = gevent.ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        simple_websocket.ws.Base.__init__(self, sock, connection_type=ConnectionType.CLIENT, **COOPERATIVE)

    def handshake(self) -> None:
        super().handshake()
        self.connected = self._handle_events()


def connect_upstream(lease: Grant, path: str, environ: dict) -> simple_websocket.Client:
    try:
        url = websocket_url(lease.proxy_url, path)
    except OSError as exc:
        raise UpstreamUnreachable(f"upstream for model {lease.model} unreachable: {exc!r}") from exc
    # The handshake has no timeout of its own: a silent upstream would hold the lease forever.
    silent = UpstreamUnreachable(f"upstream for model {lease.model} did not answer the websocket "
                                 f"handshake in {CONNECT_TIMEOUT:.0f}s")
    try:
        with gevent.Timeout(CONNECT_TIMEOUT, silent):
            return UpstreamClient(url, requested_subprotocols(environ), handshake_headers(environ))
    except simple_websocket.ConnectionError as exc:
        # The upstream answered with a status instead of 101: pass a client error on as it is.
        status = exc.status_code if isinstance(exc.status_code, int) and exc.status_code >= 400 else 502
        raise UpstreamRefused(f"upstream for model {lease.model} refused the websocket ({exc.status_code})",
                              status=status) from exc
    except (OSError, LocalProtocolError) as exc:
        raise UpstreamUnreachable(f"upstream for model {lease.model} unreachable: {exc!r}") from exc


def close_quietly(ws: simple_websocket.ws.Base, code: int | None = None, message: str | None = None) -> None:
    try:
        ws.close(reason=code, message=message)
    except (simple_websocket.ConnectionClosed, LocalProtocolError, OSError):
        pass  # already closed by the peer, or the socket is gone


def _pump(source: simple_websocket.ws.Base, sink: simple_websocket.ws.Base, moved: list[int]) -> None:
    """Copy messages one way (text stays text, binary stays binary) until either side closes."""
    try:
        while True:
            message = source.receive()
            sink.send(message)
            moved[0] += len(message.encode("utf-8") if isinstance(message, str) else message)
    except (simple_websocket.ConnectionClosed, LocalProtocolError, OSError):
        return


def relay(client: simple_websocket.ws.Base, upstream: simple_websocket.ws.Base) -> int:
    """Pump both ways until one side closes; close the other with its code. Returns bytes moved."""
    moved = [0]
    pumps = [gevent.spawn(_pump, client, upstream, moved), gevent.spawn(_pump, upstream, client, moved)]
    try:
        gevent.wait(pumps, count=1)
    finally:
        closer, other = (client, upstream) if not client.connected else (upstream, client)
        # wsproto turns the codes that only describe a connection (no status,
        # abnormal closure) into a normal close.
        close_quietly(other, closer.close_reason, closer.close_message)
        close_quietly(closer)
        # The surviving pump waits in receive() on a side that is now closed,
        # which does not wake it: kill it.
        gevent.killall(pumps)
    return moved[0]


def relay_websocket(grant: Grant, upstream_path: str, environ: dict, exchange: Exchange) -> Response:
    """Connect to ``upstream_path`` on the grant's upstream, accept the client, relay until one closes."""
    exchange.granted(grant.queued, grant.loading)
    exchange.set_canceller(None)  # a cancel while connecting is acted on once both sides are up
    try:
        upstream = connect_upstream(grant, upstream_path, environ)
        try:
            client = simple_websocket.Server.accept(
                environ, subprotocols=[upstream.subprotocol] if upstream.subprotocol else None, **COOPERATIVE)
        except BaseException:
            close_quietly(upstream)
            raise
        exchange.responded(101, [])
        # An operator's cancel cuts the upstream's socket: its side closes, the relay closes the client's.
        exchange.set_canceller(lambda: cut(upstream.sock))
        exchange.response_bytes = relay(client, upstream)
    finally:
        grant.release()
    exchange.end(Outcome.CANCELLED if exchange.cancel_requested else Outcome.COMPLETE)
    return HandedOver(client.mode)
