"""Simulated llama.cpp ``llama-server``: the upstream the proxy starts in demos, tests and benchmarks.

This module owns the fake upstream process: its CLI, its HTTP handling and the
deterministic "generation" it serves.  It is stdlib-only and imports nothing
from the rest of the project but its sibling ``simulator.apis`` (stdlib-only
too) so that ``python -m simulator`` starts in a few tens of
milliseconds.

What it emulates, as seen through a proxy:

* a loading phase (``--load-time``) during which every endpoint answers 503,
  ``/health`` included; then ``/health`` answers 200;
* llama-server's own web page at ``/`` (a stub: what a proxy's "open the
  model's server" link and llama-swap's UI's Load button, a GET of
  ``/upstream/<model>/``, expect to find there);
* OpenAI-style ``/v1/chat/completions``, ``/v1/completions`` and
  ``/v1/embeddings``, the native ``/completion`` and ``/infill``, ``/v1/models``
  and ``/props``, non-streamed and streamed (SSE over chunked transfer
  encoding, one chunk and one ``sendall`` per event), with
  ``--prompt-delay`` seconds of "prompt processing" before the first token
  (a stream's headers go out first, as llama-server's do) and
  ``--token-delay`` before each token; with ``--echo-request`` completion
  answers carry the parsed request as ``received``;
* everything else a proxy routes by model (``simulator.apis``): Anthropic
  ``/v1/messages`` (JSON and SSE) and ``count_tokens``, ``/v1/responses``,
  audio speech/transcriptions/voices, image generations/edits, the rerank
  family, sd.cpp's ``/sdapi/v1/*`` and audio.cpp's ``/v1/tasks/run``, each
  naming the model it received;
* process-level faults: crashing after N completions, dying in the middle of
  a stream (``--exit-mid-stream``), ignoring SIGTERM, never becoming healthy,
  dying while starting, and Nagle-afflicted writes (``--split-writes``); and
  llama-server's slow exit while a client connection is open (``--linger``);
* old servers' framing: ``--close-delimited`` sends every body without
  chunked encoding nor a length (it ends when the connection closes), as
  HTTP/1.0-era SSE servers do; ``--length-delimited`` sends a completion's
  stream with a ``Content-Length`` (the whole body's, worked out first), each
  event still written as it is generated (with ``--exit-mid-stream``, the
  body ends short of its length);
* llama-server's ``/metrics`` (Prometheus text) with ``--metrics``: prompt
  and generated token counters, requests in progress (501 without the flag,
  as llama-server answers). On SIGTERM it logs how many client
  connections were open.

Generated text is deterministic: token ``i`` is ``f"tok{i} "``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qsl

from simulator import apis

JSON_TYPE = "application/json; charset=utf-8"
SSE_TYPE = "text/event-stream"
COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/completion",
                    "/infill")
PROMPT_MS_PER_TOKEN = 0.5  # nominal prompt-processing cost reported in "timings"


# --------------------------------------------------------------------------- config & state


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    host: str
    port: int
    model: str
    load_time: float
    tokens: int
    token_delay: float
    crash_after: int
    never_healthy: bool
    ignore_sigterm: bool
    split_writes: bool
    starts_file: str | None
    exit_after_start: float
    echo_request: bool = False
    prompt_delay: float = 0.0
    linger: float = 0.0
    metrics: bool = False
    exit_mid_stream: int = 0
    close_delimited: bool = False
    log_rate: int = 0
    length_delimited: bool = False


class State:
    """Process-wide mutable state shared by the handler threads."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.created = int(time.time())
        self.ready_at = float("inf")
        self._lock = threading.Lock()
        self._ids = 0
        self._completions = 0
        self._loaded = False
        self.prompt_tokens = 0  # totals for /metrics
        self.predicted_tokens = 0
        self.processing = 0  # completions being answered now

    def start_loading(self) -> None:
        """Start the loading clock (called once the socket is listening)."""
        if not self.options.never_healthy:
            self.ready_at = time.monotonic() + self.options.load_time

    def is_ready(self) -> bool:
        if self._loaded:
            return True
        if time.monotonic() < self.ready_at:
            return False
        self.announce_loaded()
        return True

    def announce_loaded(self) -> None:
        """Log ``main: model loaded`` once, before anything is served as loaded."""
        with self._lock:
            if self._loaded:
                return
            log("main: model loaded")
            self._loaded = True

    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def completion_began(self, c: "Completion") -> None:
        with self._lock:
            self.prompt_tokens += c.prompt_n
            self.predicted_tokens += c.n_tokens
            self.processing += 1

    def completion_ended(self) -> None:
        with self._lock:
            self.processing -= 1

    def metrics_text(self) -> bytes:
        """``/metrics`` as llama-server writes it (a subset of its families)."""
        with self._lock:
            values = (self.prompt_tokens, self.predicted_tokens, self.processing)
        families = (("prompt_tokens_total", "counter", "Number of prompt tokens processed.", values[0]),
                    ("tokens_predicted_total", "counter", "Number of generation tokens processed.", values[1]),
                    ("requests_processing", "gauge", "Number of requests processing.", values[2]))
        lines = []
        for name, kind, help_text, value in families:
            lines += [f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}",
                      f"llamacpp:{name} {value}"]
        return ("\n".join(lines) + "\n").encode()

    def completion_done(self) -> None:
        """Count one fully sent completion; exit the process if ``--crash-after`` is reached."""
        limit = self.options.crash_after
        if limit <= 0:
            return
        with self._lock:
            self._completions += 1
            crash = self._completions >= limit
        if crash:
            log(f"srv  crash_after: {limit} completion(s) served, crashing on purpose")
            os._exit(1)


