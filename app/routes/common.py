"""What every route needs: when the request arrived, the target it asked for, and opening (and ending) its exchange.

``stamp_arrival`` runs first on every request (a ``before_request`` hook): it
notes the arrival time, which an exchange's timings count from, and sets
TCP_NODELAY on the client socket (gunicorn writes headers and body in
separate sends: without it a delayed-ACK client would stall the body
~40 ms). ``refuse_connect`` answers ``CONNECT`` before any route sees it.
"""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from typing import Generator, Iterator
from urllib.parse import quote, urlsplit

from flask import Response, request
from werkzeug.exceptions import MethodNotAllowed

from app.errors import Refusal, error_response, status_and_code
from app.observe.exchange import Exchange
from app.runtime.server import Server

ARRIVED_KEY = "llama_swap.arrived"  # environ: time.monotonic() when the request arrived


def stamp_arrival() -> None:
    request.environ[ARRIVED_KEY] = time.monotonic()
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def refuse_connect() -> Response | None:
    """``CONNECT`` asks for a tunnel, which no resource here gives: 405, ``Allow`` naming what the path takes.

    The authority form (``CONNECT host:443``) names no resource at all: its
    ``Allow`` is empty. Left to routing it would be a 404 (and a 405 for a
    known path), as if the server had never heard of the method.
    """
    if request.method != "CONNECT":
        return None
    routing = request.routing_exception
    allowed = list(routing.valid_methods or ()) if isinstance(routing, MethodNotAllowed) else []
    response = error_response(405, "CONNECT is not supported: this server is no tunnel")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def open_exchange(server: Server, model: str, path: str, *, peer: str | None = None,
                  selector: str | None = None) -> Exchange:
    """The exchange of the current request to ``model`` (``path`` as it goes upstream).

    Its metadata is llama-swap's: ``selector`` when one picked the model,
    ``fifo_priority`` when the model has one.
    """
    metadata = {}
    if selector is not None:
        metadata["selector"] = selector
    priority = server.config.fifo_priority.get(model)
    if priority is not None:
        metadata["fifo_priority"] = str(priority)
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    return server.observers.open(model, environ["REQUEST_METHOD"], path, began=environ.get(ARRIVED_KEY),
                                 peer=peer, remote_addr=environ.get("REMOTE_ADDR", ""),
                                 request_bytes=int(length) if length and length.isdigit() else None,
                                 environ=environ, metadata=metadata)


# RFC 3986 pchar delimiters: kept as they are when a decoded path is quoted again.
_PATH_SAFE = "/:@!$&'()*+,;="


def request_target(environ: dict) -> tuple[str, str]:
    """The path and query the client asked for, percent-encoding as written; the path always starts with "/".

    The one reader of the request target for every route that sends a path
    on (RFC 9112 §3.2): the origin form (``/v1/x?q``) is taken as written;
    the absolute form (``http://host/v1/x?q``, whatever the scheme) gives
    only its path and query, as the server routed it: its scheme and
    authority name this server and must never reach an upstream's URL,
    where they would become part of its host. A fragment is dropped. With no
    raw target (another WSGI host, or the asterisk and authority forms) the
    decoded path is quoted again. Since the path starts with "/", appending
    it to an upstream's base URL cannot change that URL's host.
    """
    raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").partition("#")[0]
    if raw.startswith("/"):
        path, _, query = raw.partition("?")
    else:
        path, query = _path_and_query(raw) if "://" in raw else ("", "")
        if not path:
            path, query = _quoted_path_info(environ), environ.get("QUERY_STRING", "")
    return (path if path.startswith("/") else "/" + path), query


def _path_and_query(absolute: str) -> tuple[str, str]:
    try:
        parts = urlsplit(absolute)
    except ValueError:
        return "", ""
    return parts.path, parts.query


def _quoted_path_info(environ: dict) -> str:
    # WSGI hands the path over decoded as latin-1: encoding it back gives the client's bytes.
    return quote(environ.get("PATH_INFO", "").encode("latin-1", errors="replace"), safe=_PATH_SAFE)


def raw_path(environ: dict) -> str:
    """``request_target`` as one string: the path, and ``?query`` when there is one."""
    path, query = request_target(environ)
    return path + ("?" + query if query else "")


def raw_target(environ: dict, prefix: str) -> tuple[str, str]:
    """``request_target`` of a request whose routed path starts with ``prefix``.

    A target whose prefix itself was percent-encoded (``/%75pstream/...``)
    is read from the decoded path instead, so the prefix can be cut.
    """
    path, query = request_target(environ)
    if not path.startswith(prefix):
        path, query = _quoted_path_info(environ), environ.get("QUERY_STRING", "")
    return path, query


def released(chunks: Generator[bytes, None, None]) -> Iterator[bytes]:
    """``chunks`` for a long-lived stream: each one followed by an empty one.

    gunicorn holds the last item it wrote until the next one is ready; the
    empty one (written as nothing) lets a large chunk (a log history, a batch
    of events) go while the stream waits, instead of holding it for the life
    of the connection. Closing this closes ``chunks``.
    """
    try:
        for chunk in chunks:
            yield chunk
            if chunk:
                del chunk  # nor held here while the next one is awaited
                yield b""
    finally:
        chunks.close()


@contextmanager
def refusals_end(exchange: Exchange) -> Iterator[None]:
    """Whatever is raised before the relay answered ends ``exchange`` with the status it is answered with.

    Once ``forward`` has the exchange it ends it itself; ``end`` is
    idempotent, so the first word stands.
    """
    try:
        yield
    except Refusal as exc:
        exchange.refuse(status_and_code(exc)[0], exc.message)
        raise
    except BaseException as exc:
        exchange.refuse(500, f"{type(exc).__name__}: {exc}")
        raise
