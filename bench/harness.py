"""Shared benchmark machinery: the processes, the HTTP client side, statistics and tables.

This module owns every process a benchmark starts: the proxy server
(``python -m app``, whose upstreams it starts itself) and upstreams the bench
spawns on its own for the direct baseline. Each is registered in ``_LIVE`` the
moment it exists and ``stop_everything()`` ends them all (SIGTERM, then SIGKILL
as a last resort), so an error or Ctrl-C never leaves a child behind. Every
command line carries the bench's private work directory, which is how
``sweep_leftovers()`` finds upstreams the server started and failed to stop.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import psutil
import requests

from app import CONFIG_ENV, WATCH_ENV
from tests.helpers.server import wait_for as wait_until
from tests.helpers.upstream import free_port, http_status as _http_status


def http_status(port: int, path: str = "/health", timeout: float = 1.0) -> int | None:
    """GET ``path`` on a fresh loopback connection; the status, or None if nothing answers."""
    return _http_status(HOST, port, path, timeout)

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
MODEL = "bench"
CHAT_PATH = "/v1/chat/completions"
SERVER_START_TIMEOUT = 60.0
CONCURRENCY_LIMIT = 64
SLOW_STOP_S = 5.0  # a clean stop takes ~1-3 s (the gevent worker's 1 s loop, idle keep-alives)

_LIVE: list[subprocess.Popen] = []


# --------------------------------------------------------------------------- results


@dataclass
class Check:
    """One line of the final summary: a figure, direct vs proxy, and its target if it has one."""

    metric: str
    unit: str
    direct: float | None
    proxy: float | None
    delta: str  # "+0.84" (added) or "82 %" (ratio), already formatted
    target: str = ""
    passed: bool | None = None  # None: informational, no target


@dataclass
class BenchResult:
    """What one benchmark hands back: its parameters, headline figures, raw samples and checks."""

    name: str
    params: dict[str, Any]
    figures: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "figures": self.figures,
                "checks": [asdict(c) for c in self.checks], "raw": self.raw}


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/min/max/mean of latencies given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "min": min(ms), "max": max(ms), "mean": sum(ms) / len(ms)}


def added(proxy: float, direct: float) -> str:
    return f"{proxy - direct:+.2f}"


def ratio(proxy: float, direct: float) -> str:
    return f"{100.0 * proxy / direct:.0f} %" if direct else "n/a"


# --------------------------------------------------------------------------- printing


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table, numbers right-aligned, ready for a terminal or a Markdown code block."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) if cells else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "MISS"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("+", "").replace(" %", ""))
        return True
    except ValueError:
        return text == "-"


def say(text: str = "") -> None:
    print(text, flush=True)


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python, kernel and the date, for the report header."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "kernel": platform.release(),
            "load_average": os.getloadavg(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# --------------------------------------------------------------------------- waiting & probing


def port_accepts(port: int) -> bool:
    """True if something listens on ``HOST:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- HTTP client side


def new_session() -> requests.Session:
    """One client: a keep-alive session that skips proxy/netrc lookups."""
    session = requests.Session()
    session.trust_env = False
    return session


def chat_body(max_tokens: int, stream: bool = False) -> bytes:
    """A small chat completion for the bench model, pre-encoded so the client does no JSON work."""
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say one word."}],
                       "max_tokens": max_tokens, "stream": stream}).encode()


JSON_HEADERS = {"Content-Type": "application/json"}


def timed_post(session: requests.Session, url: str, body: bytes) -> float:
    """POST ``body`` and read the whole answer; the seconds it took (fails on a non-200)."""
    began = time.perf_counter()
    resp = session.post(url, data=body, headers=JSON_HEADERS, timeout=60)
    _ = resp.content
    elapsed = time.perf_counter() - began
    if resp.status_code != 200:
        raise RuntimeError(f"POST {url} answered {resp.status_code}: {resp.text[:300]}")
    return elapsed


# --------------------------------------------------------------------------- processes


