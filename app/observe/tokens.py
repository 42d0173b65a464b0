"""Token metrics read from an upstream's answer, and the bounded sample of its body they are read from.

What counts and where it is found (llama-swap's rules): a ``usage`` object
(OpenAI ``prompt_tokens``/``completion_tokens``, Anthropic and Responses
``input_tokens``/``output_tokens``, cached tokens under
``cache_read_input_tokens`` or ``*_tokens_details.cached_tokens``);
llama.cpp's ``timings``, which override the counts and give the rates and a
duration; vLLM's ``metrics`` (rates from ``time_to_first_token_ms`` and
``mean_itl_ms``, drafts from ``speculative_decoding``). A JSON answer has
them at its top level (``/infill``'s array: timings in its last element). A
stream (SSE) has them in its events: usage at ``usage``, ``response.usage``
or ``message.usage`` (Anthropic's ``message_start`` carries the input count,
its ``message_delta`` the output count; the last non-zero count wins), the
last ``timings`` and ``metrics`` win. −1 means not reported.

Reading must not cost a stream its speed, so nothing is parsed while it
flows: ``BodySample`` keeps the first and the last bytes of a stream (where
usage is found: the first event and the last ones) or a JSON body up to a
bound, by reference, and the answer is parsed once, after it ended, off the
client's path.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

STREAM_HEAD = 8 * 1024  # bytes kept from a stream's start (Anthropic's message_start)
STREAM_TAIL = 64 * 1024  # bytes kept from its end (the usage and timings events)
BODY_LIMIT = 1024 * 1024  # a JSON answer longer than this is not read for tokens

USAGE_PATHS = (("usage",), ("response", "usage"), ("message", "usage"))
# Only an event naming one of these can carry a count: the others are not even split out.
KEYS = (b'"usage"', b'"timings"', b'"metrics"')


@dataclass(frozen=True)
class TokenMetrics:
    cache_tokens: int = -1
    input_tokens: int = 0
    output_tokens: int = 0
    prompt_per_second: float = -1.0
    tokens_per_second: float = -1.0
    draft_tokens: int = -1
    draft_acc_tokens: int = -1

    def to_json(self) -> dict[str, Any]:
        return {"cache_tokens": self.cache_tokens, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "prompt_per_second": self.prompt_per_second,
                "tokens_per_second": self.tokens_per_second, "draft_tokens": self.draft_tokens,
                "draft_acc_tokens": self.draft_acc_tokens}


UNKNOWN = TokenMetrics()


@dataclass(frozen=True)
class Reading:
    """What an answer said: its tokens, and the upstream's own duration (``prompt_ms + predicted_ms``)."""

    tokens: TokenMetrics
    upstream_ms: int | None = None


# --------------------------------------------------------------------------- the sample


class BodySample:
    """The first ``head`` bytes of a body and its last ``tail`` bytes (at least), kept by reference.

    ``add`` costs a list or deque append per chunk (the chunk that crosses the
    head's bound is split once); ``body()`` joins them when the answer is read.
    ``gap`` says bytes were dropped between the two.
    """

    __slots__ = ("_head", "_head_room", "_tail", "_tail_size", "_tail_limit", "_tail_cap", "gap")

    def __init__(self, head: int, tail: int):
        self._head: list[bytes] = []
        self._head_room = head
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._tail_limit = tail
        self._tail_cap = 2 * tail  # trimmed back to ``tail`` only when twice that piled up: rarely, per chunk
        self.gap = False

    def add(self, chunk: bytes) -> None:
        room = self._head_room
        if room:
            if len(chunk) <= room:
                self._head.append(chunk)
                self._head_room = room - len(chunk)
                return
            self._head.append(chunk[:room])
            self._head_room = 0
            chunk = chunk[room:]
        self._tail.append(chunk)
        self._tail_size += len(chunk)
        if self._tail_size > self._tail_cap:
            self._trim()

    def _trim(self) -> None:
        tail = self._tail
        while tail and self._tail_size - len(tail[0]) >= self._tail_limit:
            self._tail_size -= len(tail.popleft())
            self.gap = True

    def body(self) -> bytes:
        """Head and tail; across a gap the tail's first (partial) line is left out."""
        self._trim()
        tail = b"".join(self._tail)
        if not self.gap:
            return b"".join(self._head) + tail
        cut = tail.find(b"\n")
        return b"".join(self._head) + b"\n" + (tail[cut + 1:] if cut >= 0 else b"")


def stream_sample() -> BodySample:
    return BodySample(STREAM_HEAD, STREAM_TAIL)


def body_sample() -> BodySample:
    return BodySample(BODY_LIMIT, 0)


def decoded(body: bytes, encoding: str) -> bytes | None:
    """``body`` without its ``Content-Encoding`` (gzip, deflate); None when it cannot be decoded."""
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    except zlib.error:
        return None
    return None


