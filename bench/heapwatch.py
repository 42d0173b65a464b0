"""Where the worker's memory goes under load (diagnostics, not part of ``make bench``).

``python -m bench.heapwatch [--clients N] [--seconds S] [--every S] [--idle S] [--tracemalloc FRAMES]``
runs the load benchmark's streaming clients through ``bench.heap_server``
(the real server with a heap probe in its worker) and prints, every
``--every`` seconds, the worker's RSS beside what is allocated inside it:
glibc's heap (held, in use, free, arenas), pymalloc's blocks, the objects the
collector tracks, greenlets, threads and fds. After the load it samples again
once the clients are gone (``--collect``: and after ``gc.collect()``), after ``--idle`` seconds more, and after
``malloc_trim(0)``: RSS that a trim gives back was free memory glibc held, not
objects kept alive. With ``--tracemalloc`` it also prints the allocation
sites that grew most. The environment passes through to the server, so
``MALLOC_ARENA_MAX=2`` or ``BENCH_KEEPALIVE=5`` (see ``bench.heap_server``)
run as experiments.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any, Sequence

import requests

from bench.harness import CHAT_PATH, free_port, running_server, say, stop_everything
from bench.heap_server import TRACEMALLOC_ENV
from bench.load import UPSTREAM_FLAGS, drive, load_config, summary

MIB = 2**20


def probe(base_url: str, command: str, timeout: float = 120.0) -> Any:
    resp = requests.get(base_url + "/health", headers={"X-Bench-Heap": command}, timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def line(label: str, s: dict) -> str:
    m, p = s["malloc"], s["pymalloc"]
    traced = f" traced {s['traced'] / MIB:6.1f}" if "traced" in s else ""
    return (f"{label:>10} rss {s['rss'] / MIB:6.1f} | malloc heap {m['heap'] / MIB:6.1f} mmap {m['mmapped'] / MIB:5.1f}"
            f" in use {m['in_use'] / MIB:6.1f} free {m['free'] / MIB:6.1f} arenas {m['arenas']:2d} |"
            f" pymalloc arenas {p.get('arenas', 0):4d} used {p.get('allocated', 0) / MIB:6.1f} total {p.get('total', 0) / MIB:6.1f}{traced} | gc objects {s['gc_objects']:7d}"
            f" greenlets {s['greenlets']:5d} threads {s['threads']:3d} fds {s['fds']:4d}"
            f" | recorder backlog {s.get('recorder_backlog')}")


def watch(base_url: str, every: float, stop: threading.Event, samples: list[dict]) -> None:
    began = time.monotonic()
    while not stop.wait(every):
        try:
            s = probe(base_url, "sample")
        except requests.RequestException as exc:
            say(f"  probe failed: {exc}")
            continue
        samples.append(s)
        say(line(f"{time.monotonic() - began:.0f} s", s))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heapwatch")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--every", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds to wait after the load before the trim")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--collect", action="store_true", help="gc.collect() in the worker right after the load")
    parser.add_argument("--out", default=None, help="the samples as JSON")
    args = parser.parse_args(argv)
    env = {TRACEMALLOC_ENV: str(args.tracemalloc)} if args.tracemalloc else {}
    port = free_port()
    samples: list[dict] = []
    try:
        with running_server("heap", UPSTREAM_FLAGS, server_module="bench.heap_server", env=env,
                            config_text=lambda w: load_config(w, port)) as server:
            server.warm()
            first = probe(server.base_url, "sample")
            samples.append(first)
            say(line("start", first))
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(server.base_url, args.every, stop, samples), daemon=True)
            watcher.start()
            run = drive(server.base_url + CHAT_PATH, args.clients, args.seconds)
            stop.set()
            watcher.join()
            summary(f"{args.clients} clients, {args.seconds:.0f} s", run, args.seconds)
            after = probe(server.base_url, "sample")
            say(line("after", after))
            if args.tracemalloc:
                say("allocation sites grown most since the start, at the end of the load:")
                for entry in probe(server.base_url, "top", timeout=600):
                    say("  " + entry)
            if args.collect:
                c = probe(server.base_url, "collect")
                say(f"gc.collect(): {c['found']} unreachable; malloc in use {c['malloc_in_use_before'] / MIB:.1f} ->"
                    f" {c['malloc_in_use_after'] / MIB:.1f} MiB, pymalloc blocks {c['pymalloc_blocks_before']} ->"
                    f" {c['pymalloc_blocks_after']}")
                say(line("collected", probe(server.base_url, "sample")))
            if args.idle:
                time.sleep(args.idle)
                say(line(f"+{args.idle:.0f} s", probe(server.base_url, "sample")))
            trimmed = probe(server.base_url, "trim")
            say(f"malloc_trim(0): rss {trimmed['rss_before'] / MIB:.1f} -> {trimmed['rss_after'] / MIB:.1f} MiB")
            last = probe(server.base_url, "sample")
            say(line("trimmed", last))
            grown = {name: count for name, count in last["types"]}
            for name, count in first["types"]:
                grown[name] = grown.get(name, 0) - count
            say("object types, change since the start: "
                + ", ".join(f"{name} {count:+d}" for name, count in sorted(grown.items(), key=lambda kv: -kv[1])[:15]))
            say("weak references, by what they point to: " + ", ".join(
                f"{name} {count}" for name, count in last["weakrefs_to"]))
            samples += [after, trimmed, last]
    finally:
        stop_everything()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(samples, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
