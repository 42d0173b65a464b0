"""The one place errors become HTTP answers: statuses, and OpenAI- or Anthropic-shaped bodies.

Two kinds of refusal reach here. The core's (``scheduler.errors``) say what
happened and carry no status; ``CORE_STATUS`` maps each to one. The HTTP
layer's own (``ApiError`` and its kinds below: a bad body, an upstream that
cannot be reached, a model that may not be started by this request) carry
theirs. Views raise either; ``register_error_handlers`` answers them as
``{"src": "llama-swap", "error": {"message", "type", "param", "code"}}``
(llama-swap's envelope: the type and default code per status are Go's), and
``anthropic_error_response`` gives the ``{"type": "error", ...}`` shape the
Anthropic routes answer with. Nothing else shapes an error.

As llama-swap does, a client whose ``Accept`` names ``text/plain`` gets
``llama-swap: <message>`` as text instead, and one that names ``text/html``
(a browser) a small HTML page; a concurrency-limit 429 stays JSON whatever
was asked, as Go's does.
"""

from __future__ import annotations

import html
import json
import logging

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException

from scheduler.errors import (
    ClientGone, ConcurrencyLimited, InternalError, ModelNotFound, RouteError, ShuttingDown, StartFailed,
    Unloaded,
)

log = logging.getLogger("llama-swap.http")


class ApiError(Exception):
    """A refusal decided in the HTTP layer, with the status to answer."""

    status: int = 500
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class RequestTooLarge(ApiError):
    status = 413


class NotLoaded(ApiError):
    """A request that may not start its model found it not ready (llama-swap: 409)."""

    status = 409
    code = "conflict"


class UpstreamUnreachable(ApiError):
    status = 502


class UpstreamRefused(ApiError):
    """The upstream answered a websocket handshake with an HTTP status instead of 101."""

    status = 502


# The core's refusals, as HTTP: (status, code; None = the status's default code).
CORE_STATUS: dict[type[RouteError], tuple[int, str | None]] = {
    ModelNotFound: (404, None),
    ConcurrencyLimited: (429, "concurrency_limit"),
    StartFailed: (502, None),
    Unloaded: (503, None),
    ShuttingDown: (503, None),
    ClientGone: (499, None),  # nginx's "client closed request": nobody reads it
    InternalError: (500, None),
}

# What a handler may raise to be answered as an error (``status_and_code`` knows each).
Refusal = (RouteError, ApiError)

_TYPE_AND_CODE = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


ECHO_LIMIT = 200  # characters of a client's input an error message repeats


def echoed(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` as an error message may repeat it: its first ``limit`` characters, and "…" if there were more.

    A client's input can be any size (a 1 MB model name); repeating it whole
    would send it back, and into every log and capture of the answer.
    """
    return text if len(text) <= limit else text[:limit] + "…"


def status_and_code(exc: RouteError | ApiError) -> tuple[int, str | None]:
    """The HTTP status (and OpenAI ``code``, None for the status's default) ``exc`` is answered with."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    for kind in type(exc).__mro__:
        if kind in CORE_STATUS:
            return CORE_STATUS[kind]  # type: ignore[index]
    return 500, None


def error_body(status: int, message: str, code: str | None = None) -> dict:
    kind, default_code = _TYPE_AND_CODE.get(
        status, ("invalid_request_error", "invalid_request") if status < 500 else ("server_error", "internal_error"))
    return {"src": "llama-swap", "error": {"message": message, "type": kind, "param": None,
                                           "code": code or default_code}}


def error_response(status: int, message: str, code: str | None = None) -> Response:
    return _answer(status, message, error_body(status, message, code))


def anthropic_error_response(status: int, message: str) -> Response:
    """``{"type": "error", "error": {"type", "message"}}``, as Anthropic's API answers."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _answer(status, message, {"type": "error", "error": {"type": kind, "message": message}})


def _answer(status: int, message: str, body: dict) -> Response:
    """``body`` as JSON, or ``message`` as the text or HTML the request's ``Accept`` names (Go's order).

    A client that names ``application/json`` gets JSON even if it also names
    text (axios sends ``application/json, text/plain, */*``); Go answers such
    a client with text, which an OpenAI client cannot parse.
    """
    accept = request.headers.get("Accept", "") if has_request_context() else ""
    if status == 429:  # Go's concurrency-limit answer is JSON whatever the client accepts
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        response.headers["Retry-After"] = "1"
    elif "application/json" in accept:
        response = Response(json.dumps(body), status=status, mimetype="application/json")
    elif "text/plain" in accept:
        response = Response(f"llama-swap: {message}", status=status, content_type="text/plain")
    elif "text/html" in accept:
        page = f"<html><body><h1>llama-swap</h1><p>{html.escape(message)}</p></body></html>"
        response = Response(page, status=status, content_type="text/html")
    else:
        response = Response(json.dumps(body), status=status, mimetype="application/json")
    return response


def refusal_response(exc: RouteError | ApiError, *, anthropic: bool = False) -> Response:
    status, code = status_and_code(exc)
    if anthropic:
        return anthropic_error_response(status, exc.message)
    return error_response(status, exc.message, code)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RouteError)
    @app.errorhandler(ApiError)
    def _refusal(exc: RouteError | ApiError) -> Response:
        return refusal_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code is not None and exc.code < 400:
            return exc.get_response()  # werkzeug's redirects (a merged double slash): their Location is the answer
        response = error_response(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value  # a 405's Allow
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {exc}")
