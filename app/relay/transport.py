"""The upstream transport: pooled HTTP to the model servers, and the only code that knows urllib3's insides.

``UpstreamTransport`` keeps one keep-alive connection pool (a requests
adapter) per upstream base URL (a model's ``proxy``, a peer's), with no
environment lookups, no default headers of its own, no cookies and no
retries. ``send`` prepares the request with requests' own steps (URL, headers,
body: a stream is sent chunked, or with its length when it has one) and hands
it to the adapter, skipping what a ``Session`` would merge in (settings,
cookies, hooks, auth) that a proxy never uses: that machinery cost ~0.35 ms of
CPU per request, a quarter of the proxy's whole overhead. What the rest of the
relay needs beyond requests' public API lives here and nowhere else:

- ``TCP_QUICKACK`` before reading each response. An upstream that writes
  its headers and its body in two sends (with Nagle on its side) waits for
  our ACK of the headers before sending the body; on a kept-alive Linux
  connection that ACK is delayed ~40 ms. The flag does not stick (the kernel
  drops back to delayed ACKs by itself), hence once per response. urllib3
  already sets TCP_NODELAY on every connection it opens.
- ``lift_read_timeout``: requests' read timeout bounds every wait between
  bytes, Go's ``responseHeader`` only the headers; once they are in, the
  socket's timeout is lifted.
- ``arriving``: a body as it arrives. requests' ``iter_content(None)`` yields
  a chunked body chunk by chunk, but reads any other body (a
  ``Content-Length``, or close-delimited as old SSE servers send) whole
  before yielding anything; those are read with ``read1``, whatever the
  socket has, byte for byte.
- ``chunk_waiting``: whether more of a streamed body has already arrived (a
  non-blocking peek), so chunks that piled up go out in one write.
- ``abort``: cut a response being read in another greenlet (a client that
  hung up mid-stream frees its model at once, not at the next token);
- ``drop_idle``: close the idle keep-alive connections to one upstream, as
  its process is about to be stopped: llama-server takes ~110 ms to exit on
  SIGTERM while one is open, 5 to 9 ms with none.

``HealthProbe`` is the process owners' health check (``scheduler.health``),
over a one-connection session that lives for one start.

Every connection is a gevent socket, made here (``_connect``: urllib3's
``create_connection`` over ``gevent.socket``), so a wait on an upstream
blocks only the calling greenlet with or without gevent's monkey patching:
a threaded WSGI host patches nothing, and there the server runs on a hub of
its own thread (issue 13's bridge); with the standard library's sockets one
upstream read would stall every request and the scheduler. Once patched,
``gevent.socket`` *is* ``socket`` (same class, same resolver): nothing
changes, and a kept-alive request never reaches this code. TLS likewise:
unpatched, an ``https`` upstream's pool gets a gevent ``SSLContext`` with
urllib3's default settings (``_cooperative_tls``); patched, urllib3 makes
its own as before.
"""

from __future__ import annotations

import functools
import io
import logging
import socket
import ssl
import sys
from typing import Any, Callable, Iterator, Mapping

import gevent.monkey
import gevent.socket
import gevent.ssl
import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.ssl_ import create_urllib3_context
from urllib3.util.timeout import _DEFAULT_TIMEOUT

log = logging.getLogger("llama-swap.proxy")

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _quickack(sock: socket.socket | None) -> None:
    if sock is not None and _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass


def _connect(address: tuple[str, int], timeout: Any, source_address: tuple[str, int] | None,
             socket_options: Any) -> socket.socket:
    """urllib3's ``create_connection`` over ``gevent.socket``: each address in turn, options set before connect."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, peer in gevent.socket.getaddrinfo(host.strip("[]"), port, allowed_gai_family(),
                                                                  socket.SOCK_STREAM):
        sock = gevent.socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(peer)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("getaddrinfo returns an empty list")


class _CooperativeConnect:
    """urllib3's ``HTTPConnection._new_conn`` (its errors too), the socket a gevent one."""

    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            sock = _connect((self._dns_host, self.port), self.timeout, self.source_address, self.socket_options)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except socket.timeout as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


@functools.cache
def _cooperative_tls() -> ssl.SSLContext:
    """A gevent ``SSLContext`` (its sockets wait cooperatively) with the protocol settings urllib3 gives its own.

    One for every pool: urllib3 sets its verify mode per connection and, the
    context checking no hostname, matches the certificate's name itself.
    """
    default = create_urllib3_context()
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for setting in ("minimum_version", "maximum_version", "options", "verify_flags", "post_handshake_auth"):
        setattr(context, setting, getattr(default, setting))
    context.check_hostname = False
    return context


