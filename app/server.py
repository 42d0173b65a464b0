"""The running server's state: config, router and upstream sessions, built once per worker.

Views reach it through ``current()``; nothing else holds these objects, and
``close()`` is the one teardown path (stop every upstream, close pools).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from flask import current_app

from app.config import Config, ProfileConfig
from app.peers import PeerTraffic
from app.proxy import UpstreamSessions
from scheduler.router import Router

log = logging.getLogger("llama-swap")


@dataclass
class Server:
    config: Config
    router: Router
    sessions: UpstreamSessions
    started_at: float = field(default_factory=time.time)
    # The profile whose pins apply now; none at start and after a reload.
    active_profile: ProfileConfig | None = None
    peer_traffic: PeerTraffic = field(default_factory=PeerTraffic)  # requests in flight to peers
    _closed: bool = False

    def close(self) -> None:
        """Stop every upstream (graceful, then forced) and drop the pools; idempotent."""
        if self._closed:
            return
        self._closed = True
        began = time.monotonic()
        self.router.shutdown()
        self.sessions.close()
        log.info("all upstreams stopped in %.2fs", time.monotonic() - began)


    def activate_profile(self, name: str | None) -> ProfileConfig | None:
        """Make ``name`` the active profile (None: no profile); KeyError if there is no such profile."""
        profile = None if name is None else self.config.profiles[name]
        previous = self.active_profile
        self.active_profile = profile
        log.info("profile: %s active (was %s)", name or "no profile",
                 previous.name if previous else "none")
        return profile


def current() -> Server:
    return current_app.extensions["llama_swap"]
