"""The real server (``python -m app``) with a heap probe in its worker: where the worker's memory goes.

Diagnostics only (``bench.heapwatch`` starts it in place of ``python -m app``,
same flags). The app is wrapped in a tiny WSGI middleware: a request carrying
``X-Bench-Heap`` is answered by the probe with a JSON report instead of the
app.

- ``sample``: the worker's RSS; glibc's malloc figures (``mallinfo2``: held
  from the system, in use, free; the number of malloc arenas); pymalloc's
  (arenas, bytes used: ``sys._debugmallocstats``); tracemalloc's traced
  bytes when it is on; the objects the collector tracks, by type, and what
  the weak references point to; greenlets, threads, open fds; the activity
  recorder's backlog.
- ``collect``: ``gc.collect()``, with what was in use before and after.
- ``trim``: ``malloc_trim(0)``, and the RSS before and after (what glibc held free).
- ``top``: tracemalloc's sites that grew most since the probe started.

``BENCH_TRACEMALLOC=<frames>`` turns tracemalloc on in the worker (off by
default: it slows the worker several times); ``BENCH_KEEPALIVE=<seconds>``
replaces gunicorn.conf.py's keepalive.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
import weakref
from typing import Any, Callable, Iterable

import app.__main__ as app_main

HEAP_HEADER = "HTTP_X_BENCH_HEAP"
TRACEMALLOC_ENV = "BENCH_TRACEMALLOC"
KEEPALIVE_ENV = "BENCH_KEEPALIVE"

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
_libc = ctypes.CDLL(None, use_errno=True)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc.mallinfo2.restype = _Mallinfo2
_libc.fdopen.restype = ctypes.c_void_p


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def malloc_arenas() -> int:
    """How many malloc arenas glibc has (``malloc_info``'s ``<heap nr=...>`` elements)."""
    with tempfile.TemporaryFile() as f:
        stream = _libc.fdopen(os.dup(f.fileno()), b"w")
        _libc.malloc_info(0, ctypes.c_void_p(stream))
        _libc.fclose(ctypes.c_void_p(stream))
        f.seek(0)
        return f.read().count(b"<heap nr=")


def pymalloc_stats() -> dict[str, int]:
    """pymalloc's own figures (``sys._debugmallocstats``, which writes to the C stderr): arenas and bytes."""
    wanted = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "allocated",
              "# bytes in available blocks": "available", "Total": "total"}
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    stats = {}
    for row in text.splitlines():
        key, _, value = row.partition("=")
        if key.strip() in wanted and wanted[key.strip()] not in stats and value.strip().replace(",", "").isdigit():
            stats[wanted[key.strip()]] = int(value.strip().replace(",", ""))
    return stats


def sample(types: int = 80) -> dict[str, Any]:
    info = _libc.mallinfo2()
    objects = gc.get_objects()
    by_type = collections.Counter(type(o).__name__ for o in objects)
    report = {
        "t": time.time(), "rss": rss_bytes(),
        "malloc": {"heap": info.arena, "mmapped": info.hblkhd, "in_use": info.uordblks, "free": info.fordblks,
                   "arenas": malloc_arenas()},
        "pymalloc_blocks": sys.getallocatedblocks(), "pymalloc": pymalloc_stats(),
        "gc_objects": len(objects), "greenlets": by_type.get("greenlet", 0) + by_type.get("Greenlet", 0),
        "threads": len(os.listdir("/proc/self/task")), "fds": len(os.listdir("/proc/self/fd")),
        "types": by_type.most_common(types),
        "weakrefs_to": collections.Counter(type(o()).__name__ for o in objects
                                           if isinstance(o, weakref.ReferenceType)).most_common(10),
    }
    del objects
    if tracemalloc.is_tracing():
        report["traced"], report["traced_peak"] = tracemalloc.get_traced_memory()
    return report


def collect() -> dict[str, Any]:
    before = _libc.mallinfo2().uordblks, sys.getallocatedblocks()
    found = gc.collect()
    after = _libc.mallinfo2().uordblks, sys.getallocatedblocks()
    return {"found": found, "malloc_in_use_before": before[0], "malloc_in_use_after": after[0],
            "pymalloc_blocks_before": before[1], "pymalloc_blocks_after": after[1]}


def trim() -> dict[str, Any]:
    gc.collect()
    before = rss_bytes()
    _libc.malloc_trim(0)
    return {"rss_before": before, "rss_after": rss_bytes()}


class HeapProbe:
    """WSGI middleware: ``X-Bench-Heap: sample|trim|top`` answered with a JSON report, all else passed on."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.baseline = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None

    def top(self, lines: int = 30) -> list[str]:
        if self.baseline is None:
            return ["tracemalloc is off (BENCH_TRACEMALLOC=<frames>)"]
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        grown = snapshot.compare_to(self.baseline, "traceback")[:lines]
        return [f"{stat.size_diff / 2**20:+.2f} MiB, {stat.count_diff:+d} blocks\n    "
                + "\n    ".join(stat.traceback.format()[-12:]) for stat in grown]

    def recorder_backlog(self) -> int | None:
        """Finished requests the activity recorder has not written yet."""
        server = getattr(self.app, "extensions", {}).get("llama_swap")
        return server.observatory.recorder.backlog if server is not None else None

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        command = environ.get(HEAP_HEADER)
        if command is None:
            return self.app(environ, start_response)
        if command == "sample":
            report = sample()
            report["recorder_backlog"] = self.recorder_backlog()
        else:
            report = {"collect": collect, "trim": trim, "top": self.top}[command]()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(report).encode()]


class HeapProbedApplication(app_main.LlamaSwapApplication):
    def load_config(self) -> None:
        super().load_config()
        if os.environ.get(KEEPALIVE_ENV):  # an experiment: idle connections let go sooner
            self.cfg.set("keepalive", int(os.environ[KEEPALIVE_ENV]))

    def load(self) -> WSGIApp:
        frames = int(os.environ.get(TRACEMALLOC_ENV) or 0)
        if frames:
            tracemalloc.start(frames)
        return HeapProbe(super().load())


if __name__ == "__main__":
    app_main.LlamaSwapApplication = HeapProbedApplication  # what app's main() runs
    sys.exit(app_main.main())
