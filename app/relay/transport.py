"""The upstream transport: pooled HTTP to the model servers, and the only code that knows urllib3's insides.

``UpstreamTransport`` keeps one keep-alive ``requests.Session`` per upstream
base URL (a model's ``proxy``, a peer's), with no environment lookups, no
default headers of its own and no retries. What the rest of the relay needs
beyond requests' public API lives here and nowhere else:

- ``TCP_QUICKACK`` before reading each response. An upstream that writes
  its headers and its body in two sends (with Nagle on its side) waits for
  our ACK of the headers before sending the body; on a kept-alive Linux
  connection that ACK is delayed ~40 ms. The flag does not stick (the kernel
  drops back to delayed ACKs by itself), hence once per response. urllib3
  already sets TCP_NODELAY on every connection it opens.
- ``lift_read_timeout``: requests' read timeout bounds every wait between
  bytes, Go's ``responseHeader`` only the headers; once they are in, the
  socket's timeout is lifted.
- ``chunk_waiting``: whether more of a streamed body has already arrived (a
  non-blocking peek), so chunks that piled up go out in one write.
- ``drop_idle``: close the idle keep-alive connections to one upstream, as
  its process is about to be stopped: llama-server takes ~110 ms to exit on
  SIGTERM while one is open, 5 to 9 ms with none.

``HealthProbe`` is the process owners' health check (``scheduler.health``),
over a one-connection session that lives for one start.
"""

from __future__ import annotations

import io
import logging
import socket
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger("llama-swap.proxy")

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _quickack(sock: socket.socket | None) -> None:
    if sock is not None and _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass


class _QuickAckHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _quickack(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _quickack(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPPool(HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class _UpstreamAdapter(HTTPAdapter):
    """A requests adapter whose connections ACK every response at once."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _QuickAckHTTPPool, "https": _QuickAckHTTPSPool}


def upstream_session(pool_size: int = 64) -> requests.Session:
    """A keep-alive session that forwards exactly the headers it is given."""
    session = requests.Session()
    session.trust_env = False  # no proxy/netrc lookups per request
    session.headers.clear()  # requests' defaults would override the client's
    adapter = _UpstreamAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class UpstreamTransport:
    """One keep-alive connection pool per upstream base URL; owned by the running server."""

    def __init__(self, pool_size: int = 64):
        self._pool_size = pool_size
        self._sessions: dict[str, requests.Session] = {}

    def session(self, base_url: str) -> requests.Session:
        session = self._sessions.get(base_url)
        if session is None:
            session = self._sessions[base_url] = upstream_session(self._pool_size)
        return session

    def drop_idle(self, base_url: str) -> None:
        """Close the idle connections to ``base_url``; answers still streaming keep theirs until they end."""
        session = self._sessions.pop(base_url, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


# --------------------------------------------------------------------------- a response's insides


def _connection_socket(response: requests.Response) -> socket.socket | None:
    return getattr(getattr(response.raw, "_connection", None), "sock", None)


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
    __slots__ = ("_url", "_session")

    def __init__(self, url: str):
        self._url = url
        self._session = upstream_session(pool_size=1)

    def check(self, timeout: float) -> bool:
        try:
            return self._session.get(self._url, timeout=(1.0, timeout)).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self._session.close()


class HealthProbe:
    """``scheduler.health.HealthProbe`` over HTTP: a fresh one-connection session per start."""

    def open(self, url: str) -> _HealthCheck:
        return _HealthCheck(url)
