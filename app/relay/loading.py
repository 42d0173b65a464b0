"""Loading state (``sendLoadingState``): the progress a streamed chat completion shows while its model loads.

This module owns that one kind of response, from the moment the view decides
a request gets it to the end of its body. The client is answered 200
``text/event-stream`` at once (only a grant or a refusal that comes within
``IMMEDIATE_ANSWER`` is answered plainly: a 429 keeps its status); while the
router's grant is awaited, progress
goes out as OpenAI ``chat.completion.chunk`` events whose delta carries only
``reasoning_content`` (shown as "thinking" by chat UIs): a rule line,
``llama-swap loading model: <id>``, a dot per tick, a status line whenever
the wait changes (queued at position N, stopping other models, starting),
then ``Done! (<seconds>s)`` and the rule again, as Go's llama-swap writes
them (clients strip that banner by those exact lines). The upstream's own
stream then follows, byte for byte, on the same response.

Once the headers are out an error can no longer be a status: a load that
fails, or an upstream that answers non-200, ends the stream with an
OpenAI-style ``data: {"error": {...}}`` event and ``data: [DONE]`` (the
``openai`` SDK raises ``APIError`` on it). An upstream stream cut short
(``forward.StreamBroken``) gets the error event, then the connection is
dropped as on any other stream: no ``[DONE]``, the answer is not whole.

The wait itself is ``app.relay.grants.GrantWait``'s (the one wait for a
grant), in ticks of ``TICK`` seconds.

Invariants: the router's ticket is cancelled if the client leaves while it
waits, a lease taken is released exactly once, and the request's exchange
ends exactly once, on every path (normal end, failure, a hang-up noticed by
the socket watch, by a failed write, or a body that is never iterated):
``LoadingStream.close`` is the one place.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Callable, Iterator, Mapping

from flask import Response

from app.config.model import ModelConfig
from app.errors import Refusal, error_body, status_and_code
from app.observe.exchange import Exchange, Outcome
from app.relay.forward import StreamBroken
from app.relay.grants import GrantWait, Grant
from scheduler.errors import ClientGone
from scheduler.router import Router
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.loading")

CHAT_PATHS = frozenset({"/v1/chat/completions", "/v/chat/completions"})
RULE = "━━━━━"  # Go's banner delimiter; clients match it to strip the banner
TICK = 0.75  # seconds between dots
REMIND_EVERY = 10.0  # seconds: an unchanged status is repeated so the elapsed time shows
UPSTREAM_ERROR_BYTES = 64 * 1024  # read at most this much of an upstream's error body
DONE_EVENT = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --------------------------------------------------------------------------- deciding


def wants_loading_state(path: str, payload: Mapping[str, Any] | None, model: ModelConfig,
                        default: bool, state: ProcessState | None) -> bool:
    """A streamed chat completion, loading state on for ``model``, and the model not ready."""
    enabled = default if model.send_loading_state is None else model.send_loading_state
    return (enabled and path in CHAT_PATHS and payload is not None and payload.get("stream") is True
            and state is not ProcessState.READY)


# --------------------------------------------------------------------------- the text


def opening_lines(model: str) -> list[str]:
    return [RULE + "\n", f"llama-swap loading model: {model}\n"]


def closing_lines(elapsed: float) -> list[str]:
    return [f"\nDone! ({elapsed:.2f}s)\n", RULE + "\n", " \n"]


def failure_lines(model: str, message: str, elapsed: float) -> list[str]:
    return [f"\nUnable to load model {model} after {elapsed:.2f}s: {message}\n", RULE + "\n", " \n"]


def describe_wait(model: str, state: ProcessState | None, position: int | None) -> str:
    """What a waiting request is waiting for, in words."""
    if position is not None:
        return f"queued at position {position}, waiting for running models to finish"
    if state is ProcessState.STARTING:
        return f"starting {model}, waiting for it to become healthy"
    if state is ProcessState.STOPPING:
        return f"waiting for {model} to finish stopping"
    if state is ProcessState.READY:
        return f"{model} is ready, waiting for a free slot"
    return "waiting for other models to stop"


def status_line(description: str, elapsed: float) -> str:
    return f"\n{description} ({elapsed:.1f}s)\n"


class Progress:
    """Decides what one tick says: a status line when the wait changed (or a reminder), else a dot."""

    def __init__(self, model: str, remind_every: float = REMIND_EVERY):
        self._model = model
        self._remind_every = remind_every
        self._last: str | None = None
        self._last_at = 0.0

    def tick(self, elapsed: float, state: ProcessState | None, position: int | None) -> str:
        description = describe_wait(self._model, state, position)
        if description != self._last or elapsed - self._last_at >= self._remind_every:
            self._last, self._last_at = description, elapsed
            return status_line(description, elapsed)
        return "."


class ChunkWriter:
    """Encodes reasoning text as complete ``chat.completion.chunk`` SSE events of one response."""

    def __init__(self, model: str, *, chunk_id: str | None = None, created: int | None = None):
        self.model = model
        self.chunk_id = chunk_id or "chatcmpl-llamaswap-" + uuid.uuid4().hex[:24]
        self.created = int(time.time()) if created is None else created
        self._first = True

    def reasoning(self, text: str) -> bytes:
        delta: dict[str, Any] = {"reasoning_content": text}
        if self._first:  # an OpenAI stream opens with the role
            delta = {"role": "assistant", **delta}
            self._first = False
        chunk = {"id": self.chunk_id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        return sse_event(chunk)


def sse_event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    """The error a stream ends with: the same object ``app.errors`` answers as a body."""
    return sse_event(error_body(status, message, code))


def upstream_error_message(status: int, body: bytes) -> str:
    """The message of an upstream's error body (OpenAI / llama-server JSON, or its text)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    text = body.decode("utf-8", "replace").strip()
    return f"upstream answered {status}" + (f": {text[:500]}" if text else "")


