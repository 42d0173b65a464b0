"""``hooks.on_startup.preload``: load the listed models at start, in order, through the router.

Each model is asked for exactly as a request would ask (so groups or the
matrix decide what stays loaded: two preloaded models that cannot run
together end with the second one running) and released at once. It runs in
the background: the server answers requests while models load.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import gevent

from scheduler.errors import RouteError
from scheduler.router import Router

log = logging.getLogger("llama-swap")


def preload(router: Router, models: Sequence[str]) -> gevent.Greenlet | None:
    """Load ``models`` one after the other in a background greenlet (None when there are none)."""
    if not models:
        return None

    def run() -> None:
        for model in models:
            began = time.monotonic()
            try:
                router.submit(model, lambda: {"by": "preload"}).wait().release()
            except RouteError as exc:
                log.warning("preload %s failed: %s", model, exc.message)
                continue
            log.info("preloaded %s in %.2fs", model, time.monotonic() - began)

    return gevent.spawn(run)
