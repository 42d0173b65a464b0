"""HTTP client sessions for talking to upstreams: pooled, no env lookups, no delayed-ACK stalls.

An upstream that writes its headers and its body in two sends (with Nagle on
its side) waits for our ACK of the headers before sending the body; on a
kept-alive Linux connection that ACK is delayed ~40 ms. Setting TCP_QUICKACK
before reading each response makes the kernel ACK at once. The flag does not
stick (the kernel drops back to delayed ACKs by itself), hence once per
response. urllib3 already sets TCP_NODELAY on every connection it opens.
"""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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


class UpstreamAdapter(HTTPAdapter):
    """A requests adapter whose connections ACK every response at once."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _QuickAckHTTPPool, "https": _QuickAckHTTPSPool}


def upstream_session(pool_size: int = 64) -> requests.Session:
    """A keep-alive session that forwards exactly the headers it is given."""
    session = requests.Session()
    session.trust_env = False  # no proxy/netrc lookups per request
    session.headers.clear()  # requests' defaults would override the client's
    adapter = UpstreamAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
