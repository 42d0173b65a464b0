"""Time to first event: how long a streamed chat completion takes to show its first SSE event, proxy vs direct.

One streamed completion (``max_tokens: 2``) at a time over raw, already
connected keep-alive sockets with TCP_NODELAY, one socket per path (through
the proxy, and direct to the very upstream process the proxy started). The
clock (``perf_counter``) starts just before ``sendall`` of the request and
stops at the ``recv`` that delivers the first byte of the first event (the
first ``data: `` of the de-chunked body, after the headers); the time to the
first byte of the response (the headers) is recorded alongside. Each answer
is read to its terminating ``0\\r\\n\\r\\n`` before the next request goes out.

Proxy and direct alternate sample by sample, which goes first alternating
too; each block of samples opens fresh connections first (gunicorn closes a
keep-alive connection idle for 2 s) and a connection the server closed is
reopened before the next request. Two upstream settings, one row each:

* no think time (``--tokens 1``): the upstream writes the first event right
  after the headers, so the figure is what the proxy adds on the path of a
  stream's first bytes. Target: at most +1 ms at p50.
* 20 ms prompt processing (``--prompt-delay 0.02``): the headers go out,
  then the first event 20 ms later (as llama-server does). Informational.
* a long fast stream (``max_tokens: 2000``, no delay): the first event with
  2,000 more right behind it, the case where the proxy used to hold the first
  event back while it read what followed (~4 ms). Informational: on 2 cores
  the simulator writing flat out, the proxy relaying and the client reading
  compete for the CPUs, which the figure also measures.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from bench.harness import (CHAT_PATH, HOST, BenchResult, Check, ProxyServer, added, chat_body, format_table,
                           latency_summary_ms, running_server, say)

TARGET_ADDED_P50_MS = 1.0
EVENT_MARK = b"data: "
SAMPLES, QUICK_SAMPLES, WARMUP, BLOCK = 300, 60, 50, 50  # per path; BLOCK: pairs per fresh connection


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    flags: tuple[str, ...]
    target_ms: float | None
    max_tokens: int = 2


SETTINGS = (Setting("no_think_time", "no think time", ("--tokens", "1"), TARGET_ADDED_P50_MS),
            Setting("prompt_delay_20ms", "20 ms prompt processing", ("--tokens", "1", "--prompt-delay", "0.02"), None),
            Setting("long_fast_stream", "2,000-event stream", ("--tokens", "1"), None, max_tokens=2000))


@dataclass(frozen=True)
class Sample:
    headers_s: float  # send to the first byte of the response
    first_event_s: float  # send to the first byte of the first "data: " event


class StreamClient:
    """One keep-alive HTTP/1.1 connection that sends a streamed completion and reads the chunked answer."""

    def __init__(self, port: int, body: bytes) -> None:
        self.port = port
        self.request = (f"POST {CHAT_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.sock: socket.socket | None = None

    def reconnect(self) -> None:
        self.close()
        self.sock = socket.create_connection((HOST, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def sample(self) -> Sample:
        """One timed request; a connection found closed is reopened and the request sent once more."""
        if self.sock is None:
            self.reconnect()
        try:
            return self._exchange()
        except ConnectionError:  # the server closed the idle connection: not a timing, just retry
            self.reconnect()
            return self._exchange()

    def _exchange(self) -> Sample:
        assert self.sock is not None
        sock = self.sock
        began = time.perf_counter()
        sock.sendall(self.request)
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before answering")
        arrivals = [(len(data), time.perf_counter())]  # (bytes received so far, when)
        while not _answer_complete(data):
            more = sock.recv(65536)
            if not more:
                raise RuntimeError(f"port {self.port} closed the connection mid-answer: {data[-300:]!r}")
            data += more
            arrivals.append((len(data), time.perf_counter()))
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" " or b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"port {self.port} answered {status!r}, not a chunked stream: {data[:300]!r}")
        payload = dechunk(body)  # also proves the end found was the real terminating chunk
        if not payload.startswith(EVENT_MARK) or b"data: [DONE]" not in payload:
            raise RuntimeError(f"port {self.port}: not an SSE stream ending in [DONE]: {payload[:300]!r}")
        mark_at = data.index(EVENT_MARK, len(head) + 4)
        first_event_at = next(t for end, t in arrivals if end > mark_at)  # the recv that brought its first byte
        if b"connection: close" in head.lower():
            self.close()
        return Sample(arrivals[0][1] - began, first_event_at - began)


def _answer_complete(data: bytes) -> bool:
    """True once the headers and a chunked body's last chunk (``0\\r\\n\\r\\n``) are in ``data``."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    if b"transfer-encoding: chunked" not in data[:head_end].lower():
        return True  # not a stream: _exchange reports the status and the body
    body = data[head_end + 4:]
    return body == b"0\r\n\r\n" or body.endswith(b"\r\n0\r\n\r\n")


