"""API keys (``apiKeys``) and CORS: who may call which route, and what browsers are told.

Mirrors llama-swap's ``internal/server/auth.go`` and the routes it wraps:

* CORS: every ``OPTIONS`` request is a preflight answered here with 204 and
  permissive headers, before (and whatever) the key check: browsers never
  attach credentials to a preflight. Other responses get no CORS headers from
  this module, except ``/v1/models``, which echoes the request's ``Origin`` (Go
  sets it in that handler) and so says ``Vary: Origin``; a preflight's
  allowed headers repeat the requested ones, so it says
  ``Vary: Access-Control-Request-Headers``. Proxied responses carry whatever the upstream sent:
  adding ours as well would give a client two ``Access-Control-Allow-Origin``
  values (llama-swap issue #85).
* Keys: with no ``apiKeys`` everything is open (llama-swap is default-allow).
  Otherwise every route but the few in ``OPEN_PATHS`` / ``OPEN_PREFIXES`` needs
  a key, read the way llama-swap reads it (``extract_key``). A missing or wrong
  key is a 401 with ``WWW-Authenticate: Basic realm="llama-swap"`` (so a
  browser opening the UI asks for it; the key is the password). An accepted
  key is removed from the request (``Authorization``, ``x-api-key``) so it is
  never forwarded to an upstream. Keys are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import Iterable, Mapping

from flask import Flask, Response, request

from app.errors import error_response
from app.observe.redact import STRIPPED_CREDENTIALS
from app.runtime.server import current

log = logging.getLogger("llama-swap")

# Open even when keys are set: what a browser needs to load the UI (which then
# gets the Basic prompt from the API it calls) and health probes. /metrics is
# not open (llama-swap leaves it unauthenticated): token counts and model
# names are the key holder's business, and Prometheus can send a bearer token.
OPEN_PATHS = frozenset({"/", "/health", "/wol-health", "/favicon.ico", "/upstream", "/ui"})
OPEN_PREFIXES = ("/ui/",)

UNAUTHORIZED_MESSAGE = "unauthorized: invalid or missing API key"
CHALLENGE = 'Basic realm="llama-swap"'

PREFLIGHT_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
PREFLIGHT_DEFAULT_ALLOW_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With"
PREFLIGHT_MAX_AGE = "86400"
ORIGIN_ECHO_PATHS = frozenset({"/v1/models", "/models"})

# WSGI environ keys of the headers that may carry a key.
_KEY_ENVIRON = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")


def needs_key(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


def extract_key(headers: Mapping[str, str]) -> bytes:
    """The key a request offers: Basic password, else Bearer token, else ``x-api-key``; b"" if none.

    Raw bytes, as llama-swap compares them: WSGI hands header values over
    decoded as latin-1, so encoding them back gives what the client sent.
    """
    bearer = basic = b""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        bearer = _raw(authorization[len("Bearer "):])
    elif authorization.startswith("Basic "):
        basic = _basic_password(authorization[len("Basic "):])
    return basic or bearer or _raw(headers.get("x-api-key", ""))


def _raw(header_value: str) -> bytes:
    return header_value.encode("latin-1", errors="replace")


def _basic_password(encoded: str) -> bytes:
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""
    _user, sep, password = decoded.partition(b":")
    return password if sep else b""


def key_is_valid(provided: bytes, keys: Iterable[str]) -> bool:
    """Compare against every key in constant time: neither timing nor an early exit tells which matched."""
    offered = hashlib.sha256(provided).digest()
    valid = False
    for key in keys:
        # Hashing first makes every comparison the same length, so not even
        # the length of a configured key leaks.
        valid |= hmac.compare_digest(offered, hashlib.sha256(key.encode("utf-8")).digest())
    return valid and provided != b""


def sanitize_request_headers(value: str) -> str:
    """``Access-Control-Request-Headers`` with every name outside the HTTP token grammar dropped."""
    names = (part.strip() for part in value.split(","))
    return ", ".join(name for name in names if name and set(name) <= _TOKEN_CHARS)


def preflight_response() -> Response:
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = PREFLIGHT_ALLOW_METHODS
    requested = request.headers.get("Access-Control-Request-Headers", "")
    response.headers["Access-Control-Allow-Headers"] = (
        sanitize_request_headers(requested) if requested else PREFLIGHT_DEFAULT_ALLOW_HEADERS)
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    response.vary.add("Access-Control-Request-Headers")  # Allow-Headers repeats them
    return response


def unauthorized_response() -> Response:
    response = error_response(401, UNAUTHORIZED_MESSAGE)
    response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def install(app: Flask) -> None:
    """Register the preflight answer, the key check and the CORS response headers on ``app``."""

    @app.before_request
    def _preflight_then_key_check() -> Response | None:
        if request.method == "OPTIONS":
            return preflight_response()
        keys = current().config.api_keys  # read per request: --watch-config may swap the config
        if not keys or not needs_key(request.path):
            return None
        if not key_is_valid(extract_key(request.headers), keys):
            log.info("401 %s %s from %s: invalid or missing API key",
                     request.method, request.path, request.remote_addr)
            return unauthorized_response()
        taken = tuple(name for name in _KEY_ENVIRON if request.environ.pop(name, None) is not None)
        if taken:
            request.environ[STRIPPED_CREDENTIALS] = taken  # a capture shows they were sent, redacted
        return None

    @app.after_request
    def _echo_origin(response: Response) -> Response:
        if request.path not in ORIGIN_ECHO_PATHS or response.status_code >= 400:
            return response
        response.vary.add("Origin")  # with or without one: a cache must not answer another origin with it
        origin = request.headers.get("Origin")
        if origin and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = origin
        return response
