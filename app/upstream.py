"""``/upstream/<model>/<path>``: direct passthrough to a model's own server, HTTP and websockets.

Owns everything about that route: finding the model in the path (ids may
contain slashes: the longest prefix that names a model wins), the redirect
of ``/upstream/<model>`` to ``/upstream/<model>/``, which requests may load
a model and count as in flight, and relaying websockets.

What reaches the upstream is what the client sent: any method, the path
after the model prefix and the query exactly as written (percent-encoding
kept, from gunicorn's ``RAW_URI``), and the body streamed through unread.

Most requests get a lease from the router like any inference request: they
load the model and hold it in flight. Two kinds never do (llama-swap's
``upstream.ignorePaths`` and ``compat.ignoreWebsockets``, for web UIs whose
static files and status sockets must neither start a model nor keep one from
being swapped out): they are served only while the model is ready, and are
answered 409 otherwise, as llama-swap does.

The websocket relay also carries ComfyUI's page socket (``/comfyui/ws``, to
the ``comfyui_auto`` model), which never loads the model either; plain HTTP
under ``/comfyui/`` is an inference route (``app.inference``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import quote, unquote, urlsplit

import gevent
import simple_websocket
from flask import Blueprint, Response, redirect, request
from wsproto.utilities import LocalProtocolError

from app.config import Config
from app.errors import UpstreamUnreachable
from app.inference import COMFYUI_MODEL, acquire, require_comfyui
from app.model_name import request_body
from app.proxy import CONNECT_TIMEOUT, forward, upstream_headers
from app.server import Server, current
from scheduler.errors import ModelNotFound, RouteError
from scheduler.router import Lease
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.proxy")

bp = Blueprint("upstream", __name__)

PREFIX = "/upstream/"
COMFYUI_PREFIX = "/comfyui/"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class NotLoaded(RouteError):
    """A request that may not start its model found it not ready (llama-swap: 409)."""

    status = 409
    code = "conflict"


class UpstreamRefused(RouteError):
    """The upstream answered the websocket handshake with an HTTP status instead of 101."""

    status = 502


# --------------------------------------------------------------------------- the path


@dataclass(frozen=True)
class Target:
    """Where an ``/upstream`` request goes, in the raw (percent-encoded) form the client sent."""

    name: str  # the model name as written in the path, e.g. "author/model" or "author%2Fmodel"
    model: str  # the model id it resolves to (an alias resolves to its model)
    rest: str  # the path after the name: "" for ``/upstream/<name>``, else it starts with "/"
    query: str  # the query string without "?"

    @property
    def upstream_path(self) -> str:
        return self.rest + ("?" + self.query if self.query else "")

    @property
    def decoded_rest(self) -> str:
        """The path after the name as ``upstream.ignorePaths`` sees it (decoded, like Go's URL.Path)."""
        return unquote(self.rest)


def raw_target(environ: dict, prefix: str = PREFIX) -> tuple[str, str]:
    """The request's path (which starts with ``prefix``) and query exactly as the client wrote them."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if raw and not raw.startswith("/"):  # absolute form: "http://host/upstream/..."
        parts = urlsplit(raw)
        raw = parts.path + ("?" + parts.query if parts.query else "")
    path, _, query = raw.partition("?")
    if not path.startswith(prefix):
        # No raw URI from the server, or one whose prefix itself was
        # percent-encoded: rebuild it from the decoded path.
        path, query = quote(environ.get("PATH_INFO", "")), environ.get("QUERY_STRING", "")
    return path, query


def locate(config: Config, environ: dict) -> Target:
    """The longest leading run of path segments that names a model; 404 if none does."""
    path, query = raw_target(environ)
    segments = path[len(PREFIX):].split("/")
    name, found = "", None
    for index, segment in enumerate(segments):
        if not segment:
            continue  # "/upstream//m/x" names "m", as in llama-swap
        name = f"{name}/{unquote(segment)}" if name else unquote(segment)
        model = config.resolve(name)
        if model is not None:
            found = index, model
    if found is None:
        raise ModelNotFound(f"model not found in path: {unquote(path)}")
    index, model = found
    rest = "/" + "/".join(segments[index + 1:]) if index + 1 < len(segments) else ""
    return Target(name="/".join(segments[:index + 1]), model=model, rest=rest, query=query)


def redirect_to_slash(target: Target) -> Response:
    """``/upstream/<name>`` → ``/upstream/<name>/`` so relative links in the upstream's pages resolve.

    301 for GET/HEAD; 308 otherwise, which keeps the method and the body.
    """
    location = PREFIX + target.name + "/" + ("?" + target.query if target.query else "")
    return redirect(location, code=301 if request.method in ("GET", "HEAD") else 308)


def is_ignored_path(config: Config, target: Target) -> bool:
    # RE2's MatchString in Go is a search, not an anchored match.
    return any(re.search(pattern, target.decoded_rest) for pattern in config.upstream_ignore_paths)


# --------------------------------------------------------------------------- leases


class UncountedLease(Lease):
    """A Lease in shape only, for a request served without the router.

    The router never granted it, so the model's in-flight count, TTL and
    swap decisions never see it, and releasing it gives nothing back.
    """

    __slots__ = ()

    def release(self) -> None:
        """Nothing was granted, so nothing goes back."""


def ready_without_lease(server: Server, model: str, why: str) -> Lease:
    process = server.router.processes.get(model)
    # An advisory read, and the one place a state is read without asking its
    # owner: this request must not start the model, only look. The model may
    # still stop a moment later; the request then fails with a 502, the price
    # of not holding a lease (llama-swap makes the same trade).
    if process is None or process.state != ProcessState.READY:
        raise NotLoaded(f"model {model} is not loaded; {why}")
    return UncountedLease(server.router, model, process)


def lease_for(server: Server, target: Target, *, websocket: bool) -> Lease:
    """A lease from the router (loads the model, counts in flight), unless the request opted out."""
    if is_ignored_path(server.config, target):
        return ready_without_lease(server, target.model, "path matches upstream.ignorePaths")
    if websocket and server.config.models[target.model].ignore_websockets:
        return ready_without_lease(server, target.model, "ignored websocket requests cannot start it")
    return acquire(server, target.model, request.environ)


# --------------------------------------------------------------------------- HTTP


def passthrough(subpath: str = "") -> Response:
    """Any HTTP request under ``/upstream/`` (``subpath`` is werkzeug's decoded copy; the raw URI is used)."""
    server = current()
    target = locate(server.config, request.environ)
    if not target.rest:
        return redirect_to_slash(target)
    lease = lease_for(server, target, websocket=False)
    try:
        return forward(lease, server.sessions, request.environ, request.method,
                       target.upstream_path, request_body(request),
                       timeouts=server.config.models[target.model].timeouts)
    except BaseException:
        lease.release()  # idempotent: forward may already have released it
        raise


# --------------------------------------------------------------------------- websockets


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
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as probe:
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


class UpstreamClient(simple_websocket.Client):
    """simple-websocket's client, minus a stall: it reads only the first event of the handshake.

    A message the upstream sends right behind its 101 (a status push on
    connect, as ComfyUI does) often arrives in the same read; left in the
    protocol buffer, it would only surface when more data came.
    """

    def handshake(self) -> None:
        super().handshake()
        self.connected = self._handle_events()


def connect_upstream(lease: Lease, path: str, environ: dict) -> simple_websocket.Client:
    try:
        url = websocket_url(lease.proxy_url, path)
    except OSError as exc:
        raise UpstreamUnreachable(f"upstream for model {lease.model} unreachable: {exc!r}") from exc
    # The handshake has no timeout of its own: a silent upstream would hold the lease forever.
    silent = UpstreamUnreachable(f"upstream for model {lease.model} did not answer the websocket "
                                 f"handshake in {CONNECT_TIMEOUT:.0f}s")
    try:
        with gevent.Timeout(CONNECT_TIMEOUT, silent):
            return UpstreamClient.connect(
                url, subprotocols=requested_subprotocols(environ), headers=handshake_headers(environ))
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


def websocket_passthrough(subpath: str = "") -> Response:
    """A websocket under ``/upstream/``: connect to the upstream, accept the client, relay until one closes."""
    server = current()
    target = locate(server.config, request.environ)
    if not target.rest:
        return redirect_to_slash(target)
    return relay_websocket(lease_for(server, target, websocket=True), target.upstream_path)


def comfyui_websocket(rest: str = "") -> Response:
    """A websocket under ``/comfyui/`` (the ComfyUI page's ``/ws``): relayed to ``comfyui_auto``.

    The page keeps its socket open and reopens it whenever it drops, so it
    must neither start the model nor keep it from being swapped out: it is
    served only while the model is ready (409 otherwise), like
    ``ignoreWebsockets`` on ``/upstream``.
    """
    server = current()
    require_comfyui(server)
    path, query = raw_target(request.environ, prefix=COMFYUI_PREFIX)
    lease = ready_without_lease(server, COMFYUI_MODEL, "the ComfyUI page socket does not start it")
    return relay_websocket(lease, path[len(COMFYUI_PREFIX) - 1:] + ("?" + query if query else ""))


def relay_websocket(lease: Lease, upstream_path: str) -> Response:
    """Connect to ``upstream_path`` on the lease's upstream, accept the client, relay until one closes."""
    began = time.monotonic()
    try:
        # Upstream first: until the client's upgrade is accepted, any failure
        # is still an ordinary HTTP error answer.
        upstream = connect_upstream(lease, upstream_path, request.environ)
        try:
            client = simple_websocket.Server.accept(
                request.environ, subprotocols=[upstream.subprotocol] if upstream.subprotocol else None)
        except BaseException:
            close_quietly(upstream)
            raise
        moved = relay(client, upstream)
    finally:
        lease.release()
    log.info("%s: %s %s 101, %d bytes in %.3fs", lease.model, request.method, upstream_path,
             moved, time.monotonic() - began)
    return HandedOver(client.mode)


# --------------------------------------------------------------------------- routes


@bp.get("/upstream")
def upstream_index() -> Response:
    # llama-swap sends this to its UI's model list (/ui/models); ours is the UI's one page.
    return redirect("/ui", code=302)


# Rules keep double slashes: the path after the model is the upstream's to judge.
bp.add_url_rule("/upstream/", endpoint="passthrough_root", view_func=passthrough, methods=METHODS)
bp.add_url_rule("/upstream/<path:subpath>", view_func=passthrough, methods=METHODS, merge_slashes=False)
bp.add_url_rule("/upstream/<path:subpath>", endpoint="websocket", view_func=websocket_passthrough,
                methods=["GET"], websocket=True, merge_slashes=False)
bp.add_url_rule("/comfyui/<path:rest>", endpoint="comfyui_websocket", view_func=comfyui_websocket,
                methods=["GET"], websocket=True, merge_slashes=False)
