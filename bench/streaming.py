"""Streaming throughput: SSE events per second of one long stream, through the proxy vs direct.

One request asks for ``max_tokens: 5000`` with ``stream: true`` from an
upstream with no token delay, so the upstream writes events as fast as it can
(one chunk, one ``sendall`` per event) and the figure is the cost of moving
each event through the path. Events are counted as ``data: `` lines in the
bytes ``iter_content(None)`` delivers (robust to a proxy that coalesces
chunks); the time runs from sending the request to the last byte. Each run is
repeated (proxy and direct alternating which goes first) and the median is
reported. Target: the proxy at least 70 % of direct.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import requests

from bench.harness import (CHAT_PATH, JSON_HEADERS, BenchResult, Check, chat_body, format_table, median,
                           new_session, ratio, running_server, say)

TARGET_RATIO = 0.70
EVENT_MARK = b"data: "


@dataclass(frozen=True)
class StreamRun:
    events: int  # "data: " lines received
    reads: int  # pieces iter_content(None) yielded
    nbytes: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def stream_once(session: requests.Session, url: str, body: bytes) -> StreamRun:
    """Send one streamed completion and consume it to the end, counting events as they come."""
    events = reads = nbytes = 0
    carry = b""  # shorter than EVENT_MARK, so no mark is ever counted twice
    began = time.perf_counter()
    with session.post(url, data=body, headers=JSON_HEADERS, stream=True, timeout=120) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"POST {url} answered {resp.status_code}: {resp.text[:300]}")
        for piece in resp.iter_content(None):
            reads += 1
            nbytes += len(piece)
            window = carry + piece
            events += window.count(EVENT_MARK)
            carry = window[-(len(EVENT_MARK) - 1):]
    return StreamRun(events, reads, nbytes, time.perf_counter() - began)


def run_streaming(quick: bool = False) -> BenchResult:
    """Benchmark 3: median events/s over repeated 5,000-token streams, proxy vs direct."""
    tokens, repeats = 5000, (2 if quick else 5)
    body = chat_body(max_tokens=tokens, stream=True)
    say(f"[streaming] one {tokens:,}-token SSE stream, token delay 0, {repeats} runs each, median")
    proxy_runs: list[StreamRun] = []
    direct_runs: list[StreamRun] = []
    with running_server("streaming", ["--tokens", "1", "--token-delay", "0"]) as server:
        server.warm()
        proxy_url, direct_url = server.base_url + CHAT_PATH, server.direct_url + CHAT_PATH
        proxy_session, direct_session = new_session(), new_session()
        try:
            warm_body = chat_body(max_tokens=500, stream=True)
            stream_once(proxy_session, proxy_url, warm_body)
            stream_once(direct_session, direct_url, warm_body)
            cpu_before = server.cpu_seconds()
            for i in range(repeats):
                order = [(proxy_session, proxy_url, proxy_runs), (direct_session, direct_url, direct_runs)]
                for session, url, sink in (order if i % 2 == 0 else order[::-1]):
                    sink.append(stream_once(session, url, body))
            cpu_after = server.cpu_seconds()
        finally:
            proxy_session.close()
            direct_session.close()
    proxied_events = sum(r.events for r in proxy_runs)
    server_us = (cpu_after[0] - cpu_before[0]) * 1e6 / proxied_events
    upstream_us = (cpu_after[1] - cpu_before[1]) * 1e6 / (proxied_events + sum(r.events for r in direct_runs))

    rate_p = median([r.events_per_s for r in proxy_runs])
    rate_d = median([r.events_per_s for r in direct_runs])
    rows = [("events/s (median)", rate_d, rate_p),
            ("seconds per stream (median)", median([r.seconds for r in direct_runs]),
             median([r.seconds for r in proxy_runs])),
            ("events per stream", direct_runs[0].events, proxy_runs[0].events),
            ("reads per stream (iter_content)", direct_runs[0].reads, proxy_runs[0].reads),
            ("bytes per stream", direct_runs[0].nbytes, proxy_runs[0].nbytes)]
    say("    " + format_table(["", "direct", "proxy"], rows).replace("\n", "\n    "))
    say(f"    proxy/direct: {ratio(rate_p, rate_d)}; each run (events/s): direct "
        + ", ".join(f"{r.events_per_s:,.0f}" for r in direct_runs) + "; proxy "
        + ", ".join(f"{r.events_per_s:,.0f}" for r in proxy_runs))
    say(f"    CPU per event: proxy server {server_us:.1f} us, upstream {upstream_us:.1f} us")
    if proxy_runs[0].events != direct_runs[0].events:
        say(f"    WARNING: event counts differ (direct {direct_runs[0].events}, proxy {proxy_runs[0].events})")

    check = Check("streaming, events/s", "ev/s", rate_d, rate_p, ratio(rate_p, rate_d),
                  target=f"proxy >= {TARGET_RATIO:.0%} of direct", passed=rate_p >= TARGET_RATIO * rate_d)
    cpu = Check("proxy server CPU per streamed event", "us", None, round(server_us, 1), "-")
    return BenchResult(
        name="streaming",
        params={"max_tokens": tokens, "repeats": repeats, "token_delay": 0},
        figures={"proxy_events_per_s": rate_p, "direct_events_per_s": rate_d, "ratio": rate_p / rate_d,
                 "server_cpu_us_per_event": server_us, "upstream_cpu_us_per_event": upstream_us},
        raw={"proxy": [asdict(r) for r in proxy_runs], "direct": [asdict(r) for r in direct_runs]},
        checks=[check, cpu])
