"""What the watchers cost: every observer on vs none, per request and per streamed event; and 1,000 live clients.

Two proxies, identical but for ``LLAMA_SWAP_OBSERVERS=none`` on one (no
access log, Prometheus series, in-flight table, activity meter or captures),
each with its own upstream, ``logLevel: info`` on both (the access line is
written when its observer is on):

1. *Overhead*: a small non-streamed completion, 1 client, the two proxies
   and the direct path to each one's upstream measured in rotating blocks
   (so drift in machine load hits all alike). Target: observers on at most
   +0.2 ms over observers off at p50.
2. *Streaming*: one 5,000-event stream, median events/s over alternating
   runs. Target: observers on at least 90 % of observers off.
3. *1,000 live clients*: 1,000 ``/api/events`` subscribers connected to the
   observers-on proxy (read by one selector thread, as dashboards would:
   they read what they are sent), the worker's memory before and after, and
   the overhead measured again while they are connected.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from multiprocessing.connection import Connection

import psutil

from bench.harness import (CHAT_PATH, HOST, MODEL, BenchResult, Check, Workdir, chat_body, format_table, free_port,
                           latency_summary_ms, median, new_session, ratio, running_server, say, upstream_argv)
from bench.overhead import interleaved_latencies
from bench.streaming import stream_once

TARGET_ADDED_P50_MS = 0.2
TARGET_STREAM_RATIO = 0.90
SUBSCRIBERS = 1000
OFF = {"LLAMA_SWAP_OBSERVERS": "none"}


def config(flags: list[str]):
    def build(workdir: Workdir) -> str:
        port = free_port()
        cmd = " ".join(upstream_argv(port, flags, workdir))
        return (f"healthCheckTimeout: 15\nlogLevel: info\nmodels:\n  {MODEL}:\n    cmd: {cmd}\n"
                f"    proxy: http://{HOST}:{port}\n    concurrencyLimit: 64\n")
    return build


def direct_url_of(server) -> str:
    """The upstream's URL, read back from the config (this bench writes its own)."""
    text = server.config_path.read_text()
    return text.split("proxy: ", 1)[1].split()[0]


def worker_rss_mib(server) -> float:
    root = psutil.Process(server.proc.pid)
    workers = [p for p in root.children() if "simulator" not in " ".join(p.cmdline())]
    return sum(p.memory_info().rss for p in workers) / 2**20


def _hold_subscribers(port: int, count: int, ready: Connection, stop: Connection) -> None:
    """In a child process: connect ``count`` SSE clients, say how many bytes the opening took, read until told."""
    socks = []
    selector = selectors.DefaultSelector()
    for _ in range(count):  # one after the other, each reading its initial payload, as browsers would
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        sock.settimeout(30)
        data = b""
        while data.count(b"event:message") < 6:
            data += sock.recv(65536)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    ready.send("connected")
    received = 0
    while not stop.poll():
        for key, _ in selector.select(timeout=0.1):
            try:
                received += len(key.fileobj.recv(65536))  # type: ignore[union-attr]
            except BlockingIOError:
                pass
            except OSError:
                selector.unregister(key.fileobj)
    ready.send(received)
    for sock in socks:
        sock.close()


class Subscribers:
    """``count`` SSE clients of ``/api/events``, held and read (discarding) by a child process, as dashboards
    elsewhere would: reading them in this process would steal the measuring thread's GIL."""

    def __init__(self, port: int, count: int):
        self._ready, child_ready = multiprocessing.Pipe()
        self._stop, child_stop = multiprocessing.Pipe()
        self._proc = multiprocessing.Process(target=_hold_subscribers, args=(port, count, child_ready, child_stop),
                                             daemon=True)
        self._proc.start()
        if not self._ready.poll(120) or self._ready.recv() != "connected":
            self._proc.kill()
            raise RuntimeError(f"{count} /api/events clients could not connect")
        self.received = 0

    def close(self) -> None:
        self._stop.send("stop")
        if self._ready.poll(10):
            self.received = self._ready.recv()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


def overhead_on_off(on, off, body: bytes, total: int, block: int, warmup: int) -> dict[str, dict[str, float]]:
    with new_session() as s_on, new_session() as s_off, new_session() as d_on, new_session() as d_off:
        runs = interleaved_latencies({
            "on": (s_on, on.base_url + CHAT_PATH), "off": (s_off, off.base_url + CHAT_PATH),
            "direct_on": (d_on, direct_url_of(on) + CHAT_PATH), "direct_off": (d_off, direct_url_of(off) + CHAT_PATH)},
            body, total, block, warmup)
    return {name: latency_summary_ms(values) for name, values in runs.items()}


