"""Peers: which requested names are a remote server's models, and the relaying of one request to it.

A peer is another OpenAI-compatible server (another instance of this one, the
Go llama-swap, a hosted API) named in ``peers:``. Its models are addressed as
``<peer id>/<model>``, or by the bare model name when exactly one peer lists
it; a local model id or alias of that name always wins (``lookup``).

A peer request skips the router (nothing is loaded here) and goes through the
same streaming proxy as a local one (``app.proxy.forward``), with these
differences: the path is the one the client sent, appended to the peer's
``proxy`` base URL; the body's ``model`` (the ``model`` form field of an
upload, the ``?model=`` of a query route) becomes the peer's own name for the
model; the peer's ``filters`` apply; the peer's ``timeouts`` apply. The
client's credentials were for us and never reach a peer: ``Authorization``
and ``x-api-key`` are dropped, and the peer's ``apiKey``, when set, is sent in
both. The key is never logged.

``PeerTraffic`` counts the requests in flight to each (peer, model), for
selectors that spill over by load.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping
from urllib.parse import quote, unquote_plus

from flask import Response

from app.config import Config, ModelFilters, PeerConfig
from app.proxy import UpstreamSessions, forward as proxy_forward, upstream_headers
from scheduler.errors import ModelNotFound

if TYPE_CHECKING:
    from app.inference import Incoming

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


@dataclass(frozen=True)
class PeerTarget:
    """One model on one peer: ``model`` is the peer's own name for it (no ``peer/`` prefix)."""

    peer_id: str
    model: str
    peer: PeerConfig = field(compare=False, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.peer_id}/{self.model}"


# --------------------------------------------------------------------------- which peer


def lookup(config: Config, name: str) -> PeerTarget | None:
    """The peer model ``name`` means, or None if it names none (or a local model or alias).

    ``peer/model`` first (both ids may contain slashes, so every peer whose id
    is a prefix is tried), then a bare name listed by exactly one peer. A
    name that fits more than one peer model is a ``ModelNotFound`` that
    names the qualified choices.
    """
    if config.resolve(name) is not None:
        return None
    qualified = [PeerTarget(peer.id, name[len(peer.id) + 1:], peer)
                 for peer in config.peers.values()
                 if name.startswith(peer.id + "/") and name[len(peer.id) + 1:] in peer.models]
    bare = [PeerTarget(peer.id, name, peer) for peer in config.peers.values() if name in peer.models]
    for found in (qualified, bare):
        if len(found) == 1:
            return found[0]
        if found:
            choices = " or ".join(target.qualified for target in found)
            raise ModelNotFound(f"model {name} is served by more than one peer: ask for {choices}")
    return None


# --------------------------------------------------------------------------- what the peer receives


def peer_headers(environ: Mapping[str, Any], api_key: str) -> dict[str, str]:
    """The client's headers as for a local upstream, its credentials replaced by the peer's key."""
    headers = {name: value for name, value in upstream_headers(environ).items()
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


def peer_body(incoming: Incoming, target: PeerTarget) -> bytes | Iterable[bytes] | None:
    """The body for the peer: its model name in place of ours, its filters applied (JSON only)."""
    return incoming.body(target.model, incoming.name, peer_filters(target.peer))


# --------------------------------------------------------------------------- in flight


class PeerTraffic:
    """Requests in flight to each (peer, model); only the server's one worker touches it."""

    def __init__(self) -> None:
        self._in_flight: Counter[tuple[str, str]] = Counter()

    def load(self, peer: str, model: str) -> int:
        return self._in_flight[(peer, model)]

    def begin(self, target: PeerTarget) -> PeerGrant:
        """Count one request to ``target``; the grant's ``release`` uncounts it, once."""
        self._in_flight[(target.peer_id, target.model)] += 1
        return PeerGrant(target, self._end)

    def _end(self, target: PeerTarget) -> None:
        key = (target.peer_id, target.model)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]


class PeerGrant:
    """A peer request as ``app.proxy.forward`` holds it (a ``Grant``, as a router ``Lease`` is)."""

    __slots__ = ("proxy_url", "model", "_target", "_done")

    def __init__(self, target: PeerTarget, done: Callable[[PeerTarget], None]):
        self.proxy_url = peer_url(target.peer.proxy)
        self.model = target.qualified  # what the log lines and errors name
        self._target = target
        self._done: Callable[[PeerTarget], None] | None = done

    def release(self) -> None:
        if self._done is not None:
            done, self._done = self._done, None
            done(self._target)


# --------------------------------------------------------------------------- relaying


def forward(target: PeerTarget, incoming: Incoming, *, traffic: PeerTraffic,
            sessions: UpstreamSessions, environ: dict, method: str, path: str) -> Response:
    """Relay one request to ``target``'s peer and stream the answer back.

    ``path`` is the path and query as the client sent them; the returned
    response ends the request's in-flight count when it is done.
    """
    body = peer_body(incoming, target)
    if incoming.payload is None and incoming.upload is None:
        path = with_query_model(path, incoming.name, target.model)
    return proxy_forward(traffic.begin(target), sessions, environ, method, path, body,
                         timeouts=target.peer.timeouts,
                         headers=peer_headers(environ, target.peer.api_key))
