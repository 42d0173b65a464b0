"""Which port each upstream listens on: its assigned ``${PORT}`` unless something already listens there.

A port another program holds (a second llama-swap with the same
``startPort``, anything else) would answer the model's health check and get
its requests. So before each start the owner asks ``LocalPorts.pick``: the
assigned port if it is free, else the next free one above it, skipping the
ports assigned to this proxy's other models and those its other upstreams
hold now (one of ours may not listen yet: it is still starting). A port is
held from the pick until the child is gone (``release``).

"Free" means a listening socket could bind it on every IPv4 address (and
every IPv6 one, where there is IPv6), with ``SO_REUSEADDR`` as servers set
it: a listener anywhere on that port makes it taken; connections lingering
in TIME_WAIT do not.
"""

from __future__ import annotations

import socket
from typing import Callable, Iterable, Protocol

HIGHEST_PORT = 65535


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port``: a wildcard bind, IPv4 then IPv6, succeeds."""
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, host in families:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here after all
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


class Ports(Protocol):
    def pick(self, model: str, assigned: int) -> int:
        """The port ``model``'s next child is to use; raises OSError when none is free."""
        ...

    def release(self, model: str) -> None:
        """``model``'s child is gone: its port may go to another."""
        ...


class AssignedPorts:
    """Every model gets the port it was assigned, taken or not (the owners' unit tests use it)."""

    def pick(self, model: str, assigned: int) -> int:
        return assigned

    def release(self, model: str) -> None:
        pass


class LocalPorts:
    """The assigned port if it is free, else the next free one no other model of ours has or holds."""

    def __init__(self, assigned: Iterable[int], is_free: Callable[[int], bool] = port_is_free):
        self._assigned = frozenset(assigned)
        self._is_free = is_free
        self._held: dict[str, int] = {}

    def pick(self, model: str, assigned: int) -> int:
        self._held.pop(model, None)
        others = set(self._held.values())
        port = assigned
        while port <= HIGHEST_PORT:
            ours_elsewhere = port != assigned and port in self._assigned
            if not ours_elsewhere and port not in others and self._is_free(port):
                self._held[model] = port
                return port
            port += 1
        raise OSError(f"no free port from {assigned} to {HIGHEST_PORT}")

    def release(self, model: str) -> None:
        self._held.pop(model, None)

    def reassign(self, assigned: Iterable[int]) -> None:
        """A reload's assigned ports (what is held now stays held until its child is gone)."""
        self._assigned = frozenset(assigned)
