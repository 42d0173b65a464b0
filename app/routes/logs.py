"""``/logs*``: the combined log's history, and live tails of every log monitor.

``GET /logs`` answers the mux's history as text (a browser, whose ``Accept``
names ``text/html``, is sent to ``/ui/``). ``GET /logs/stream[/<id>]``
tails one monitor, chunked text, never buffered: ``<id>`` is empty (the
mux), ``proxy``, ``upstream``, or a model id or alias (ids may hold slashes);
anything else is a 400. The history goes first unless the query has the key
``no-history``; then whatever is written, until the client hangs up or the
app shuts down (``LogHub.close``).
"""

from __future__ import annotations

from typing import Iterator

from flask import Blueprint, Response, redirect, request

from app.errors import BadRequest
from app.observe.logs import LogMonitor, LogStream
from app.relay.hangup import HangupWatch
from app.routes.common import released
from app.runtime.server import Server, current

bp = Blueprint("logs", __name__)

STREAM_HEADERS = {"X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"}
INVALID_LOGGER = "invalid logger. Use 'proxy', 'upstream' or a model's ID"


@bp.get("/logs")
def history() -> Response:
    if "text/html" in request.headers.get("Accept", ""):
        return redirect("ui/", code=302)  # relative: right behind a sub-path proxy
    return Response(current().observatory.logs.mux.history(), mimetype="text/plain")


@bp.get("/logs/stream")
@bp.get("/logs/stream/")
@bp.get("/logs/stream/<path:name>")
def stream(name: str = "") -> Response:
    monitor = find_monitor(current(), name)
    if monitor is None:
        raise BadRequest(INVALID_LOGGER)
    backlog = b"" if "no-history" in request.args else monitor.history()
    tail = LogTail(monitor.subscribe(), backlog, request.environ)
    return Response(tail, mimetype="text/plain", headers=STREAM_HEADERS, direct_passthrough=True)


def find_monitor(server: Server, name: str) -> LogMonitor | None:
    """The monitor ``name`` means: "" the mux, ``proxy``, ``upstream``, else a local model's (by id or alias)."""
    logs = server.observatory.logs
    fixed = {"": logs.mux, "proxy": logs.proxy, "upstream": logs.upstream}
    if name in fixed:
        return fixed[name]
    model = server.config.resolve(name)
    return logs.model(model) if model is not None else None


class LogTail:
    """One live tail's body: the backlog, then each batch written, until closed.

    The WSGI response iterable itself, so the server's ``close()`` (after the
    last chunk, a failed write, or never iterating) frees the subscription
    and the hang-up watch. A client that hangs up while nothing is written
    is noticed by the watch, which closes the subscription and so ends the
    body.
    """

    def __init__(self, live: LogStream, backlog: bytes, environ: dict):
        self._live = live
        self._backlog = backlog
        self._watch = HangupWatch(environ, live.close)

    def __iter__(self) -> Iterator[bytes]:
        return released(self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        backlog, self._backlog = self._backlog, b""
        yield backlog  # possibly empty: the headers go out at once either way
        del backlog  # up to 100 KiB: not held while the log is quiet
        while True:
            data = self._live.get()
            if data is None:  # closed: the client left or the app is shutting down
                return
            yield data
            del data

    def close(self) -> None:
        self._watch.stop()
        self._live.close()
