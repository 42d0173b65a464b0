"""What a requested model name means right now: a local model, or a model on a peer.

One function, ``resolve``, walks llama-swap's order:

1. the active profile's pins: a pinned name is replaced by its target (a
   pin to nothing, YAML ``~`` or ``""``, makes the name a 404 while the
   profile is active);
2. local model ids and aliases (``setParamsByID`` keys are aliases too);
3. selectors: the strategy (``app.naming.selectors``) picks one target from what is
   live now, and that target is resolved by 2 or 4 (never another selector);
4. peers: ``peer/model``, or an unqualified name exactly one peer lists.

The name that comes out (``Local.name``) is what the request is treated as
having asked for: the upstream's ``model`` field and the ``setParamsByID``
entry follow it, as if the client had written the pin's or selector's
target itself.

Resolution reads the live state only through ``Live`` (warmth and load of a
destination), so it stays pure and testable; ``app.runtime.live.ServerLive``
answers from the router and the peer traffic counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

from app.config import Config, ProfileConfig
from app.errors import echoed
from app.naming import peers
from app.naming.selectors import Candidate, Warmth, choose
from scheduler.errors import ModelNotFound


@dataclass(frozen=True)
class Local:
    model: str  # the model id
    name: str  # the name that resolved to it: the id itself or an alias


Destination = Union[Local, peers.PeerTarget]


@dataclass(frozen=True)
class Resolved:
    destination: Destination
    requested: str  # what the client asked for
    steps: tuple[str, ...] = ()  # how it got there, for the log: "profile coding", "selector warm"
    selector: str | None = None  # the selector that picked the destination, if one did

    def describe(self) -> str:
        """``"llm-code → gpt-oss (profile coding)"``; just the name when nothing redirected it."""
        target = self.destination.name if isinstance(self.destination, Local) \
            else f"{self.destination.peer_id}/{self.destination.model}"
        if not self.steps:
            return target
        return f"{self.requested} → {target} ({', '.join(self.steps)})"


class Live(Protocol):
    def warmth(self, destination: Destination) -> Warmth: ...

    def load(self, destination: Destination) -> int: ...


def resolve(config: Config, name: str, profile: ProfileConfig | None, live: Live) -> Resolved:
    """Where a request for ``name`` goes now; ``ModelNotFound`` (404) if nowhere."""
    requested, steps = name, []
    if profile is not None and name in profile.pins:
        target = profile.pins[name]
        if target is None:
            raise ModelNotFound(f"model {echoed(name)} is disabled by the active profile {profile.name}")
        name = target
        steps.append(f"profile {profile.name}")
    selector = config.selectors.get(name)
    if selector is not None:
        known = [(target, destination) for target in selector.targets
                 if (destination := concrete(config, target)) is not None]
        if not known:
            raise ModelNotFound(f"selector {echoed(name)}: none of its targets is a known model")
        chosen = choose(selector, [Candidate(target, live.warmth(destination), live.load(destination))
                                   for target, destination in known])
        steps.append(f"selector {selector.strategy}")
        return Resolved(dict(known)[chosen], requested, tuple(steps), selector=name)
    destination = concrete(config, name)
    if destination is None:
        raise ModelNotFound(f"could not find model: {echoed(name)}")
    return Resolved(destination, requested, tuple(steps))


def concrete(config: Config, name: str) -> Destination | None:
    """A local model or alias, else a peer's model; None if ``name`` is neither."""
    model = config.resolve(name)
    if model is not None:
        return Local(model, name)
    return peers.lookup(config, name)
