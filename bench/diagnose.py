"""Where the proxy's time goes: layer timings and cProfile of the request path (not part of ``make bench``).

``python -m bench.diagnose [--requests N]`` prints:

1. *Layers*, 1 client, non-streamed ``max_tokens: 1``, p50 of each path,
   measured in alternating blocks: direct to the upstream; gunicorn + gevent
   answering by itself (``layer_apps.hello``); forwarding with a bare urllib3
   pool, then with a pooled ``requests.Session`` (``layer_apps``); the real proxy.
   The steps between rows are what each layer costs.
2. *First event*, 1 client, a streamed ``max_tokens: 2`` answer whose first
   event comes with its headers (``--tokens 1``), p50 of each path, sample by
   sample in turn: direct; the stack's floor (``layer_apps.urllib3_stream_passthrough``:
   gunicorn + gevent relaying the upstream's chunks as they come); the real
   proxy. The floor's row is how much of the "+1 ms over direct" target a
   relay doing no work of its own already takes under this stack; what is
   left between it and the proxy's row is the proxy's own work.
3. *Profiles* of the real worker (``bench.profiled_server``): N non-streamed
   requests, then 3 streams of 5,000 events, top functions by own time. The
   ``.prof`` files are saved in ``bench/results/`` for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import requests

from bench.harness import (CHAT_PATH, HOST, PYTHON, REPO_ROOT, chat_body, format_table, free_port,
                           latency_summary_ms, new_session, port_accepts, register, running_server, say,
                           stop_everything, stop_process, timed_post, wait_until)
from bench.first_event import WARMUP, StreamClient, samples_in_turn
from bench.streaming import stream_once

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def start_layer_app(name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``bench.layer_apps:<name>`` under gunicorn with one gevent worker; (process, base URL)."""
    port = free_port()
    proc = register(subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--keep-alive", "10", "--log-level", "warning",
         "-b", f"{HOST}:{port}", f"bench.layer_apps:{name}"],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, env={**os.environ, **env}, start_new_session=True))
    wait_until(lambda: port_accepts(port), 30, what=f"layer app {name}")
    return proc, f"http://{HOST}:{port}"