# --------------------------------------------------------------------------- the stream


Send = Callable[[Grant], Response]  # app.relay.forward.forward with everything but the grant bound


class LoadingStream:
    """One response's body: progress while the grant is awaited, then the upstream's stream.

    It is the WSGI response iterable itself (passed through as is), so the
    server's ``close()`` reaches ``close`` here, which frees whatever is
    still held, whether the body ran to its end, stopped at a failed write,
    or never started.
    """

    def __init__(self, wait: GrantWait, exchange: Exchange, send: Send, *,
                 tick: float = TICK, remind_every: float = REMIND_EVERY):
        self._wait = wait
        self._exchange = exchange
        self._model = wait.model
        self._send = send
        self._tick = tick
        self._progress = Progress(self._model, remind_every)
        self._chunks = ChunkWriter(self._model)
        self._upstream: Response | None = None
        self._closed = False
        self._body = self._events()

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def _events(self) -> Iterator[bytes]:
        for line in opening_lines(self._model):
            yield self._chunks.reasoning(line)
        ticks = self._wait.until_granted(self._tick)
        try:
            for _ in ticks:
                text = self._progress.tick(self._elapsed(), self._wait.state(), self._wait.queue_position())
                yield self._chunks.reasoning(text)
        except ClientGone as exc:
            log.info("%s: client went away while the loading state was streamed", self._model)
            self._exchange.refuse(status_and_code(exc)[0], exc.message)
            return
        except Refusal as exc:
            status, code = status_and_code(exc)
            log.warning("%s: load failed after %.2fs; error sent in the loading stream: %s",
                        self._model, self._elapsed(), exc.message)
            self._exchange.refuse(status, exc.message)
            yield from self._fail(status, exc.message, code, lines=True)
            return
        finally:
            ticks.close()  # stops the hang-up watch at once, even when the body is closed mid-wait
        lease = self._wait.lease
        for line in closing_lines(self._elapsed()):
            yield self._chunks.reasoning(line)
        try:
            self._upstream = self._send(lease)  # owns the lease and the exchange from here
        except Refusal as exc:  # unreachable / timed out: forward released the lease
            status, code = status_and_code(exc)
            yield from self._fail(status, exc.message, code)
            return
        if self._upstream.status_code != 200:
            body = self._read_error_body(self._upstream)
            message = upstream_error_message(self._upstream.status_code, body)
            # Its answer (an error) reached the client, as an event: told before
            # the relay is closed part-read, which would read as a hang-up.
            self._exchange.end(Outcome.COMPLETE, error=message)
            log.warning("%s: upstream answered %d after the loading state was sent; error sent in the stream: %s",
                        self._model, self._upstream.status_code, message)
            yield from self._fail(self._upstream.status_code, message)
            return
        try:
            yield from self._upstream.response  # type: ignore[misc]
        except StreamBroken as exc:
            # Cut mid-answer: say why in the stream, then break it (no [DONE]: the answer is not whole).
            yield error_event(502, exc.message)
            raise

    def _fail(self, status: int, message: str, code: str | None = None, *, lines: bool = False) -> Iterator[bytes]:
        if lines:
            for line in failure_lines(self._model, message, self._elapsed()):
                yield self._chunks.reasoning(line)
        yield error_event(status, message, code)
        yield DONE_EVENT

    @staticmethod
    def _read_error_body(upstream: Response) -> bytes:
        body = b""
        for chunk in upstream.response:  # type: ignore[union-attr]
            body += chunk
            if len(body) >= UPSTREAM_ERROR_BYTES:
                break
        return body[:UPSTREAM_ERROR_BYTES]

    def _elapsed(self) -> float:
        return time.monotonic() - self._exchange.began

    def close(self) -> None:
        """Leave the queue if still in it; release a lease granted but never sent; close the upstream."""
        if self._closed:
            return
        self._closed = True
        self._body.close()  # runs its pending finally (the hang-up watch)
        if self._upstream is not None:
            self._upstream.close()  # releases its lease and ends the exchange (idempotent)
            return
        self._wait.abandon()
        self._exchange.refuse(499, "client went away while the loading state was streamed")


def serve(router: Router, model: str, environ: dict, exchange: Exchange, send: Send) -> Response:
    """Answer a chat completion for a model that is not ready: loading state, then the upstream.

    A quick answer (granted at once, or refused at once: 429, shutting down)
    is given as it would be without loading state, so an error keeps its
    HTTP status.
    """
    wait = GrantWait(router, model, environ, exchange)
    lease = wait.at_once()  # raises a quick refusal as the plain error it is
    if lease is not None:
        return send(lease)
    stream = LoadingStream(wait, exchange, send)
    return Response(stream, status=200, mimetype="text/event-stream", headers=SSE_HEADERS,
                    direct_passthrough=True)
