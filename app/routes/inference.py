"""The inference endpoints: one route table, one view, the model from the body, a form field or the query.

Every model-dispatched endpoint (OpenAI, Anthropic, llama-server, sd.cpp's
SDAPI, audio.cpp, ComfyUI) is a row of ``ROUTES``: its path, methods, where
the model name comes from, what prefix is cut before the path goes upstream,
and the shape its errors take. ``serve`` does the same for all of them: read
the name (``app.relay.body``), resolve it (``app.naming``: the active
profile's pins, aliases, selectors, peers), open the request's exchange,
build the body for the model (useModelName, filters: JSON bodies only; the
``model`` field of a multipart form), wait for the router's grant while
watching for the client hanging up (``app.relay.grants``), then hand the
grant to ``app.relay.forward``, which streams both ways and releases it
once. A name that resolves to a peer's model is relayed to that peer instead
(``app.relay.peer``), through the same ``forward``.

Errors are OpenAI-shaped by the app's handler; the Anthropic routes
(``/v1/messages``, ``/v1/messages/count_tokens``) answer Anthropic-shaped
ones (both shapes are ``app.errors``'). A refusal also ends the exchange,
with its status.

A multipart upload waits for its model with the rest of the file still
unread on the client's socket; the hang-up watch takes pending bytes as proof
of a live client, so a client that gives up while such a request is queued is
noticed only when the upload is relayed (it then fails and frees the lease).

A streamed chat completion that must wait for its model to load may get
progress lines in ``reasoning_content`` first (``sendLoadingState``,
``app.relay.loading``).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from functools import partial
from typing import Iterable

from flask import Blueprint, Response, redirect, request

from app.errors import ApiError, Refusal, refusal_response
from app.naming import resolve
from app.naming.peers import PeerTarget
from app.relay import loading
from app.relay.body import (
    ClientStream, Incoming, MultipartUpload, model_from_json, model_from_query, read_whole, request_body,
)
from app.relay.forward import Outgoing, forward, upstream_headers
from app.relay.grants import acquire
from app.relay.peer import outgoing_to_peer, relay_to_peer
from app.routes.common import open_exchange, raw_path, raw_target, refusals_end
from app.runtime.live import ServerLive
from app.runtime.server import Server, current
from scheduler.errors import ModelNotFound
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.proxy")

bp = Blueprint("inference", __name__)

COMFYUI_MODEL = "comfyui_auto"  # llama-swap's reserved model id behind /comfyui/
COMFYUI_WEBSOCKET = "/ws"  # the ComfyUI page's status socket: must not start the model


class Source(enum.Enum):
    """Where a route reads the model name from."""

    JSON = "the JSON body's \"model\""
    MULTIPART = "the multipart form field \"model\""
    QUERY = "the query parameter ?model="
    COMFYUI = f"fixed: {COMFYUI_MODEL}"


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    source: Source
    strip_prefix: str = ""  # cut from the path before it goes upstream
    anthropic_errors: bool = False


POST, GET = ("POST",), ("GET",)
ANY = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

ROUTES: tuple[Route, ...] = (
    # OpenAI
    Route("/v1/chat/completions", POST, Source.JSON),
    Route("/v1/completions", POST, Source.JSON),
    Route("/v1/responses", POST, Source.JSON),
    Route("/v1/embeddings", POST, Source.JSON),
    Route("/v1/audio/speech", POST, Source.JSON),
    Route("/v1/audio/voices", POST, Source.JSON),
    Route("/v1/audio/voices", GET, Source.QUERY),
    Route("/v1/audio/transcriptions", POST, Source.MULTIPART),
    Route("/v1/images/generations", POST, Source.JSON),
    Route("/v1/images/edits", POST, Source.MULTIPART),
    # Anthropic
    Route("/v1/messages", POST, Source.JSON, anthropic_errors=True),
    Route("/v1/messages/count_tokens", POST, Source.JSON, anthropic_errors=True),
    # llama-server
    Route("/v1/rerank", POST, Source.JSON),
    Route("/v1/reranking", POST, Source.JSON),
    Route("/rerank", POST, Source.JSON),
    Route("/reranking", POST, Source.JSON),
    Route("/infill", POST, Source.JSON),
    Route("/completion", POST, Source.JSON),
    Route("/props", GET, Source.QUERY),
    # versionless aliases (llama-swap #728): /v/... reaches the upstream as /...
    Route("/v/chat/completions", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/completions", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/responses", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/embeddings", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/rerank", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/reranking", POST, Source.JSON, strip_prefix="/v"),
    Route("/v/messages", POST, Source.JSON, strip_prefix="/v", anthropic_errors=True),
    Route("/v/messages/count_tokens", POST, Source.JSON, strip_prefix="/v", anthropic_errors=True),
    # stable-diffusion.cpp
    Route("/sdapi/v1/txt2img", POST, Source.JSON),
    Route("/sdapi/v1/img2img", POST, Source.JSON),
    Route("/sdapi/v1/loras", GET, Source.QUERY),
    # audio.cpp: /audioapi/v1/tasks/run reaches the upstream as /v1/tasks/run
    Route("/audioapi/v1/tasks/run", POST, Source.JSON, strip_prefix="/audioapi"),
    # ComfyUI: everything under /comfyui/ goes to the comfyui_auto model, prefix cut
    Route("/comfyui/", ANY, Source.COMFYUI, strip_prefix="/comfyui"),
    Route("/comfyui/<path:rest>", ANY, Source.COMFYUI, strip_prefix="/comfyui"),
)


# --------------------------------------------------------------------------- reading the request


def read_incoming(route: Route) -> Incoming:
    if route.source is Source.JSON:
        raw = read_whole(request)
        name, payload = model_from_json(raw)
        # curl -d sends JSON as a form: say what it is, as Go does (NormalizeBodyContentType)
        if "application/json" not in (request.content_type or ""):
            request.environ["CONTENT_TYPE"] = "application/json"
        return Incoming(name, payload=payload, raw=raw)
    if route.source is Source.MULTIPART:
        upload = MultipartUpload.read(ClientStream(request), request.content_type or "", request.content_length)
        return Incoming(upload.model, upload=upload)
    name = COMFYUI_MODEL if route.source is Source.COMFYUI else model_from_query(request.args)
    return Incoming(name, unread=request_body(request))


# --------------------------------------------------------------------------- the view


def upstream_path(route: Route, environ: dict) -> str:
    """The target as it goes to a local upstream: the client's path and query, ``strip_prefix`` cut."""
    path, query = raw_target(environ, route.strip_prefix or "/")
    if route.strip_prefix and path.startswith(route.strip_prefix):
        path = path[len(route.strip_prefix):]
    path = path if path.startswith("/") else "/" + path
    return path + ("?" + query if query else "")