def measure_layers(urls: dict[str, str], total: int, block: int = 100) -> dict[str, dict[str, float]]:
    """1 client per path, each its own session; blocks rotate over the paths. Latency summaries in ms."""
    body = chat_body(max_tokens=1)
    sessions = {name: new_session() for name in urls}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for name, url in urls.items():
        for _ in range(50):
            timed_post(sessions[name], url, body)
    for _ in range(max(1, total // block)):
        for name, url in urls.items():
            samples[name] += [timed_post(sessions[name], url, body) for _ in range(block)]
    for session in sessions.values():
        session.close()
    return {name: latency_summary_ms(s) for name, s in samples.items()}


def run_layers(total: int) -> None:
    say(f"[layers] 1 client, non-streamed max_tokens 1, {total} requests per path, p50 in ms")
    procs: list[subprocess.Popen] = []
    with running_server("layers", ["--tokens", "1"]) as server:
        server.warm()
        try:
            hello, hello_url = start_layer_app("hello", {})
            passthrough, pass_url = start_layer_app("passthrough", {"BENCH_UPSTREAM": server.direct_url})
            bare, bare_url = start_layer_app("urllib3_passthrough", {"BENCH_UPSTREAM": server.direct_url})
            procs += [hello, passthrough, bare]
            urls = {"direct to upstream": server.direct_url + CHAT_PATH,
                    "gunicorn+gevent, answers itself": hello_url + CHAT_PATH,
                    "gunicorn+gevent + urllib3 passthrough": bare_url + CHAT_PATH,
                    "gunicorn+gevent + requests passthrough": pass_url + CHAT_PATH,
                    "real proxy (Flask, router, lease, streaming)": server.base_url + CHAT_PATH}
            stats = measure_layers(urls, total)
        finally:
            for proc in procs:
                stop_process(proc)
    direct = stats["direct to upstream"]["p50"]
    rows = [(name, s["p50"], s["p99"], s["p50"] - direct) for name, s in stats.items()]
    say("    " + format_table(["path", "p50", "p99", "p50 - direct"], rows).replace("\n", "\n    "))


def run_first_event_layers(total: int) -> None:
    say(f"[first-event layers] 1 client, streamed max_tokens 2, {total} samples per path in turn,"
        " send to the first event, ms")
    with running_server("first-event-layers", ["--tokens", "1"]) as server:
        server.warm()
        floor, floor_url = start_layer_app("urllib3_stream_passthrough", {"BENCH_UPSTREAM": server.direct_url})
        try:
            body, floor_port = chat_body(max_tokens=2, stream=True), int(floor_url.rsplit(":", 1)[1])
            clients = {"direct to upstream": StreamClient(server.upstream_port, body),
                       "floor: gunicorn+gevent + urllib3 stream relay": StreamClient(floor_port, body),
                       "real proxy": StreamClient(server.port, body)}
            samples_in_turn(clients, WARMUP)
            samples = {name: [sample.first_event_s for sample in got]
                       for name, got in samples_in_turn(clients, total).items()}
        finally:
            for client in clients.values():
                client.close()
            stop_process(floor)
    stats = {name: latency_summary_ms(s) for name, s in samples.items()}
    direct = stats["direct to upstream"]["p50"]
    rows = [(name, s["p50"], s["p90"], s["p50"] - direct) for name, s in stats.items()]
    say("    " + format_table(["path", "p50", "p90", "p50 - direct"], rows).replace("\n", "\n    "))


def profile_switch(base_url: str, command: str) -> None:
    resp = requests.get(base_url + "/health", headers={"X-Bench-Profile": command}, timeout=30)
    if resp.status_code != 204:
        raise RuntimeError(f"profile {command} answered {resp.status_code} (is bench.profiled_server running?)")


def print_profile(path: Path, title: str, per: int, limit: int = 28) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    say(f"  {title}: {total * 1000:.0f} ms profiled CPU+wait in the worker, {total * 1e6 / per:.0f} us per unit")
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).strip_dirs().sort_stats("tottime").print_stats(limit)
    text = out.getvalue()
    say("    " + text[text.find("   ncalls"):].rstrip().replace("\n", "\n    "))


def run_profiles(requests_count: int) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    small, stream = RESULTS_DIR / "profile-small.prof", RESULTS_DIR / "profile-stream.prof"
    say(f"[profile] real worker under cProfile: {requests_count} small requests, then 3 x 5,000-event streams")
    workdir_env = {"BENCH_PROFILE_OUT": str(small)}
    with running_server("profile", ["--tokens", "1"], server_module="bench.profiled_server",
                        env=workdir_env) as server:
        server.warm()
        url, body = server.base_url + CHAT_PATH, chat_body(max_tokens=1)
        session = new_session()
        for _ in range(100):
            timed_post(session, url, body)
        profile_switch(server.base_url, "start")
        for _ in range(requests_count):
            timed_post(session, url, body)
        profile_switch(server.base_url, "stop")
        stream_body = chat_body(max_tokens=5000, stream=True)
        stream_once(session, url, stream_body)
        # Same worker, same output path: rename the first dump before the second.
        small_tmp = small.with_suffix(".tmp")
        small.replace(small_tmp)
        profile_switch(server.base_url, "start")
        for _ in range(3):
            stream_once(session, url, stream_body)
        profile_switch(server.base_url, "stop")
        small.replace(stream)
        small_tmp.replace(small)
        session.close()
    print_profile(small, "small non-streamed requests", requests_count)
    print_profile(stream, "streams (per event)", 3 * 5003)
    say(f"  profiles saved: {small} {stream}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diagnose", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per path / profiled requests")
    parser.add_argument("parts", nargs="*", default=["layers", "first-event", "profile"],
                        help="layers, first-event, profile")
    args = parser.parse_args(argv)
    try:
        if "layers" in args.parts:
            run_layers(args.requests)
        if "first-event" in args.parts:
            run_first_event_layers(args.requests)
        if "profile" in args.parts:
            run_profiles(args.requests)
    finally:
        stop_everything()
    return 0


if __name__ == "__main__":
    sys.exit(main())
