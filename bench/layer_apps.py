"""Minimal WSGI apps that rebuild the proxy path one layer at a time, for ``bench.diagnose``.

Each runs under the same gunicorn + one gevent worker as the real server:

* ``hello``: answers a fixed small JSON body, no upstream (the HTTP server layer alone);
* ``passthrough``: forwards the body to ``$BENCH_UPSTREAM`` with one pooled
  ``requests.Session`` and returns the answer (server layer + upstream client),
  no Flask and no scheduler;
* ``urllib3_passthrough``: the same with a bare ``urllib3.HTTPConnectionPool``
  (what the proxy could save by skipping requests' per-request machinery);
* ``urllib3_stream_passthrough``: the same for a stream, each upstream chunk
  relayed as it arrives: the floor of a streamed answer's first event under
  this stack (gunicorn + gevent + a second HTTP hop in Python), below which
  no work of the proxy's own can go.

The real proxy minus ``passthrough`` is what Flask, the router and the
streaming/lease machinery add.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable

import requests
import urllib3
from requests.adapters import HTTPAdapter

HELLO_BODY = (b'{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"bench","choices":'
              b'[{"index":0,"message":{"role":"assistant","content":"tok0 "},"finish_reason":"stop"}]}')


def _no_nagle(environ: dict) -> None:
    """As the real app does: gunicorn sends headers and body separately, so Nagle would stall the body."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def hello(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    _no_nagle(environ)
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(HELLO_BODY)))])
    return [HELLO_BODY]


_session: requests.Session | None = None


def _upstream_session() -> requests.Session:
    global _session
    if _session is None:
        _session = requests.Session()
        _session.trust_env = False
        _session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=64, max_retries=0))
    return _session


def passthrough(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    _no_nagle(environ)
    body = environ["wsgi.input"].read()
    url = os.environ["BENCH_UPSTREAM"] + environ["PATH_INFO"]
    resp = _upstream_session().post(url, data=body, headers={"Content-Type": "application/json"})
    content = resp.content
    start_response(f"{resp.status_code} OK", [("Content-Type", resp.headers.get("Content-Type", "")),
                                               ("Content-Length", str(len(content)))])
    return [content]


_pool: urllib3.HTTPConnectionPool | None = None


def _upstream_pool() -> urllib3.HTTPConnectionPool:
    global _pool
    if _pool is None:
        _pool = urllib3.connection_from_url(os.environ["BENCH_UPSTREAM"], maxsize=64, retries=False)
    return _pool


def urllib3_passthrough(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    _no_nagle(environ)
    body = environ["wsgi.input"].read()
    resp = _upstream_pool().urlopen("POST", environ["PATH_INFO"], body=body,
                                    headers={"Content-Type": "application/json"}, preload_content=False)
    content = resp.read()
    resp.release_conn()
    start_response(f"{resp.status} OK", [("Content-Type", resp.headers.get("Content-Type", "")),
                                          ("Content-Length", str(len(content)))])
    return [content]


def urllib3_stream_passthrough(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    _no_nagle(environ)
    body = environ["wsgi.input"].read()
    resp = _upstream_pool().urlopen("POST", environ["PATH_INFO"], body=body,
                                    headers={"Content-Type": "application/json"}, preload_content=False)
    start_response(f"{resp.status} OK", [("Content-Type", resp.headers.get("Content-Type", ""))])

    def chunks() -> Iterable[bytes]:
        try:
            if resp.chunked:
                yield from resp.read_chunked(decode_content=False)
            else:
                yield from resp.stream(65536, decode_content=False)
        finally:
            resp.release_conn()

    return chunks()
