"""``app.naming.resolve.Live`` answered from the running server: the router's states and loads, peer traffic."""

from __future__ import annotations

from app.naming.resolve import Destination, Local
from app.naming.selectors import Warmth
from app.relay.grants import PeerTraffic
from scheduler.router import Router
from scheduler.state import ProcessState


class ServerLive:
    def __init__(self, router: Router, peer_traffic: PeerTraffic):
        self._router = router
        self._peer_traffic = peer_traffic

    def warmth(self, destination: Destination) -> Warmth:
        if not isinstance(destination, Local):
            return Warmth.READY  # a peer needs nothing loaded here
        state = self._router.model_state(destination.model)
        if state is ProcessState.READY:
            return Warmth.READY
        return Warmth.STARTING if state is ProcessState.STARTING else Warmth.COLD

    def load(self, destination: Destination) -> int:
        if isinstance(destination, Local):
            return self._router.load(destination.model)
        return self._peer_traffic.load(destination.peer_id, destination.model)