def report(title: str, figures: dict[str, dict[str, float]]) -> None:
    rows = [(k, figures["direct_off"][k], figures["off"][k], figures["direct_on"][k], figures["on"][k],
             figures["on"][k] - figures["off"][k]) for k in ("p50", "p90", "p99", "mean")]
    say(f"  {title} (ms, n={figures['on']['n']} per path)")
    say("    " + format_table(["", "direct (off's)", "observers off", "direct (on's)", "observers on", "on - off"],
                              rows).replace("\n", "\n    "))


def run_observers(quick: bool = False) -> BenchResult:
    total, block, warmup = (200, 50, 20) if quick else (2000, 250, 200)
    repeats, subscribers = (2, 100) if quick else (5, SUBSCRIBERS)
    body = chat_body(max_tokens=1)
    say("[observers] every observer on vs none: overhead, streaming, and with 1,000 live /api/events clients")
    with running_server("observers-on", [], config_text=config(["--tokens", "1", "--token-delay", "0"])) as on, \
            running_server("observers-off", [], env=OFF,
                           config_text=config(["--tokens", "1", "--token-delay", "0"])) as off:
        on.warm()
        off.warm()
        quiet = overhead_on_off(on, off, body, total, block, warmup)
        report("overhead, 1 client", quiet)

        stream_body = chat_body(max_tokens=5000, stream=True)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        with new_session() as s_on, new_session() as s_off:
            warm = chat_body(max_tokens=500, stream=True)
            stream_once(s_on, on.base_url + CHAT_PATH, warm)
            stream_once(s_off, off.base_url + CHAT_PATH, warm)
            for i in range(repeats):
                order = [("on", s_on, on), ("off", s_off, off)]
                for name, session, server in (order if i % 2 == 0 else order[::-1]):
                    rates[name].append(stream_once(session, server.base_url + CHAT_PATH, stream_body).events_per_s)
        rate_on, rate_off = median(rates["on"]), median(rates["off"])
        say(f"  streaming (events/s, median of {repeats}): observers off {rate_off:,.0f}, on {rate_on:,.0f} "
            f"({ratio(rate_on, rate_off)})")

        rss_before = worker_rss_mib(on)
        began = time.perf_counter()
        clients = Subscribers(on.port, subscribers)
        connect_s = time.perf_counter() - began
        try:
            rss_after = worker_rss_mib(on)
            say(f"  {subscribers} /api/events clients connected in {connect_s:.1f}s: worker memory "
                f"{rss_before:.0f} MiB -> {rss_after:.0f} MiB ({(rss_after - rss_before) * 1024 / subscribers:.0f} "
                f"KiB per client)")
            crowded = overhead_on_off(on, off, body, total, block, warmup)
            report(f"overhead, 1 client, {subscribers} live clients on the observers-on proxy", crowded)
        finally:
            clients.close()
        say(f"    the live clients read {clients.received / 2**20:.1f} MiB meanwhile")

    added = quiet["on"]["p50"] - quiet["off"]["p50"]
    crowded_added = crowded["on"]["p50"] - crowded["off"]["p50"]
    checks = [
        Check("observers on vs off, overhead p50", "ms", quiet["off"]["p50"], quiet["on"]["p50"], f"{added:+.2f}",
              target=f"on - off <= +{TARGET_ADDED_P50_MS} ms", passed=added <= TARGET_ADDED_P50_MS),
        Check("observers on vs off, streaming", "ev/s", round(rate_off), round(rate_on), ratio(rate_on, rate_off),
              target=f"on >= {TARGET_STREAM_RATIO:.0%} of off", passed=rate_on >= TARGET_STREAM_RATIO * rate_off),
        Check(f"worker memory with {subscribers} /api/events clients", "MiB", round(rss_before),
              round(rss_after), f"{rss_after - rss_before:+.0f}"),
        Check(f"overhead p50 with {subscribers} /api/events clients", "ms", crowded["off"]["p50"],
              crowded["on"]["p50"], f"{crowded_added:+.2f}"),
    ]
    return BenchResult(
        name="observers",
        params={"requests": total, "block": block, "stream_repeats": repeats, "subscribers": subscribers},
        figures={"quiet_ms": quiet, "crowded_ms": crowded, "stream_events_per_s": {"on": rates["on"], "off": rates["off"]},
                 "worker_rss_mib": {"before": rss_before, "after": rss_after}, "connect_s": connect_s},
        raw={}, checks=checks)