def dechunk(body: bytes) -> bytes:
    """The payload of a complete chunked body (no trailers); raises if the framing is wrong."""
    parts, pos = [], 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].split(b";")[0], 16)
        start, pos = line_end + 2, line_end + 2 + size + 2
        if body[pos - 2:pos] != b"\r\n":
            raise ValueError(f"bad chunk framing at byte {start}")
        if size == 0:
            if pos != len(body):
                raise ValueError(f"{len(body) - pos} bytes after the last chunk")
            return b"".join(parts)
        parts.append(body[start:start + size])


# --------------------------------------------------------------------------- running


def samples_in_turn(clients: dict[str, StreamClient], count: int) -> dict[str, list[Sample]]:
    """``count`` samples per path, the paths taking turns sample by sample (which goes first rotating: for
    two, alternating); each block of ``BLOCK`` rounds starts on fresh connections, opened outside the timing."""
    names = list(clients)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for i in range(count):
        if i % BLOCK == 0:
            for client in clients.values():
                client.reconnect()
        first = i % len(names)
        for name in names[first:] + names[:first]:
            samples[name].append(clients[name].sample())
    return samples


def measure(server: ProxyServer, count: int, max_tokens: int) -> dict[str, list[Sample]]:
    """Warm-up, then ``count`` timed samples per path, against ``server`` and its upstream."""
    body = chat_body(max_tokens=max_tokens, stream=True)
    clients = {"proxy": StreamClient(server.port, body), "direct": StreamClient(server.upstream_port, body)}
    try:
        samples_in_turn(clients, WARMUP)
        return samples_in_turn(clients, count)
    finally:
        for client in clients.values():
            client.close()


def run_first_event(quick: bool = False) -> BenchResult:
    """Benchmark: p50 time to the first SSE event of a stream, proxy vs direct, for each upstream setting."""
    count = QUICK_SAMPLES if quick else SAMPLES
    say(f"[first-event] streamed chat completion: send to the first byte of the first event;"
        f" {count} samples per path after {WARMUP} warm-up, alternating")
    figures: dict[str, dict] = {}
    raw: dict[str, dict] = {}
    checks: list[Check] = []
    for setting in SETTINGS:
        with running_server("first-event", setting.flags) as server:
            server.warm()
            samples = measure(server, count, setting.max_tokens)
        event = {k: latency_summary_ms([s.first_event_s for s in v]) for k, v in samples.items()}
        heads = {k: latency_summary_ms([s.headers_s for s in v]) for k, v in samples.items()}
        ep, ed, hp, hd = event["proxy"], event["direct"], heads["proxy"], heads["direct"]
        rows = [("first event p50", ed["p50"], ep["p50"], ep["p50"] - ed["p50"]),
                ("first event p90", ed["p90"], ep["p90"], ep["p90"] - ed["p90"]),
                ("first event min", ed["min"], ep["min"], ep["min"] - ed["min"]),
                ("headers p50", hd["p50"], hp["p50"], hp["p50"] - hd["p50"]),
                ("headers p90", hd["p90"], hp["p90"], hp["p90"] - hd["p90"])]
        say(f"  {setting.label} (upstream {' '.join(setting.flags)}, max_tokens {setting.max_tokens};"
            f" ms, n={count} per path)")
        say("    " + format_table(["", "direct", "proxy", "added"], rows).replace("\n", "\n    "))
        first = Check(f"first event, {setting.label}, p50", "ms", ed["p50"], ep["p50"], added(ep["p50"], ed["p50"]))
        if setting.target_ms is not None:
            first.target = f"added <= +{setting.target_ms:.0f} ms"
            first.passed = ep["p50"] - ed["p50"] <= setting.target_ms
        checks += [first, Check(f"time to headers, {setting.label}, p50", "ms", hd["p50"], hp["p50"],
                                added(hp["p50"], hd["p50"]))]
        figures[setting.key] = {"flags": list(setting.flags), "max_tokens": setting.max_tokens,
                                "first_event_ms": event, "headers_ms": heads,
                                "added_first_event_p50_ms": ep["p50"] - ed["p50"]}
        raw[setting.key] = {f"{path}_{field}": [getattr(s, field) for s in v]
                            for path, v in samples.items() for field in ("first_event_s", "headers_s")}
    return BenchResult(name="first_event",
                       params={"samples": count, "warmup": WARMUP, "block": BLOCK,
                               "settings": {s.key: [*s.flags, f"max_tokens={s.max_tokens}"] for s in SETTINGS}},
                       figures=figures, raw=raw, checks=checks)
