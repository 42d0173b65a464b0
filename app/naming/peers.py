"""Peers: which requested names are a remote server's models.

A peer is another OpenAI-compatible server (another instance of this one, the
Go llama-swap, a hosted API) named in ``peers:``. Its models are addressed as
``<peer id>/<model>``, or by the bare model name when exactly one peer lists
it; a local model id or alias of that name always wins (``lookup``).
Relaying a request to one is ``app.relay.peer``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.config import Config, PeerConfig
from scheduler.errors import ModelNotFound


@dataclass(frozen=True)
class PeerTarget:
    """One model on one peer: ``model`` is the peer's own name for it (no ``peer/`` prefix)."""

    peer_id: str
    model: str
    peer: PeerConfig = field(compare=False, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.peer_id}/{self.model}"


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
