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

The websocket relay (``app.relay.websocket``) also carries ComfyUI's page
socket (``/comfyui/ws``, to the ``comfyui_auto`` model), which never loads the
model either; plain HTTP under ``/comfyui/`` is an inference route
(``app.routes.inference``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote

from flask import Blueprint, Response, redirect, request

from app.config import Config
from app.errors import echoed
from app.observe.exchange import Exchange
from app.relay.body import request_body
from app.relay.forward import Outgoing, forward, upstream_headers
from app.relay.grants import Grant, acquire, ready_without_lease
from app.relay.websocket import relay_websocket
from app.routes.common import open_exchange, raw_target, refusals_end
from app.routes.inference import COMFYUI_MODEL, require_comfyui
from app.runtime.server import Server, current
from scheduler.errors import ModelNotFound

log = logging.getLogger("llama-swap.proxy")

bp = Blueprint("upstream", __name__)

PREFIX = "/upstream/"
COMFYUI_PREFIX = "/comfyui/"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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


def locate(config: Config, environ: dict) -> Target:
    """The longest leading run of path segments that names a model; 404 if none does."""
    path, query = raw_target(environ, PREFIX)
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
        raise ModelNotFound(f"model not found in path: {echoed(unquote(path))}")
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


# --------------------------------------------------------------------------- grants


def grant_for(server: Server, target: Target, *, websocket: bool, exchange: Exchange | None = None) -> Grant:
    """A lease from the router (loads the model, counts in flight), unless the request opted out."""
    if is_ignored_path(server.config, target):
        return ready_without_lease(server.router, target.model, "path matches upstream.ignorePaths")
    if websocket and server.config.models[target.model].ignore_websockets:
        return ready_without_lease(server.router, target.model, "ignored websocket requests cannot start it")
    return acquire(server.router, target.model, request.environ, exchange)


# --------------------------------------------------------------------------- the views


def passthrough(subpath: str = "") -> Response:
    """Any HTTP request under ``/upstream/`` (``subpath`` is werkzeug's decoded copy; the raw URI is used)."""
    return pass_through(websocket=False)


def websocket_passthrough(subpath: str = "") -> Response:
    """A websocket under ``/upstream/``: connect to the upstream, accept the client, relay until one closes."""
    return pass_through(websocket=True)


def pass_through(*, websocket: bool) -> Response:
    server = current()
    target = locate(server.config, request.environ)
    if not target.rest:
        return redirect_to_slash(target)
    exchange = open_exchange(server, target.model, target.upstream_path)
    with refusals_end(exchange):
        if websocket:
            grant = grant_for(server, target, websocket=True)
            return relay_websocket(grant, target.upstream_path, request.environ, exchange)
        outgoing = Outgoing(request.method, target.upstream_path, request_body(request),
                            upstream_headers(request.environ), server.config.models[target.model].timeouts)
        return forward(grant_for(server, target, websocket=False, exchange=exchange), outgoing, exchange,
                       server.transport, request.environ)


def comfyui_websocket(rest: str = "") -> Response:
    """A websocket under ``/comfyui/`` (the ComfyUI page's ``/ws``): relayed to ``comfyui_auto``.

    The page keeps its socket open and reopens it whenever it drops, so it
    must neither start the model nor keep it from being swapped out: it is
    served only while the model is ready (409 otherwise), like
    ``ignoreWebsockets`` on ``/upstream``.
    """
    server = current()
    require_comfyui(server)
    path, query = raw_target(request.environ, COMFYUI_PREFIX)
    upstream_path = path[len(COMFYUI_PREFIX) - 1:] + ("?" + query if query else "")
    exchange = open_exchange(server, COMFYUI_MODEL, upstream_path)
    with refusals_end(exchange):
        grant = ready_without_lease(server.router, COMFYUI_MODEL, "the ComfyUI page socket does not start it")
        return relay_websocket(grant, upstream_path, request.environ, exchange)


# --------------------------------------------------------------------------- routes


@bp.get("/upstream")
def upstream_index() -> Response:
    # llama-swap sends this to its UI's model list; so does ours (the app page routes /ui/models).
    return redirect("ui/models", code=302)  # relative: right behind a sub-path proxy


# Rules keep double slashes: the path after the model is the upstream's to judge.
bp.add_url_rule("/upstream/", endpoint="passthrough_root", view_func=passthrough, methods=METHODS)
bp.add_url_rule("/upstream/<path:subpath>", view_func=passthrough, methods=METHODS, merge_slashes=False)
bp.add_url_rule("/upstream/<path:subpath>", endpoint="websocket", view_func=websocket_passthrough,
                methods=["GET"], websocket=True, merge_slashes=False)
bp.add_url_rule("/comfyui/<path:rest>", endpoint="comfyui_websocket", view_func=comfyui_websocket,
                methods=["GET"], websocket=True, merge_slashes=False)