class _QuickAckHTTPConnection(_CooperativeConnect, HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _quickack(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPSConnection(_CooperativeConnect, HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _quickack(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPPool(HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class _UpstreamAdapter(HTTPAdapter):
    """The pool of one upstream: connections that ACK every response at once, no proxies, no cookies."""

    _pool: HTTPConnectionPool | None = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if not gevent.monkey.is_module_patched("ssl"):  # (http pools ignore it)
            kwargs.setdefault("ssl_context", _cooperative_tls())
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _QuickAckHTTPPool, "https": _QuickAckHTTPSPool}

    def get_connection_with_tls_context(self, request: PreparedRequest, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> HTTPConnectionPool:
        # One adapter per upstream base URL, never a proxy: the pool is looked up once, not per request.
        pool = self._pool
        if pool is None:
            pool = self._pool = super().get_connection_with_tls_context(request, verify, None, cert)
        return pool

    def request_url(self, request: PreparedRequest, proxies: Any) -> str:
        return request.path_url

    def close(self) -> None:
        # The pool manager forgets its pools without closing them (urllib3 closes a
        # pool's idle connections only when the pool is garbage-collected, and a
        # response still referenced keeps it alive): close ours now. Connections
        # still streaming are closed when they come back.
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().close()

    def build_response(self, req: PreparedRequest, resp: Any) -> requests.Response:
        # HTTPAdapter's, less the cookie jar (Set-Cookie still reaches the client as a header).
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url  # type: ignore[assignment]
        response.request = req
        response.connection = self
        return response


def _adapter(pool_size: int) -> _UpstreamAdapter:
    return _UpstreamAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)


def _prepared(method: str, url: str, headers: Mapping[str, str], body: Any) -> PreparedRequest:
    request = PreparedRequest()
    request.prepare_method(method)
    request.prepare_url(url, None)
    request.prepare_headers(headers)
    request.prepare_body(body, None)
    return request


Timeout = tuple[float | None, float | None]  # (connect, read), as requests takes it


class UpstreamTransport:
    """One keep-alive connection pool per upstream base URL; owned by the running server."""

    def __init__(self, pool_size: int = 64):
        self._pool_size = pool_size
        self._adapters: dict[str, _UpstreamAdapter] = {}

    def send(self, method: str, base_url: str, path: str, headers: Mapping[str, str], body: Any,
             timeout: Timeout) -> requests.Response:
        """Send one request to ``base_url + path``; the response is streamed (read it with ``iter_content``).

        Raises what requests raises (``requests.RequestException``).
        """
        adapter = self._adapters.get(base_url)
        if adapter is None:
            adapter = self._adapters[base_url] = _adapter(self._pool_size)
        return adapter.send(_prepared(method, base_url + path, headers, body), stream=True, timeout=timeout)

    def drop_idle(self, base_url: str) -> None:
        """Close the idle connections to ``base_url``; answers still streaming keep theirs until they end."""
        adapter = self._adapters.pop(base_url, None)
        if adapter is not None:
            adapter.close()

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()


# --------------------------------------------------------------------------- a response's insides


def _connection_socket(response: requests.Response) -> socket.socket | None:
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is None:
        # A response that ends with its connection (``Connection: close``,
        # close-delimited) has it handed over: http.client drops the
        # connection's socket and reads through its own file object.
        sock = getattr(getattr(getattr(getattr(response.raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    return sock


def abort(response: requests.Response) -> None:
    """Cut a streamed response's connection, from another greenlet than the one reading it.

    A read blocked on it ends at once (end of file, so iterating the body
    raises). Closing the response itself from another greenlet would close
    its buffered reader in the middle of that read ("reentrant call"); the
    socket's shutdown is what wakes the reader.
    """
    sock = _connection_socket(response)
    if sock is not None:
        cut(sock)


def cut(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways: a read blocked on it in another greenlet ends at once (end of file)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


READ_AT_MOST = 64 * 1024  # bytes per read of a body that is not chunked


def arriving(response: requests.Response) -> Iterator[bytes]:
    """The body of a streamed response, each piece as soon as it has arrived (never waiting to fill a buffer)."""
    raw = response.raw
    if raw.chunked:
        return response.iter_content(None)  # one item per chunk, as each arrives
    return _read1_until_end(raw)


def _read1_until_end(raw: Any) -> Iterator[bytes]:
    while True:
        data = raw.read1(READ_AT_MOST, decode_content=False)  # Content-Encoding is passed on as it is
        if not data:
            return
        yield data


def lift_read_timeout(response: requests.Response) -> None:
    """No more read timeout on this response's connection (its headers are in)."""
    sock = _connection_socket(response)
    if sock is not None:
        sock.settimeout(None)


def chunk_waiting(response: requests.Response) -> Callable[[], bool] | None:
    """A check, never blocking, for more of the body having arrived already; None where it cannot be known."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    sock = _connection_socket(response)
    if not hasattr(fp, "peek") or sock is None:
        return None
    return lambda: _more_waiting(fp, sock)


def _more_waiting(fp: io.BufferedReader, sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bool(fp.peek(1))
    except (OSError, ValueError):
        return False
    finally:
        sock.settimeout(timeout)


# --------------------------------------------------------------------------- health checks


class _HealthCheck:
    __slots__ = ("_url", "_adapter")

    def __init__(self, url: str):
        self._url = url
        self._adapter = _adapter(pool_size=1)

    def check(self, timeout: float) -> bool:
        try:
            response = self._adapter.send(_prepared("GET", self._url, {}, None), timeout=(1.0, timeout))
            _ = response.content  # read to its end, so the connection goes back to the pool for the next poll
            response.close()
            return response.status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self._adapter.close()


class HealthProbe:
    """``scheduler.health.HealthProbe`` over HTTP: a fresh one-connection session per start."""

    def open(self, url: str) -> _HealthCheck:
        return _HealthCheck(url)
