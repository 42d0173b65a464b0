"""``/api/events`` (SSE) and ``/api/events/ws`` (the same feed over a websocket), and ``/api/inflight/<id>/cancel``.

On connect a client gets llama-swap's initial payload, in its order: the
proxy's log history and the upstreams' (``logData``), ``modelStatus``,
``uiConfig``, ``profileChanged`` and an ``inflight`` snapshot; then every
message as it happens (``app.observe.feed``). A client that reconnects with
``Last-Event-ID`` (the header ``EventSource`` sends by itself, or
``?last_event_id=`` on the websocket) gets only the messages it missed, when
the replay buffer still holds them all; otherwise the initial payload again.

SSE framing is llama-swap's (``event:message``, ``data:`` a JSON envelope
whose ``data`` is itself JSON text), plus an ``id:`` line per message, a
``retry:`` hint, and a comment line every ``HEARTBEAT`` seconds so proxies
in between do not close an idle stream. A client that falls so far behind
that its queue dropped messages is told so in a comment and its stream is
ended: its ``EventSource`` reconnects with its last id and catches up from
the replay buffer, or resyncs. Websocket frames are text, one JSON object
per message: ``{"id", "type", "data"}``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from flask import Blueprint, Response, jsonify, request
from flask_sock import Sock

from app.errors import NotFound
from app.observe.feed import EventFeed, Message
from app.relay.hangup import HangupWatch
from app.runtime.server import Server, current, model_status

log = logging.getLogger("llama-swap.proxy")

bp = Blueprint("events", __name__)
sock = Sock()

HEARTBEAT = 15.0  # seconds of quiet before a comment line goes out
RETRY_MS = 1000  # EventSource's reconnect delay
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"}


def initial_messages(server: Server, feed: EventFeed) -> list[Message]:
    """What a newly connected client is told first, as llama-swap orders it; ids are the feed's newest."""
    logs = server.observatory.logs
    messages = [feed.message("logData", {"source": source, "data": monitor.history().decode("utf-8", "replace")})
                for source, monitor in (("proxy", logs.proxy), ("upstream", logs.upstream))]
    active = server.active_profile.name if server.active_profile else None
    messages += [
        feed.message("modelStatus", model_status(server)),
        feed.message("uiConfig", {"activity": {"session_id": list(server.config.ui_session_headers)}}),
        feed.message("profileChanged", {"active": active}),
        feed.message("inflight", {"operation": "snapshot", "requests": server.observatory.inflight.snapshot()}),
    ]
    return messages


def opening(server: Server, last_event_id: str | None) -> list[Message]:
    """The replay after ``last_event_id`` when it can be whole, else the initial payload."""
    feed = server.observatory.feed
    if last_event_id:
        missed = feed.replay_after(last_event_id)
        if missed is not None:
            return missed
    return initial_messages(server, feed)


def _sse_stream(server: Server, environ: dict, last_event_id: str | None) -> Iterator[bytes]:
    feed = server.observatory.feed
    subscription = feed.subscribe()  # before the snapshot: nothing falls between the two
    watch = HangupWatch(environ, subscription.close)
    try:
        yield f"retry:{RETRY_MS}\n\n".encode() + b"".join(m.sse() for m in opening(server, last_event_id))
        while not subscription.closed:
            item = subscription.get(HEARTBEAT)
            if item is None:
                if not subscription.closed:
                    yield b": keepalive\n\n"
                continue
            batch = [item.event.sse()]
            while subscription.pending():  # whatever piled up goes out in one write
                batch.append(subscription.get(0).event.sse())  # type: ignore[union-attr]
            if subscription.dropped:
                batch.append(f": {subscription.dropped} messages dropped; reconnect to catch up\n\n".encode())
                yield b"".join(batch)
                return
            yield b"".join(batch)
    finally:
        watch.stop()
        subscription.close()


@bp.get("/api/events")
def events() -> Response:
    server = current()
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    return Response(_sse_stream(server, request.environ, last_event_id), mimetype="text/event-stream",
                    headers=SSE_HEADERS, direct_passthrough=True)


def _frame(message: Message) -> str:
    return f'{{"id":"{message.id}","type":"{message.type}","data":{message.data}}}'


@sock.route("/api/events/ws", bp=bp)
def events_ws(ws: Any) -> None:
    server = current()
    feed = server.observatory.feed
    subscription = feed.subscribe()
    try:
        for message in opening(server, request.args.get("last_event_id")):
            ws.send(_frame(message))
        while ws.connected:
            item = subscription.get(HEARTBEAT)
            if subscription.dropped:
                ws.close(reason=1013, message=f"{subscription.dropped} messages dropped; reconnect to catch up")
                return
            if item is not None:
                ws.send(_frame(item.event))
    finally:
        subscription.close()


@bp.post("/api/inflight/<request_id>/cancel")
def cancel_inflight(request_id: str) -> Response:
    if not current().observatory.inflight.cancel(request_id):
        raise NotFound("inflight request not found")
    return jsonify({"msg": "ok"})
