"""The ways a routed request can end without being served: plain domain errors.

The scheduler and the process owners hand these to waiting callers. They say
what happened, never how to answer it: the HTTP layer (``app.errors``) maps
each kind to a status and an OpenAI- or Anthropic-shaped body in one place.
"""

from __future__ import annotations


class RouteError(Exception):
    """A request could not be served; ``message`` says why, in words a user can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelNotFound(RouteError):
    """No such model (or alias, selector, peer model)."""


class ConcurrencyLimited(RouteError):
    """The model already holds its ``concurrencyLimit`` of requests, in flight or waiting."""


class StartFailed(RouteError):
    """The upstream did not become ready: it exited, timed out, or was stopped."""


class Unloaded(RouteError):
    """The model was unloaded (API) while the request waited for it."""


class ShuttingDown(RouteError):
    """The server (or this router, on a config reload) is shutting down."""


class ClientGone(RouteError):
    """The client hung up before it was served; nobody reads this answer."""


class InternalError(RouteError):
    """A bug in the core ended the wait; the log has the traceback."""