def register(proc: subprocess.Popen) -> subprocess.Popen:
    _LIVE.append(proc)
    return proc


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> int:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; idempotent. Returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            pass
    code = proc.wait()
    if proc in _LIVE:
        _LIVE.remove(proc)
    return code


def stop_everything() -> None:
    """End every process this bench started that is still running (newest first)."""
    for proc in list(reversed(_LIVE)):
        stop_process(proc, grace=20.0)


def sweep_leftovers(marker: str) -> list[int]:
    """SIGKILL processes whose command line names ``marker`` (our work dir); the pids killed."""
    killed = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and marker in " ".join(proc.info["cmdline"] or ()):
                proc.kill()
                killed.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed


class Workdir:
    """A private temporary directory; its path marks every process the bench causes."""

    def __init__(self, label: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"llama-swap-bench-{label}-"))

    def remove(self) -> None:
        leftovers = sweep_leftovers(str(self.path))
        if leftovers:
            say(f"  warning: killed leftover processes {leftovers}")
        shutil.rmtree(self.path, ignore_errors=True)


def upstream_argv(port: int, flags: Sequence[str], workdir: Workdir, model: str = MODEL) -> list[str]:
    """The fake upstream's command line: the same for the proxy's config and for a direct spawn."""
    return [PYTHON, "-m", "simulator", "--port", str(port), "--model", model,
            "--starts-file", str(workdir.path / f"starts-{model}-{port}"), *flags]


def spawn_upstream(port: int, flags: Sequence[str], workdir: Workdir) -> subprocess.Popen:
    """Start a fake upstream directly (not waiting); registered for cleanup."""
    return register(subprocess.Popen(upstream_argv(port, flags, workdir), cwd=REPO_ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL))


