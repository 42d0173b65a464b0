"""Test helper: run ``simulator`` as a real child process on a free port.

Typical use::

    with running_fake_upstream("--tokens", "4") as up:
        requests.get(up.url("/health"))

or, to control startup yourself, ``start_fake_upstream(..., wait=False)`` then
``up.wait_healthy()``; always finish with ``up.stop()`` (idempotent: SIGTERM,
then SIGKILL as a last resort).  The child's stdout is drained by a thread
into ``up.lines`` so a chatty upstream never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, read it back, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the kernel's ephemeral range.

    ``startPort`` hands models consecutive ports; a block that starts at a
    port the kernel handed out (``free_port``) runs into other tests' client
    sockets, and the shared default 5800 into concurrent test runs, whose
    upstream would then pass our model's health check. Under pytest-xdist each
    worker draws from a range of its own, so two workers never share a block.
    """
    low, high = _port_range()
    for _ in range(200):
        base = random.randrange(low, high - count)
        if all(_port_is_free(port) for port in range(base, base + count)):
            return base
    raise AssertionError(f"no block of {count} free ports")


PORT_RANGE = (20000, 32000)  # below the kernel's ephemeral ports (32768 and up)


def _port_range() -> tuple[int, int]:
    """This test process's share of ``PORT_RANGE``: all of it, or one slice per pytest-xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers <= 1:
        return PORT_RANGE
    size = (PORT_RANGE[1] - PORT_RANGE[0]) // workers
    low = PORT_RANGE[0] + int(worker[2:]) % workers * size
    return low, low + size


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(host: str, port: int, path: str = "/health", timeout: float = 1.0) -> int | None:
    """GET ``path`` and return the status code, or None if nothing answers."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class FakeUpstream:
    """A running ``python -m simulator`` child."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """Everything the child printed so far."""
        return "\n".join(self.lines)

    def health(self, timeout: float = 1.0) -> int | None:
        return http_status(self.host, self.port, "/health", timeout)

    def wait_status(self, wanted: int, timeout: float = 10.0) -> None:
        """Poll /health until it answers ``wanted``; fail on child exit or deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake upstream exited with {self.proc.returncode}:\n{self.output()}")
            if self.health(timeout=0.5) == wanted:
                return
            time.sleep(0.01)
        raise TimeoutError(f"/health never answered {wanted} within {timeout}s:\n{self.output()}")

    def wait_healthy(self, timeout: float = 10.0) -> None:
        self.wait_status(200, timeout)

    def wait_exit(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout=timeout)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float = 2.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()


def _drain(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
    proc.stdout.close()


def spawn_fake_upstream(*flags: str, host: str = "127.0.0.1", port: int | None = None) -> FakeUpstream:
    """Start the child (not waiting for anything) and return its handle."""
    port = free_port(host) if port is None else port
    cmd = [sys.executable, "-m", "simulator", "--host", host, "--port", str(port), *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    up = FakeUpstream(proc, host, port)
    threading.Thread(target=_drain, args=(proc, up.lines), daemon=True).start()
    return up


def start_fake_upstream(*flags: str, host: str = "127.0.0.1", wait: bool = True, timeout: float = 10.0,
                        attempts: int = 3) -> FakeUpstream:
    """Start the fake upstream on a free port; with ``wait``, return once /health is 200.

    Retries on a fresh port if the child dies before becoming healthy (the
    free-port probe is inherently racy).
    """
    for attempt in range(attempts):
        up = spawn_fake_upstream(*flags, host=host)
        if not wait:
            return up
        try:
            up.wait_healthy(timeout)
            return up
        except RuntimeError:
            up.kill()
            if attempt == attempts - 1:
                raise
        except BaseException:
            up.kill()
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_fake_upstream(*flags: str, host: str = "127.0.0.1", wait: bool = True,
                          timeout: float = 10.0) -> Iterator[FakeUpstream]:
    """Context manager around ``start_fake_upstream`` that always stops the child."""
    up = start_fake_upstream(*flags, host=host, wait=wait, timeout=timeout)
    try:
        yield up
    finally:
        up.stop()