# --------------------------------------------------------------------------- reading


def read_json(body: bytes, infill: bool = False) -> Reading | None:
    """Tokens from a JSON answer; None when it is not JSON or reports nothing."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    top = parsed if isinstance(parsed, dict) else {}
    usage, timings, metrics = top.get("usage"), top.get("timings"), top.get("metrics")
    if infill and isinstance(parsed, list) and parsed and isinstance(parsed[-1], dict):
        timings = parsed[-1].get("timings")  # /infill: an array, timings in its last element
    if not any(isinstance(part, dict) for part in (usage, timings, metrics)):
        return None
    counts = _usage_counts(usage) if isinstance(usage, dict) else None
    input_tokens, output_tokens, cached = counts[:3] if counts else (0, 0, -1)
    return _reading(input_tokens, output_tokens, cached, _object(timings), _object(metrics))


def read_sse(body: bytes) -> Reading | None:
    """Tokens from a stream's events; None when no event reports any."""
    input_tokens = output_tokens = 0
    cached = -1
    timings = metrics = None
    found = False
    for line in _counted_lines(body):
        try:
            event = json.loads(line[5:])
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        for path in USAGE_PATHS:
            counts = _usage_counts(_at(event, path))
            if counts is None:
                continue
            found = True
            if counts[0] > 0:
                input_tokens = counts[0]
            if counts[1] > 0:
                output_tokens = counts[1]
            if counts[2] >= 0:
                cached = counts[2]
        if isinstance(event.get("timings"), dict):
            timings, found = event["timings"], True
        if isinstance(event.get("metrics"), dict):
            metrics, found = event["metrics"], True
    if not found:
        return None
    return _reading(input_tokens, output_tokens, cached, timings, metrics)


def _counted_lines(body: bytes) -> list[bytes]:
    """The ``data:`` lines of ``body`` that name a key in ``KEYS``, in order (found with ``bytes.find``)."""
    starts = set()
    for key in KEYS:
        at = body.find(key)
        while at >= 0:
            start = body.rfind(b"\n", 0, at) + 1
            starts.add(start)
            end = body.find(b"\n", at)
            at = body.find(key, end) if end >= 0 else -1
    lines = []
    for start in sorted(starts):
        end = body.find(b"\n", start)
        line = body[start:end if end >= 0 else len(body)].strip()
        if line.startswith(b"data:"):
            lines.append(line)
    return lines


def _usage_counts(usage: Any) -> tuple[int, int, int] | None:
    """(input, output, cached) from a usage object; None when it names none of them."""
    if not isinstance(usage, dict):
        return None
    input_tokens = _first(usage, ("prompt_tokens",), ("input_tokens",))
    output_tokens = _first(usage, ("completion_tokens",), ("output_tokens",))
    cached = _first(usage, ("cache_read_input_tokens",), ("input_tokens_details", "cached_tokens"),
                    ("prompt_tokens_details", "cached_tokens"))
    if input_tokens is None and output_tokens is None and cached is None:
        return None
    return (_int(input_tokens), _int(output_tokens), -1 if cached is None else _int(cached))


def _reading(input_tokens: int, output_tokens: int, cached: int, timings: dict | None,
             metrics: dict | None) -> Reading:
    prompt_rate = gen_rate = -1.0
    drafts = accepted = -1
    upstream_ms = None
    if timings is not None:
        input_tokens, output_tokens = _int(timings.get("prompt_n")), _int(timings.get("predicted_n"))
        prompt_rate = _float(timings.get("prompt_per_second"))
        gen_rate = _float(timings.get("predicted_per_second"))
        upstream_ms = int(_float(timings.get("prompt_ms")) + _float(timings.get("predicted_ms")))
        if "cache_n" in timings:
            cached = _int(timings["cache_n"])
        if "draft_n" in timings and "draft_n_accepted" in timings:
            drafts, accepted = _int(timings["draft_n"]), _int(timings["draft_n_accepted"])
    if metrics is not None:
        ttft = _float(metrics.get("time_to_first_token_ms"))
        if ttft > 0:
            prompt_rate = (input_tokens - max(cached, 0)) / (ttft / 1000)
        itl = _float(metrics.get("mean_itl_ms"))
        if itl > 0:
            gen_rate = 1000 / itl
        spec = metrics.get("speculative_decoding")
        if isinstance(spec, dict) and "num_draft_tokens" in spec and "num_accepted_draft_tokens" in spec:
            drafts, accepted = _int(spec["num_draft_tokens"]), _int(spec["num_accepted_draft_tokens"])
    return Reading(TokenMetrics(cached, input_tokens, output_tokens, prompt_rate, gen_rate, drafts, accepted),
                   upstream_ms)


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _first(obj: dict, *paths: tuple[str, ...]) -> Any:
    for path in paths:
        value = _at(obj, path)
        if value is not None:
            return value
    return None


def _object(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