_log_lock = threading.Lock()


def log(line: str) -> None:
    """Write one log line to stdout and flush it (never raises if stdout is gone)."""
    with _log_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass


# --------------------------------------------------------------------------- generation


def token_text(index: int) -> str:
    return f"tok{index} "


def count_words(value: Any) -> int:
    """Crude prompt-token count: words in any strings found in ``value``."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):  # a chat message or a content part
        return count_words(value.get("content")) + count_words(value.get("text"))
    return 0


def requested_tokens(body: dict[str, Any], key: str, default: int) -> int:
    """Token count asked for by ``body[key]`` (negative or absent: ``default``)."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return default
    return int(value)


def timings(prompt_n: int, predicted_n: int, token_delay: float) -> dict[str, Any]:
    """Deterministic llama-server-like ``timings`` (nominal, not measured)."""
    per_token_ms = token_delay * 1000.0 if token_delay > 0 else 1.0
    prompt_ms = prompt_n * PROMPT_MS_PER_TOKEN
    predicted_ms = predicted_n * per_token_ms
    return {
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_second": 1000.0 / PROMPT_MS_PER_TOKEN if prompt_n else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_second": 1000.0 / per_token_ms if predicted_n else 0.0,
        "cache_n": 0,
    }


def usage(prompt_n: int, predicted_n: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_n, "completion_tokens": predicted_n, "total_tokens": prompt_n + predicted_n}


