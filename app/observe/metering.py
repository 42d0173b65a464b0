"""The meter: the exchange observer that decides which requests are metered and samples their answers.

Metered (llama-swap's rule): a POST to a model-dispatched inference path,
directly or as ``/upstream/<model>/<inference path>``. For each, while it
runs, the meter keeps what its record and capture need and nothing more: a
``tokens.BodySample`` of the answer (a stream's head and tail, a JSON body up
to a bound), and, when captures are on and the route keeps the response
body, the chunks as sent, by reference, until they exceed the capture
budget (then that capture is dropped: it could not be kept anyway). When the
exchange ends, its ``Finished`` goes to the recorder; reading tokens,
compressing and storing happen there, after the client has its answer.
"""

from __future__ import annotations

from typing import Callable

from app.observe import tokens
from app.observe.activity import Finished
from app.observe.captures import RESP_BODY, mask_for
from app.observe.redact import request_header_list
from app.observe.exchange import Exchange, ExchangeObserver, Outcome
from app.observe.tokens import BodySample

UPSTREAM_PREFIX = "/upstream/"

# The model-dispatched POST paths whose answers are metered (llama-swap's list).
METERED_PATHS = frozenset({
    "/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/embeddings", "/reranking", "/rerank", "/v1/rerank", "/v1/reranking", "/infill", "/completion",
    "/v1/audio/speech", "/v1/audio/voices", "/v1/images/generations", "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img", "/v1/audio/transcriptions", "/v1/images/edits", "/audioapi/v1/tasks/run",
    "/v/chat/completions", "/v/responses", "/v/completions", "/v/messages", "/v/messages/count_tokens",
    "/v/embeddings", "/v/rerank", "/v/reranking",
})


def metered_route(exchange: Exchange) -> str | None:
    """The inference path ``exchange`` is metered as, or None when it is not metered."""
    if exchange.method != "POST":
        return None
    client_path = str((exchange.environ or {}).get("PATH_INFO") or exchange.path)
    route = exchange.path if client_path.startswith(UPSTREAM_PREFIX) else client_path
    route = route.split("?", 1)[0]
    return route if route in METERED_PATHS else None


class _Meter:
    """One metered exchange while it runs: a bare ``list.append`` per chunk while the answer is captured
    whole (its chunks are then the sample too, taken by the writer off the client's path); past the
    capture budget, or without a capture, a head-and-tail ``BodySample``."""

    __slots__ = ("route", "mask", "sample", "streamed", "chunks", "_capture_sink", "chunk_limit")

    def __init__(self, route: str, capture_budget: int):
        self.route = route
        self.mask = mask_for(route) if capture_budget > 0 else 0
        self.sample: BodySample | None = None
        self.streamed = False
        self.chunks: list[bytes] | None = None
        self._capture_sink: Callable[[bytes], None] | None = None
        self.chunk_limit = capture_budget

    def responded(self, exchange: Exchange, status: int, content_type: str) -> None:
        self.streamed = status == 200 and content_type.startswith("text/event-stream")
        self.sample = tokens.stream_sample() if self.streamed else tokens.body_sample()
        if self.mask & RESP_BODY and status == 200:
            self.chunks = []
            self._capture_sink = self.chunks.append
            exchange.watch_chunks(self._capture_sink)
            exchange.when_bytes_exceed(exchange.response_bytes + self.chunk_limit,
                                       lambda: self._over_budget(exchange))
        else:
            exchange.watch_chunks(self.sample.add)

    def _over_budget(self, exchange: Exchange) -> None:
        """Larger than the whole capture budget: the capture is not kept; the sample takes over."""
        chunks, self.chunks = self.chunks or [], None
        exchange.unwatch_chunks(self._capture_sink)  # type: ignore[arg-type]
        assert self.sample is not None
        for kept in chunks:
            self.sample.add(kept)
        exchange.watch_chunks(self.sample.add)


class ActivityMeter(ExchangeObserver):
    """Samples metered exchanges and hands each, ended, to ``record`` (the recorder's)."""

    def __init__(self, record: Callable[[Finished], object], capture_budget: int = 0):
        self._record = record
        self._capture_budget = capture_budget
        self._open: dict[int, _Meter] = {}

    def on_start(self, exchange: Exchange) -> None:
        route = metered_route(exchange)
        if route is not None:
            self._open[exchange.id] = _Meter(route, self._capture_budget)

    def on_response(self, exchange: Exchange) -> None:
        meter = self._open.get(exchange.id)
        if meter is not None:
            # only metered exchanges pay for their chunks
            meter.responded(exchange, exchange.status or 0, _header(exchange.response_headers, "content-type"))

    def on_end(self, exchange: Exchange) -> None:
        meter = self._open.pop(exchange.id, None)
        if meter is not None:
            self._record(finished(exchange, meter))

    @property
    def open(self) -> int:
        """Metered exchanges under way."""
        return len(self._open)


def finished(exchange: Exchange, meter: _Meter) -> Finished:
    headers = exchange.response_headers
    environ = exchange.environ or {}
    complete = exchange.outcome is Outcome.COMPLETE
    total = exchange.total or 0.0
    return Finished(
        model=exchange.model, req_path=str(environ.get("PATH_INFO") or exchange.path.split("?", 1)[0]),
        route=meter.route, ended_at=exchange.started_at + total, status=exchange.status or 0,
        content_type=_header(headers, "content-type"), content_encoding=_header(headers, "content-encoding"),
        streamed=meter.streamed, sample=meter.sample if meter.chunks is None else None, total=total, queued=exchange.queued or 0.0,
        loading=exchange.loading or 0.0, first_byte=exchange.first_byte,
        error=None if complete else (exchange.error or str(exchange.outcome)),
        metadata=dict(exchange.metadata), mask=meter.mask,
        request_headers=request_header_list(exchange.request_headers(), environ) if meter.mask else None,
        request_body=exchange.request_body, response_headers=headers if meter.mask else None,
        response_chunks=meter.chunks)


def _header(headers: list[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""
