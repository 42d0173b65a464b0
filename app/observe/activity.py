"""Activity records: one per metered request, what it is made of, and how it reads as JSON.

A metered exchange ends as a ``Finished`` (what the meter saw: statuses,
timings, a sample of the answer, the parts a capture would keep); the
recorder turns it into an ``ActivityRecord`` (``record_of``: tokens read,
the error named) and a ``Capture`` (``capture_of``), after the client has
its answer.

The record is llama-swap's ``ActivityLogEntry`` (``id``, ``timestamp`` of
completion, ``model``, ``req_path``, ``resp_content_type``,
``resp_status_code``, ``tokens``, ``duration_ms``, ``has_capture``,
``error_msg``, ``metadata``) plus where the time went: ``queue_ms`` (waiting
for the router's grant), ``load_ms`` (of that, the model starting: 0 when it
was ready) and ``ttfb_ms`` (the first body byte sent; null when none was).
``duration_ms`` is the wall time from arrival, or llama.cpp's own
``prompt_ms + predicted_ms`` when that is larger. ``timestamp`` keeps
sub-second precision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from app.observe import tokens
from app.observe.captures import REQ_BODY, REQ_HEADERS, RESP_BODY, RESP_HEADERS, Capture, header_map
from app.observe.timestamps import rfc3339
from app.observe.tokens import BodySample, TokenMetrics

ERROR_PATHS = (("error", "message"), ("error",), ("message",), ("detail",))
ERROR_MAX = 500  # characters of an upstream's error message kept


@dataclass(frozen=True)
class ActivityRecord:
    id: int
    timestamp: float  # unix seconds, completion
    model: str
    req_path: str
    resp_content_type: str = ""
    resp_status_code: int = 0
    tokens: TokenMetrics = tokens.UNKNOWN
    duration_ms: int = 0
    queue_ms: int = 0
    load_ms: int = 0
    ttfb_ms: int | None = None
    error_msg: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self, has_capture: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id, "timestamp": rfc3339(self.timestamp), "model": self.model,
            "req_path": self.req_path, "resp_content_type": self.resp_content_type,
            "resp_status_code": self.resp_status_code, "tokens": self.tokens.to_json(),
            "duration_ms": self.duration_ms, "queue_ms": self.queue_ms, "load_ms": self.load_ms,
            "ttfb_ms": self.ttfb_ms, "has_capture": has_capture}
        if self.error_msg:
            entry["error_msg"] = self.error_msg
        if self.metadata:
            entry["metadata"] = self.metadata
        return entry


@dataclass(eq=False)
class Finished:
    """A metered exchange as it ended: the raw material of its record and capture."""

    model: str
    req_path: str  # the client's path, without the query
    route: str  # the model-dispatched path it is metered as (``/upstream/m/v1/...``: ``/v1/...``)
    ended_at: float  # unix seconds
    status: int
    content_type: str
    content_encoding: str
    streamed: bool  # an SSE answer: ``sample`` is its head and tail
    sample: BodySample | None  # None while ``response_chunks`` holds the whole answer (see ``sample_of``)
    total: float  # seconds, arrival to end
    queued: float
    loading: float
    first_byte: float | None
    error: str | None  # the proxy's word when the answer did not complete
    metadata: dict[str, str]
    mask: int = 0  # which capture parts (``captures.mask_for``); 0: no capture
    request_headers: list[tuple[str, str]] | None = None
    request_body: bytes | None = None
    response_headers: list[tuple[str, str]] | None = None
    response_chunks: list[bytes] | None = None  # the answer as sent, when it is captured whole


def record_of(id: int, finished: Finished) -> ActivityRecord:
    """The record of ``finished``: its tokens read from the sample, its error named."""
    sample = sample_of(finished)
    body = _answer_body(finished, sample)
    reading = None
    if finished.status == 200 and body:
        if finished.streamed:
            reading = tokens.read_sse(body)
        elif sample is not None and not sample.gap:
            reading = tokens.read_json(body, infill=finished.route.startswith("/infill"))
    duration_ms = round(finished.total * 1000)
    if reading is not None and reading.upstream_ms is not None:
        duration_ms = max(duration_ms, reading.upstream_ms)
    error = finished.error or ""
    if finished.status != 200:
        error = error_message(finished.status, body, finished.error)
    return ActivityRecord(
        id=id, timestamp=finished.ended_at, model=finished.model, req_path=finished.req_path,
        resp_content_type=finished.content_type, resp_status_code=finished.status,
        tokens=reading.tokens if reading is not None else tokens.UNKNOWN, duration_ms=duration_ms,
        queue_ms=round(finished.queued * 1000), load_ms=round(finished.loading * 1000),
        ttfb_ms=None if finished.first_byte is None else round(finished.first_byte * 1000),
        error_msg=error, metadata=finished.metadata)


def capture_of(id: int, finished: Finished) -> Capture | None:
    """The parts of ``finished`` its route keeps; a failure keeps no response body; None: nothing to keep."""
    mask = finished.mask
    if not mask:
        return None
    body = None
    if mask & RESP_BODY and finished.status == 200:
        if finished.response_chunks is None:
            return None  # larger than the whole budget: not kept at all
        body = tokens.decoded(b"".join(finished.response_chunks), finished.content_encoding)
    return Capture(
        id=id, req_path=finished.req_path,
        req_headers=header_map(finished.request_headers or ()) if mask & REQ_HEADERS else None,
        req_body=finished.request_body if mask & REQ_BODY else None,
        resp_headers=header_map(finished.response_headers or ()) if mask & RESP_HEADERS else None,
        resp_body=body)


def error_message(status: int, body: bytes | None, proxy_error: str | None = None) -> str:
    """A failed answer in words: the upstream's message (≤500 characters), else the proxy's, else the status."""
    message = _message_in(body) if body else ""
    if not message:
        message = (proxy_error or "").strip()
    if message:
        return message if len(message) <= ERROR_MAX else message[:ERROR_MAX] + "..."
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _message_in(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    for path in ERROR_PATHS:
        value: Any = parsed
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def sample_of(finished: Finished) -> BodySample | None:
    """The answer's sample: the meter's, or taken here (off the client's path) from the captured chunks."""
    if finished.sample is not None or finished.response_chunks is None:
        return finished.sample
    sample = tokens.stream_sample() if finished.streamed else tokens.body_sample()
    for chunk in finished.response_chunks:
        sample.add(chunk)
    return sample


def _answer_body(finished: Finished, sample: BodySample | None) -> bytes | None:
    if sample is None:
        return None
    body = sample.body()
    if finished.content_encoding and not sample.gap:
        return tokens.decoded(body, finished.content_encoding)
    return body