class ProxyServer:
    """``python -m app`` on a free port, serving one model ``bench`` whose upstream listens on a known port.

    Because the upstream's port is fixed in the config, the bench can talk to
    the very same upstream process directly, for the baseline.
    """

    def __init__(self, workdir: Workdir, upstream_flags: Sequence[str], server_module: str = "app",
                 env: dict[str, str] | None = None, config_text: str | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.extra_args = list(extra_args)  # more command-line flags (--watch-config)
        self.server_module = server_module  # anything taking app's --config/--listen (a profiling launcher)
        self.env = dict(env or {})
        self.port = free_port()
        self.upstream_port = free_port()
        self.config_path = workdir.path / "config.yaml"
        self.log_path = workdir.path / "server.log"
        self.proc: subprocess.Popen | None = None
        self.config_path.write_text(config_text if config_text is not None else self._config(upstream_flags))

    def _config(self, flags: Sequence[str]) -> str:
        cmd = " ".join(upstream_argv(self.upstream_port, flags, self.workdir))
        # concurrencyLimit: the default (10, as in Go) would answer 429 to a third of 32 clients.
        return (f"healthCheckTimeout: 15\nlogLevel: warn\nmodels:\n  {MODEL}:\n"
                f"    cmd: {cmd}\n    proxy: http://{HOST}:{self.upstream_port}\n"
                f"    concurrencyLimit: {CONCURRENCY_LIMIT}\n")

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def direct_url(self) -> str:
        return f"http://{HOST}:{self.upstream_port}"

    def start(self) -> "ProxyServer":
        argv = [PYTHON, "-m", self.server_module, "--config", str(self.config_path), "--listen", f"{HOST}:{self.port}",
                *self.extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if WSGI_HOST != "gunicorn" and self.server_module == "app":  # the same app, served by another host
            argv = wsgi_host_argv(WSGI_HOST, f"{HOST}:{self.port}")
            env[CONFIG_ENV] = str(self.config_path)
            env[WATCH_ENV] = "1" if "--watch-config" in self.extra_args else ""
        with open(self.log_path, "ab") as log:
            self.proc = register(subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True))
        wait_until(self._healthy, SERVER_START_TIMEOUT, what="the server's /health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
        return http_status(self.port, "/health") == 200

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) used so far by the server's own processes and by its upstreams.

        Wall-clock rates on a 2-core machine depend on how the scheduler places
        three busy processes; CPU per request or per event does not, so it is
        the steadier figure to optimise against.
        """
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        server = upstream = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times, cmd = proc.cpu_times(), " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "-m simulator" in cmd:
                upstream += times.user + times.system
            else:
                server += times.user + times.system
        return server, upstream

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def warm(self, timeout: float = 30.0) -> None:
        """Send one request so the upstream is started and healthy."""
        resp = requests.post(self.base_url + CHAT_PATH, data=chat_body(1), headers=JSON_HEADERS, timeout=timeout)
        if resp.status_code != 200:
            raise RuntimeError(f"warm-up answered {resp.status_code}: {resp.text[:300]}\n{self.log_tail()}")

    def unload(self, timeout: float = 30.0) -> None:
        """Stop the upstream through the API and wait until its port is closed."""
        resp = requests.post(self.base_url + "/api/models/unload", timeout=timeout)
        if resp.status_code != 200:
            raise RuntimeError(f"unload answered {resp.status_code}: {resp.text[:300]}")
        wait_until(lambda: not port_accepts(self.upstream_port), timeout, interval=0.005,
                   what="the upstream to stop after unload")

    def stop(self) -> None:
        if self.proc is None:
            return
        began = time.monotonic()
        code = stop_process(self.proc, grace=20.0)
        took = time.monotonic() - began
        if code not in (0, -signal.SIGTERM) or took > SLOW_STOP_S:
            say(f"  note: server exited with status {code} {took:.1f}s after SIGTERM")


# The WSGI host the proxy runs in: "gunicorn" (``python -m app``: gunicorn with one gevent worker), or a
# threaded host through ``wsgi.py`` and the thread bridge (``python -m bench --host waitress``).
WSGI_HOST = "gunicorn"
WSGI_HOSTS = ("gunicorn", "waitress", "gthread")
HOST_THREADS = 64  # a threaded host's request threads: every open stream holds one


def wsgi_host_argv(host: str, listen: str) -> list[str]:
    """The command line that serves ``wsgi:app`` on ``listen`` in the threaded ``host``."""
    bin_dir = os.path.dirname(sys.executable)
    if host == "waitress":
        return [os.path.join(bin_dir, "waitress-serve"), f"--listen={listen}", f"--threads={HOST_THREADS}",
                "--channel-request-lookahead=1", "wsgi:app"]
    if host == "gthread":  # -c /dev/null: not our gunicorn.conf.py, which names the gevent worker
        return [os.path.join(bin_dir, "gunicorn"), "-c", "/dev/null", "-k", "gthread", "--threads",
                str(HOST_THREADS), "-b", listen, "wsgi:app"]
    raise ValueError(f"unknown WSGI host {host!r}; choose from {', '.join(WSGI_HOSTS)}")


class running_server:
    """Context manager: a started ``ProxyServer`` in a fresh work dir, always stopped and swept."""

    def __init__(self, label: str, upstream_flags: Sequence[str], server_module: str = "app",
                 env: dict[str, str] | None = None,
                 config_text: Callable[[Workdir], str] | None = None, extra_args: Sequence[str] = ()) -> None:
        self.label = label
        self.extra_args = extra_args
        self.config_text = config_text  # builds a whole config (given the work dir) instead of one model
        self.flags = list(upstream_flags)
        self.server_module = server_module
        self.env = env
        self.workdir: Workdir | None = None
        self.server: ProxyServer | None = None

    def __enter__(self) -> ProxyServer:
        self.workdir = Workdir(self.label)
        config = self.config_text(self.workdir) if self.config_text is not None else None
        self.server = ProxyServer(self.workdir, self.flags, self.server_module, self.env, config, self.extra_args)
        try:
            return self.server.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        if self.workdir is not None:
            self.workdir.remove()
