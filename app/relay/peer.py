"""Relaying one request to a peer: what the peer receives, and through which grant.

A peer request skips the router (nothing is loaded here) and goes through
the same streaming ``forward`` as a local one, with these differences: the
path is the one the client sent (``app.routes.common.request_target``: never
its scheme or host, always starting with "/"), appended to the peer's
``proxy`` base URL;
the body's ``model`` (the ``model`` form field of an upload, the
``?model=`` of a query route) becomes the peer's own name for the model; the
peer's ``filters`` apply; the peer's ``timeouts`` apply. The client's
credentials were for us and never reach a peer: ``Authorization`` and
``x-api-key`` are dropped, and the peer's ``apiKey``, when set, is sent in
both. The key is never logged. The request counts in ``PeerTraffic`` until
it is done (``PeerGrant``).

Which names are a peer's models is ``app.naming.peers``' question.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote, unquote_plus

from flask import Response

from app.config import ModelFilters, PeerConfig
from app.naming.peers import PeerTarget
from app.observe.exchange import Exchange
from app.relay.body import Incoming
from app.relay.forward import Outgoing, forward, upstream_headers
from app.relay.grants import PeerTraffic
from app.relay.transport import UpstreamTransport

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


def peer_headers(environ: Mapping[str, Any], api_key: str) -> dict[str, str]:
    """The client's headers as for a local upstream, its credentials replaced by the peer's key."""
    headers = {name: value for name, value in upstream_headers(environ).items()  # type: ignore[arg-type]
               if name.lower() not in CREDENTIAL_HEADERS}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
        headers["x-api-key"] = api_key
    return headers


def peer_url(base: str) -> str:
    """The peer's ``proxy`` as the prefix of every path sent to it (no trailing slash)."""
    return base.rstrip("/")


def with_query_model(path: str, requested: str, model: str) -> str:
    """``path`` with each ``model=<requested>`` query parameter set to ``model``; the rest as written."""
    base, sep, query = path.partition("?")
    if not sep or requested == model:
        return path
    parts = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if eq and unquote_plus(key) == "model" and unquote_plus(value) == requested:
            part = "model=" + quote(model, safe="/:")
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


def peer_filters(peer: PeerConfig) -> ModelFilters:
    return ModelFilters(strip_params=peer.filters.strip_params, set_params=peer.filters.set_params)


def outgoing_to_peer(target: PeerTarget, incoming: Incoming, environ: dict, method: str,
                     path: str) -> Outgoing:
    """What ``target``'s peer receives: its model name in place of ours, its filters and key, its timeouts."""
    if not path.startswith("/"):
        # Appended to the peer's URL, anything else could become part of its host, and the peer's key go there.
        raise ValueError(f"a path sent to a peer must start with '/': {path[:100]!r}")
    body = incoming.body(target.model, incoming.name, peer_filters(target.peer))
    if incoming.payload is None and incoming.upload is None:
        path = with_query_model(path, incoming.name, target.model)
    return Outgoing(method, path, body, peer_headers(environ, target.peer.api_key), target.peer.timeouts)


def relay_to_peer(target: PeerTarget, outgoing: Outgoing, exchange: Exchange, traffic: PeerTraffic,
                  transport: UpstreamTransport, environ: dict) -> Response:
    """Send ``outgoing`` to ``target``'s peer and stream the answer back; counted until it is done."""
    grant = traffic.begin(target.peer_id, target.model, peer_url(target.peer.proxy))
    return forward(grant, outgoing, exchange, transport, environ)