def embedding_vector(text: str) -> list[float]:
    """Eight floats in [-1, 1] derived from the SHA-256 of ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(int.from_bytes(digest[i : i + 2], "big") / 65535.0 * 2.0 - 1.0, 6) for i in range(0, 16, 2)]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_body(code: int, message: str, kind: str) -> bytes:
    return dumps({"error": {"code": code, "message": message, "type": kind}})


LOADING_BODY = error_body(503, "Loading model", "unavailable_error")


class BadRequest(Exception):
    """The request body is not what a JSON endpoint accepts (answered with 400)."""


# --------------------------------------------------------------------------- completion kinds


@dataclass(frozen=True)
class Completion:
    """One completion request, normalised across the three completion endpoints."""

    kind: str  # "chat" | "text" | "native"
    id: str
    prompt_n: int
    n_tokens: int
    stream: bool


def parse_completion(state: State, path: str, body: dict[str, Any]) -> Completion:
    if path.endswith("/chat/completions"):
        kind, prompt, key, prefix = "chat", body.get("messages"), "max_tokens", "chatcmpl"
    elif path.endswith("/completions"):
        kind, prompt, key, prefix = "text", body.get("prompt"), "max_tokens", "cmpl"
    else:
        kind, prompt, key, prefix = "native", body.get("prompt"), "n_predict", "cmpl"
    default = state.options.tokens
    n_tokens = requested_tokens(body, key, default)
    if kind != "native" and body.get(key) is None:
        n_tokens = requested_tokens(body, "max_completion_tokens", default)
    return Completion(kind, f"{prefix}-{state.next_id()}", count_words(prompt), n_tokens, bool(body.get("stream")))


def full_response(state: State, c: Completion) -> dict[str, Any]:
    """The non-streamed JSON answer for ``c``."""
    text = "".join(token_text(i) for i in range(c.n_tokens))
    tim = timings(c.prompt_n, c.n_tokens, state.options.token_delay)
    model = state.options.model
    if c.kind == "native":
        return {"content": text, "id_slot": 0, "stop": True, "model": model, "tokens_predicted": c.n_tokens,
                "tokens_evaluated": c.prompt_n, "stop_type": "limit", "timings": tim}
    if c.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        obj = "text_completion"
    return {"id": c.id, "object": obj, "created": state.created, "model": model, "choices": [choice],
            "usage": usage(c.prompt_n, c.n_tokens), "timings": tim}


def stream_events(state: State, c: Completion, paced: bool = True) -> Iterator[bytes]:
    """The SSE payloads (``data: ...\\n\\n``) of a streamed answer, sleeping between tokens; ``paced=False``:
    the same bytes at once, without sleeps or faults (to measure the body)."""
    delay = state.options.token_delay
    render = _token_renderer(state, c)
    if paced and state.options.prompt_delay > 0:
        time.sleep(state.options.prompt_delay)  # prompt processing: the headers are already out
    exit_after = state.options.exit_mid_stream if paced else 0
    for i in range(c.n_tokens):
        if exit_after and i == exit_after:
            log(f"srv  exit_mid_stream: {exit_after} token(s) streamed, exiting on purpose")
            os._exit(1)
        if paced and delay > 0:
            time.sleep(delay)
        yield render(i)
    tim = timings(c.prompt_n, c.n_tokens, delay)
    if c.kind == "native":
        yield b"data: " + dumps({"content": "", "id_slot": 0, "stop": True, "model": state.options.model,
                                 "tokens_predicted": c.n_tokens, "tokens_evaluated": c.prompt_n,
                                 "stop_type": "limit", "timings": tim}) + b"\n\n"
        return
    stop_choice = ({"index": 0, "delta": {}, "finish_reason": "stop"} if c.kind == "chat"
                   else {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"})
    yield b"data: " + dumps(_chunk(state, c, [stop_choice])) + b"\n\n"
    yield b"data: " + dumps(_chunk(state, c, [], usage=usage(c.prompt_n, c.n_tokens), timings=tim)) + b"\n\n"
    yield b"data: [DONE]\n\n"


_SLOT = "\u0001token\u0001"


def _token_renderer(state: State, c: Completion) -> Callable[[int], bytes]:
    """Renders token event i: the JSON around the token text is serialised once
    per completion (a C++ llama-server spends about nothing per event on it;
    json.dumps of the whole event would make the simulator, not the proxy,
    the bottleneck of a streaming benchmark). Bytes are identical to dumping
    ``_token_event`` each time."""
    first = b"data: " + dumps(_token_event(state, c, 0)) + b"\n\n"
    head, tail = dumps(_token_event(state, c, 1, text=_SLOT)).split(dumps(_SLOT))
    head, tail = b"data: " + head, tail + b"\n\n"

    def render(i: int) -> bytes:
        if i == 0:
            return first
        return head + json.dumps(token_text(i), ensure_ascii=False).encode("utf-8") + tail

    return render


def _token_event(state: State, c: Completion, i: int, text: str | None = None) -> dict[str, Any]:
    if text is None:
        text = token_text(i)
    if c.kind == "native":
        return {"content": text, "stop": False}
    if c.kind == "chat":
        delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
        return _chunk(state, c, [{"index": 0, "delta": delta, "finish_reason": None}])
    return _chunk(state, c, [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}])


def _chunk(state: State, c: Completion, choices: list[Any], **extra: Any) -> dict[str, Any]:
    obj = "chat.completion.chunk" if c.kind == "chat" else "text_completion"
    return {"id": c.id, "object": obj, "created": state.created, "model": state.options.model,
            "choices": choices, **extra}


# --------------------------------------------------------------------------- HTTP


class Connections:
    """How many client connections are open (llama-server's exit waits for them)."""

    _lock = threading.Lock()
    count = 0

    @classmethod
    def change(cls, delta: int) -> None:
        with cls._lock:
            cls.count += delta


class Handler(BaseHTTPRequestHandler):
    """One connection; dispatches requests by (method, path)."""

    protocol_version = "HTTP/1.1"
    server_version = "llama.cpp"
    sys_version = ""
    server: "FakeServer"

    # ---- plumbing

    def setup(self) -> None:
        Connections.change(+1)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            Connections.change(-1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence BaseHTTPRequestHandler's stderr access log; see ``_log_request``."""

    def _log_request(self, status: int) -> None:
        if self.path in ("/health", "/v1/health"):
            return  # llama-server does not log health probes either
        log(f"srv  log_server_r: request: {self.command} {self.path} {self.client_address[0]} {status}")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after the chunk data
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def _head(self, status: int, content_type: str, length: int | None,
              extra: dict[str, str] | None = None) -> bytes:
        """Status line and headers; ``length=None`` means a streamed body."""
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}", f"Content-Type: {content_type}"]
        lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif self._chunked_ok():
            lines += ["Cache-Control: no-cache", "Transfer-Encoding: chunked"]
        else:  # HTTP/1.0 client: the body ends when the connection closes
            lines.append("Cache-Control: no-cache")
            self.close_connection = True
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _chunked_ok(self) -> bool:
        return self.request_version != "HTTP/1.0" and not self.server.state.options.close_delimited

    def _send(self, status: int, body: bytes, content_type: str = JSON_TYPE,
              headers: dict[str, str] | None = None) -> None:
        """Send a whole response: one sendall, or two with ``--split-writes``."""
        head = self._head(status, content_type, len(body), headers)
        if self.server.state.options.split_writes:
            self.connection.sendall(head)
            self.connection.sendall(body)
        else:
            self.connection.sendall(head + body)
        self._log_request(status)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, dumps(obj))

    def _send_stream(self, events: Iterator[bytes], content_type: str = SSE_TYPE, length: int | None = None) -> bool:
        """Stream SSE ``events``: as chunks, or each as it is after a ``length`` told up front, or (close-delimited)
        until the connection closes; False if the client went away."""
        chunked = length is None and self._chunked_ok()
        try:
            self.connection.sendall(self._head(200, content_type, length))
            for event in events:
                self.connection.sendall(b"%x\r\n%b\r\n" % (len(event), event) if chunked else event)
            if chunked:
                self.connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
            log(f"srv  log_server_r: client disconnected mid-stream: {self.command} {self.path}")
            return False
        self._log_request(200)
        return True

    # ---- dispatch

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self) -> None:  # noqa: N802 - headers only, as cpp-httplib answers a HEAD
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
            path = self.path.split("?", 1)[0]
            self._route(path, raw)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _route(self, path: str, raw: bytes) -> None:
        if not self.server.state.is_ready():
            self._send(503, LOADING_BODY)
            return
        routes = ROUTES.get(path)
        if routes is None:
            self._send(404, error_body(404, "File Not Found", "not_found_error"))
            return
        endpoint = routes.get(self.command)
        if endpoint is None:
            self._send(405, error_body(405, f"Method {self.command} not allowed", "invalid_request_error"))
            return
        try:
            endpoint(self, path, raw)
        except BadRequest as exc:
            self._send(400, error_body(400, str(exc), "invalid_request_error"))

    # ---- endpoints

    def health(self, path: str, raw: bytes) -> None:
        self._send_json(200, {"status": "ok"})

    def home(self, path: str, raw: bytes) -> None:
        model = html.escape(self.server.state.options.model)
        self._send(200, f"<!doctype html><title>{model}</title><h1>llama.cpp simulator: {model}</h1>\n".encode(),
                   "text/html; charset=utf-8")

    def models(self, path: str, raw: bytes) -> None:
        state = self.server.state
        self._send_json(200, {"object": "list", "data": [
            {"id": state.options.model, "object": "model", "created": state.created, "owned_by": "llamacpp"}]})

    def props(self, path: str, raw: bytes) -> None:
        model = self.server.state.options.model
        self._send_json(200, {"model_path": f"/models/{model}.gguf", "total_slots": 1,
                              "default_generation_settings": {"n_ctx": 4096, "model": model},
                              "build_info": "fake_upstream", "query": dict(self._query())})

    def _query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.path.partition("?")[2], keep_blank_values=True)

    def api(self, endpoint: apis.Endpoint, path: str, raw: bytes) -> None:
        """Answer one of ``simulator.apis``' endpoints."""
        state = self.server.state
        ctx = apis.Ctx(state.options.model, state.created, state.options.tokens,
                            state.options.token_delay, state.next_id, token_text)
        req = apis.FakeRequest(self.command, path, dict(self._query()),
                                    self.headers.get("Content-Type", ""), raw)
        try:
            reply = endpoint(ctx, req)
        except apis.BadRequest as exc:
            raise BadRequest(str(exc)) from None
        if reply.events is not None:
            self._send_stream(reply.events, reply.content_type)
        else:
            self._send(reply.status, reply.body, reply.content_type, reply.headers)

    def echo(self, path: str, raw: bytes) -> None:
        self._send_json(200, {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                              "body": raw.decode("utf-8", errors="replace")})

    def completion(self, path: str, raw: bytes) -> None:
        state = self.server.state
        c = parse_completion(state, path, parse_json_object(raw))
        state.completion_began(c)
        try:
            if c.stream:
                length = (sum(map(len, stream_events(state, c, paced=False)))
                          if state.options.length_delimited else None)
                if not self._send_stream(stream_events(state, c), length=length):
                    return
            else:
                thinking = state.options.prompt_delay + state.options.token_delay * c.n_tokens
                if thinking > 0:
                    time.sleep(thinking)
                answer = full_response(state, c)
                if state.options.echo_request:
                    answer["received"] = json.loads(raw)
                self._send_json(200, answer)
        finally:
            state.completion_ended()
        state.completion_done()

    def metrics(self, path: str, raw: bytes) -> None:
        state = self.server.state
        if not state.options.metrics:
            self._send(501, error_body(501, "This server does not support metrics endpoint. Start it with `--metrics`",
                                       "not_supported_error"))
            return
        self._send(200, state.metrics_text(), "text/plain; version=0.0.4")

    def embeddings(self, path: str, raw: bytes) -> None:
        body = parse_json_object(raw)
        inputs = body.get("input", body.get("content"))
        if isinstance(inputs, (str, int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest("'input' must be a string or a non-empty list of strings")
        texts = [item if isinstance(item, str) else json.dumps(item) for item in inputs]
        n = sum(len(t.split()) for t in texts)
        self._send_json(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": embedding_vector(t)} for i, t in enumerate(texts)],
            "model": self.server.state.options.model,
            "usage": {"prompt_tokens": n, "total_tokens": n},
        })


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


Endpoint = Callable[[Handler, str, bytes], None]


def _build_routes() -> dict[str, dict[str, Endpoint]]:
    routes: dict[str, dict[str, Endpoint]] = {
        "/": {"GET": Handler.home},
        "/health": {"GET": Handler.health},
        "/v1/health": {"GET": Handler.health},
        "/v1/models": {"GET": Handler.models},
        "/models": {"GET": Handler.models},
        "/props": {"GET": Handler.props},
        "/metrics": {"GET": Handler.metrics},
        "/v1/echo": {"GET": Handler.echo, "POST": Handler.echo},
        "/v1/embeddings": {"POST": Handler.embeddings},
        "/embeddings": {"POST": Handler.embeddings},
    }
    for path in COMPLETION_PATHS:
        routes[path] = {"POST": Handler.completion}
    for path, methods in apis.ROUTES.items():
        routes[path] = {method: _api_endpoint(endpoint) for method, endpoint in methods.items()}
    return routes


def _api_endpoint(endpoint: apis.Endpoint) -> Endpoint:
    return lambda handler, path, raw: handler.api(endpoint, path, raw)


ROUTES = _build_routes()


class FakeServer(ThreadingHTTPServer):
    """Threaded HTTP server holding the shared ``State``."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, state: State) -> None:
        self.state = state
        opts = state.options
        self.address_family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        # StreamRequestHandler.setup() sets TCP_NODELAY when this is true.
        handler = type("ConfiguredHandler", (Handler,), {"disable_nagle_algorithm": not opts.split_writes})
        super().__init__((opts.host, opts.port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse-DNS getfqdn(); skip it to start fast.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.state.options.host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            log(f"srv  handle_error: {type(exc).__name__}: {exc} (client {client_address})")


# --------------------------------------------------------------------------- process


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m simulator", description="Simulated llama-server upstream.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="fake-model", help="model name echoed in responses")
    p.add_argument("--load-time", type=float, default=0.0, help="seconds of 503 after listening")
    p.add_argument("--tokens", type=int, default=16, help="tokens per completion unless the request says")
    p.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    p.add_argument("--linger", type=float, default=0.0,
                   help="on SIGTERM, wait this long before exiting if a client connection is open "
                        "(llama-server takes ~110 ms to exit while an idle keep-alive connection is open)")
    p.add_argument("--prompt-delay", type=float, default=0.0,
                   help="seconds of prompt processing before the first token (a stream's headers go out first)")
    p.add_argument("--crash-after", type=int, default=0, help="exit(1) after the Nth completion (0: never)")
    p.add_argument("--exit-mid-stream", type=int, default=0,
                   help="exit(1) in the middle of a stream, after sending N tokens of it (0: never)")
    p.add_argument("--close-delimited", action="store_true",
                   help="streams without chunked encoding nor a length: the body ends when the connection closes")
    p.add_argument("--length-delimited", action="store_true",
                   help="completion streams with a Content-Length, each event still sent as it is generated")
    p.add_argument("--never-healthy", action="store_true", help="answer 503 forever")
    p.add_argument("--ignore-sigterm", action="store_true", help="ignore SIGTERM (SIGKILL only)")
    p.add_argument("--split-writes", action="store_true", help="no TCP_NODELAY; headers and body in two writes")
    p.add_argument("--starts-file", default=None, help="append '<pid>\\n' to this file on start")
    p.add_argument("--exit-after-start", type=float, default=0.0, help="exit(3) this many seconds after start")
    p.add_argument("--echo-request", action="store_true", help="completion answers carry the request as 'received'")
    p.add_argument("--metrics", action="store_true", help="serve llama-server's Prometheus /metrics")
    p.add_argument("--log-rate", type=int, default=0,
                   help="print this many log lines a second, for as long as it runs (a chatty upstream)")
    a = p.parse_args(argv)
    return Options(a.host, a.port, a.model, a.load_time, a.tokens, a.token_delay, a.crash_after,
                   a.never_healthy, a.ignore_sigterm, a.split_writes, a.starts_file, a.exit_after_start,
                   a.echo_request, a.prompt_delay, a.linger, a.metrics, a.exit_mid_stream, a.close_delimited,
                   a.log_rate, a.length_delimited)


def record_start(path: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
        fh.flush()


def install_signal_handlers(ignore_sigterm: bool, linger: float = 0.0) -> None:
    def on_term(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        log(f"srv    operator(): received {name} with {Connections.count} client connection(s) open, shutting down")
        if linger > 0:  # llama-server's exit waits on its open keep-alive connections, up to a bound here
            deadline = time.monotonic() + linger
            while Connections.count and time.monotonic() < deadline:
                time.sleep(0.005)  # a connection closed just before the signal is seen closed a moment later
            if Connections.count:
                log(f"srv    operator(): {Connections.count} client connection(s) still open after {linger}s")
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_sigterm else on_term)
    signal.signal(signal.SIGINT, on_term)


def start_timer(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def exit_while_starting() -> None:
    log("main: exiting on purpose (--exit-after-start)")
    os._exit(3)


def chatter(lines_per_second: int) -> None:
    """Log ``lines_per_second`` lines a second, in bursts every 10 ms, forever (``--log-rate``)."""
    def run() -> None:
        sent, started = 0, time.monotonic()
        while True:
            due = int((time.monotonic() - started) * lines_per_second)
            for n in range(sent, due):
                log(f"slot update_slots: id  0 | task {n} | chatty line {n:08d} " + "." * 40)
            sent = due
            time.sleep(0.01)

    threading.Thread(target=run, daemon=True).start()


def announce_loading(state: State) -> None:
    opts = state.options
    log(f"srv  load_model: loading model '{opts.model}'")
    if opts.never_healthy:
        return
    start_timer(max(opts.load_time, 0.0), state.is_ready)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    install_signal_handlers(opts.ignore_sigterm, opts.linger)
    if opts.starts_file:
        record_start(opts.starts_file)
    if opts.exit_after_start > 0:
        start_timer(opts.exit_after_start, exit_while_starting)
    state = State(opts)
    try:
        server = FakeServer(state)
    except OSError as exc:
        log(f"main: couldn't bind HTTP server socket, hostname: {opts.host}, port: {opts.port}: {exc}")
        return 1
    state.start_loading()
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    log(f"main: server is listening on http://{host}:{server.server_address[1]} - starting the main loop")
    announce_loading(state)
    if opts.log_rate > 0:
        chatter(opts.log_rate)
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
