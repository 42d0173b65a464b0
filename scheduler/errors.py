"""The errors a routed request can end with, each carrying its HTTP status.

The scheduler hands these to callers through ``Effects.grant_error``; the HTTP
layer turns them into OpenAI- or Anthropic-shaped JSON in one place.
"""

from __future__ import annotations


class RouteError(Exception):
    """A request could not be served; ``status`` is the HTTP status to answer."""

    status: int = 500
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class ModelNotFound(RouteError):
    status = 404


class ConcurrencyLimited(RouteError):
    status = 429
    code = "concurrency_limit"


class StartFailed(RouteError):
    """The upstream did not become ready: it exited, timed out, or was stopped."""

    status = 502


class Unloaded(RouteError):
    """The model was unloaded (API) while the request waited for it."""

    status = 503


class ShuttingDown(RouteError):
    status = 503


class ClientGone(RouteError):
    """The client hung up before it was served (nginx's 499); nobody reads this answer."""

    status = 499
