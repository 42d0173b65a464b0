"""``/api/events`` (SSE) and ``/api/events/ws`` (the same feed over a websocket), and ``/api/inflight/<id>/cancel``.

On connect a client gets llama-swap's initial payload, in its order: the
proxy's log history and the upstreams' (``logData``), ``modelStatus``,
``metrics`` (the activity records kept in memory, oldest first, as
llama-swap sent them before v218: its older web UI fills its Activity page
from them), ``uiConfig``, ``profileChanged`` and an ``inflight`` snapshot
(with llama-swap's older ``total``); then every message as it happens
(``app.observe.feed``). A client that reconnects with
``Last-Event-ID`` (the header ``EventSource`` sends by itself, or
``?last_event_id=``) gets only the messages it missed, when the feed's
buffer still holds them all; otherwise the initial payload again.

SSE framing is llama-swap's (``event:message``, ``data:`` a JSON envelope
whose ``data`` is itself JSON text), plus an ``id:`` line per message, a
``retry:`` hint, and a comment line every ``HEARTBEAT`` seconds so proxies
in between do not close an idle stream. Messages that come close together
go out in one write: a client waits ``coalesce()`` after the first before
writing, a window that grows with the number of clients (up to
``COALESCE_MAX``), so a thousand dashboards cost the server a bounded
number of writes per second, not a thousand per message. A client that
falls so far behind that the buffer moved past it is told so in a comment
and its stream is ended: its ``EventSource`` reconnects and resyncs.
Websocket frames are text, one JSON object per message: ``{"id", "type",
"data"}``.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Iterator

import gevent
from flask import Blueprint, Response, jsonify, request
from flask_sock import Sock

from app.errors import NotFound
from app.observe.feed import EventFeed, FellBehind, Message, Reader
from app.relay.hangup import HangupWatch
from app.routes.common import released
from app.routes.metrics_api import entries
from app.runtime.server import Server, current, model_status

log = logging.getLogger("llama-swap.proxy")

bp = Blueprint("events", __name__)
sock = Sock()

HEARTBEAT = 15.0  # seconds of quiet before a comment line goes out
RETRY_MS = 1000  # EventSource's reconnect delay
COALESCE_PER_CLIENT = 0.00025  # seconds of batching window per connected client...
COALESCE_MAX = 0.25  # ...up to this (llama-swap itself throttles in-flight progress to 250 ms)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"}


def initial_messages(server: Server, feed: EventFeed, activity_through: int) -> list[Message]:
    """What a newly connected client is told first, as llama-swap orders it; ids are the feed's newest.

    ``activity_through``: the newest activity id the feed had told when the client's reader was made; the
    ``metrics`` list stops there, the reader gets the later ones.
    """
    observatory = server.observatory
    logs = observatory.logs
    messages = [feed.message("logData", {"source": source, "data": monitor.history().decode("utf-8", "replace")})
                for source, monitor in (("proxy", logs.proxy), ("upstream", logs.upstream))]
    active = server.active_profile.name if server.active_profile else None
    kept = entries([record for record in observatory.activity.recent() if record.id <= activity_through],
                   observatory)
    requests = observatory.inflight.snapshot()
    messages += [
        feed.message("modelStatus", model_status(server)),
        feed.message("metrics", kept),
        feed.message("uiConfig", {"activity": {"session_id": list(server.config.ui_session_headers)}}),
        feed.message("profileChanged", {"active": active}),
        feed.message("inflight", {"operation": "snapshot", "requests": requests, "total": len(requests)}),
    ]
    return messages


def coalesce(feed: EventFeed) -> float:
    """How long a client lets messages gather before writing them (about a millisecond with a handful of
    clients). Jittered by ±50 %: clients woken by the same message then write at different moments, not
    in one burst that would hold every request up behind a thousand writes."""
    return min(COALESCE_MAX, feed.subscribers * COALESCE_PER_CLIENT) * random.uniform(0.5, 1.5)


def open_reader(server: Server, last_event_id: str | None) -> tuple[Reader, list[Message]]:
    """A reader resuming after ``last_event_id`` when it can (nothing to send first), else one from now
    with the initial payload to send first."""
    feed = server.observatory.feed
    resume = feed.resumable(last_event_id) if last_event_id else None
    if resume is not None:
        return feed.reader(after=resume), []
    reader = feed.reader()
    return reader, initial_messages(server, feed, feed.activity_through)


def next_batch(feed: EventFeed, reader: Reader) -> list[Message] | None:
    """The next messages, gathered for ``coalesce()``; None when a heartbeat is due first or the reader closed.

    Raises ``FellBehind`` when the buffer moved past the reader.
    """
    if not reader.wait(HEARTBEAT):
        return None
    window = coalesce(feed)
    if window:
        gevent.sleep(window)
    return reader.take()


def _sse_stream(server: Server, environ: dict, last_event_id: str | None) -> Iterator[bytes]:
    feed = server.observatory.feed
    reader, first = open_reader(server, last_event_id)
    watch = HangupWatch(environ, reader.close)
    try:
        yield f"retry:{RETRY_MS}\n\n".encode() + b"".join(m.sse for m in first)
        del first  # the log histories in it are up to 200 KiB: not held for the life of the stream
        while True:
            try:
                batch = next_batch(feed, reader)
            except FellBehind as behind:
                yield f": {behind.lost} messages dropped; reconnect to catch up\n\n".encode()
                return
            if batch is None:
                if reader.closed:
                    return
                yield b": keepalive\n\n"
                continue
            yield b"".join(m.sse for m in batch)
    finally:
        watch.stop()
        reader.close()


@bp.get("/api/events")
def events() -> Response:
    server = current()
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    return Response(released(_sse_stream(server, request.environ, last_event_id)), mimetype="text/event-stream",
                    headers=SSE_HEADERS, direct_passthrough=True)


@sock.route("/api/events/ws", bp=bp)
def events_ws(ws: Any) -> None:
    server = current()
    feed = server.observatory.feed
    reader, first = open_reader(server, request.args.get("last_event_id"))
    try:
        for message in first:
            ws.send(message.frame)
        del first  # not held for the life of the socket
        while ws.connected:  # a closed socket is noticed here, at the latest one heartbeat later
            try:
                batch = next_batch(feed, reader)
            except FellBehind as behind:
                ws.close(reason=1013, message=f"{behind.lost} messages dropped; reconnect to catch up")
                return
            if batch is None:
                if reader.closed:  # the feed closed it: shutting down
                    return
                continue
            for message in batch:
                ws.send(message.frame)
    finally:
        reader.close()


@bp.post("/api/inflight/<request_id>/cancel")
def cancel_inflight(request_id: str) -> Response:
    if not current().observatory.inflight.cancel(request_id):
        raise NotFound("inflight request not found")
    return jsonify({"msg": "ok"})
