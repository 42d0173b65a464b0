"""Every error the HTTP layer answers, shaped as OpenAI expects, mapped in one place.

Views raise; ``register_error_handlers`` turns ``RouteError`` (from the
scheduler or the proxy) and werkzeug's HTTP errors into
``{"src": "llama-swap", "error": {"message", "type", "param", "code"}}`` with
the right status, so no view carries try/except for error shaping.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from scheduler.errors import RouteError

log = logging.getLogger("llama-swap.http")

_TYPE_AND_CODE = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


class BadRequest(RouteError):
    status = 400


class UpstreamUnreachable(RouteError):
    status = 502


def error_response(status: int, message: str, code: str | None = None) -> Response:
    kind, default_code = _TYPE_AND_CODE.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", str(status)))
    body = {"src": "llama-swap", "error": {
        "message": message, "type": kind, "param": None, "code": code or default_code}}
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    if status == 429:
        response.headers["Retry-After"] = "1"
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RouteError)
    def _route_error(exc: RouteError) -> Response:
        return error_response(exc.status, exc.message, exc.code)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, f"internal error: {exc}")