def serve(route: Route, **_: str) -> Response:
    try:
        return proxy_request(route)
    except Refusal as exc:
        if route.anthropic_errors:
            return refusal_response(exc, anthropic=True)
        raise


def proxy_request(route: Route) -> Response:
    server = current()
    if route.source is Source.COMFYUI:
        check_comfyui(server, route)
    incoming = read_incoming(route)
    resolved = resolve.resolve(server.config, incoming.name, server.active_profile,
                               ServerLive(server.router, server.peer_traffic))
    if resolved.steps:
        log.info("%s %s: %s", request.method, request.path, resolved.describe())
    destination = resolved.destination
    environ, method = request.environ, request.method
    if isinstance(destination, PeerTarget):
        outgoing = outgoing_to_peer(destination, incoming, environ, method, raw_path(environ))
        exchange = open_exchange(server, destination.qualified, outgoing.path, peer=destination.peer_id,
                                 selector=resolved.selector)
        with refusals_end(exchange):
            return relay_to_peer(destination, outgoing, exchange, server.peer_traffic, server.transport, environ)
    model_id = destination.model
    model = server.config.models[model_id]
    path = upstream_path(route, environ)
    exchange = open_exchange(server, model_id, path, selector=resolved.selector)
    with refusals_end(exchange):
        outgoing = Outgoing(method, path, incoming.upstream_body(model, destination.name),
                            upstream_headers(environ), model.timeouts)
        if isinstance(outgoing.body, bytes):
            exchange.request_body = outgoing.body
        send = partial(forward, outgoing=outgoing, exchange=exchange, transport=server.transport,
                       environ=environ)
        if loading.wants_loading_state(route.path, incoming.payload, model, server.config.send_loading_state,
                                       server.router.model_state(model_id)):
            return loading.serve(server.router, model_id, environ, exchange, send)
        return send(acquire(server.router, model_id, environ, exchange))


def require_comfyui(server: Server) -> None:
    """Everything under ``/comfyui/`` is the ``comfyui_auto`` model's: 404 without one."""
    if COMFYUI_MODEL not in server.config.models:
        raise ModelNotFound(f"local model {COMFYUI_MODEL} not found")


def check_comfyui(server: Server, route: Route) -> None:
    """404 without a comfyui_auto model; 409 for the page's socket while the model is not up."""
    require_comfyui(server)
    path = upstream_path(route, request.environ).split("?", 1)[0]
    is_socket = path == COMFYUI_WEBSOCKET or path.startswith(COMFYUI_WEBSOCKET + "/")
    if request.method == "GET" and is_socket and \
            server.router.model_state(COMFYUI_MODEL) is not ProcessState.READY:
        # An open ComfyUI tab retries its socket forever: it must not reload an unloaded model.
        raise ApiError(f"model {COMFYUI_MODEL} is not loaded; {COMFYUI_WEBSOCKET} does not start it",
                       status=409)


def _register(routes: Iterable[Route]) -> None:
    for index, route in enumerate(routes):
        endpoint = f"route{index}" + route.path.replace("/", "_").replace("<path:rest>", "rest")
        bp.add_url_rule(route.path, endpoint=endpoint, view_func=partial(serve, route),
                        methods=list(route.methods))


_register(ROUTES)


@bp.route("/comfyui", methods=list(ANY))
def comfyui_redirect() -> Response:
    """``/comfyui`` → ``/comfyui/`` (301 for GET/HEAD, 308 keeps other methods' bodies)."""
    location = "/comfyui/" + ("?" + request.query_string.decode() if request.query_string else "")
    return redirect(location, code=301 if request.method in ("GET", "HEAD") else 308)
