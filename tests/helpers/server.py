"""Test helper: run the real server (``python -m app``: gunicorn + one gevent worker).

Each test gets its own directory; every process the test causes (the server,
its worker, each simulated upstream) carries that directory in its command
line, so ``processes_under`` finds leftovers and the fixture can prove that
nothing leaked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from tests.helpers.upstream import REPO_ROOT, free_port, free_port_block


def fake_cmd(model: str, workdir: Path, *flags: str) -> str:
    """The ``cmd`` of a model served by the simulated upstream; counts its starts in a file."""
    extra = " ".join(flags)
    return (f"{sys.executable} -m simulator --port ${{PORT}} --model {model} "
            f"--starts-file {workdir}/starts-{model} {extra}").strip()


def processes_under(marker: str, *also: str) -> list[psutil.Process]:
    """Processes (not this one) whose command line holds ``marker`` and each of ``also``, read once as they
    are listed: a process that exits meanwhile is simply not found, never an error."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            command = " ".join(proc.info["cmdline"] or ())
            if proc.pid != os.getpid() and all(part in command for part in (marker, *also)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def guardians_of(*pids: int) -> list[psutil.Process]:
    """The guardian processes (``scheduler.guardian``) that any of ``pids`` started (its last argument);
    ``.info["cmdline"]`` holds each one's command line."""
    wanted = {str(pid) for pid in pids}
    return [p for p in psutil.process_iter(["cmdline"])
            if "--guarding" in (p.info["cmdline"] or ()) and p.info["cmdline"][-1] in wanted]


def hang_up(response: requests.Response) -> None:
    """Close a streamed response that another thread may be blocked reading: the socket is shut down
    first, which wakes that read and tells the server at once (a bare ``close`` does neither while the
    read holds the socket)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    response.close()


def wait_for(predicate, timeout: float, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def module_server(workdir: Path, config_text: str):
    """A server shared by a test module's tests (``yield from`` it in a module-scoped fixture): started,
    then stopped, and every process it caused proven gone."""
    server = LlamaSwapServer(workdir, config_text).start()
    yield server
    server.stop()
    wait_for(lambda: not processes_under(str(workdir)), timeout=5, what="every process of the module to exit")


class LlamaSwapServer:
    """One running server on a free loopback port, with its config and log in ``workdir``."""

    def __init__(self, workdir: Path, config_text: str, extra_args: tuple[str, ...] = ()):
        self.extra_args = extra_args
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        if not re.search(r"^startPort:", config_text, re.MULTILINE):
            # Never the shared default 5800: a concurrent run's upstream there
            # would answer our model's health check.
            config_text = f"startPort: {free_port_block(16)}\n" + config_text
        self.config_path.write_text(config_text)
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, timeout: float = 30.0, stdout: int | None = None) -> "LlamaSwapServer":
        """Start it; its stdout and stderr go to its log, or stdout where told (``subprocess.PIPE``)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "--config", str(self.config_path),
                 "--listen", f"127.0.0.1:{self.port}", *self.extra_args],
                cwd=REPO_ROOT, stdout=log if stdout is None else stdout,
                stderr=subprocess.STDOUT if stdout is None else log, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(self._healthy, timeout, what=f"server health\n{self.log()}")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return requests.get(self.url("/health"), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, *needles: str, timeout: float = 10.0) -> str:
        """The log once it holds every one of ``needles``. A running server's lines reach its log behind
        the answers (its stdout is written by a thread of its own), so a test that has just had an answer
        waits for the line rather than reading the log at once."""
        try:
            wait_for(lambda: all(needle in self.log() for needle in needles), timeout, what=f"{needles!r} in the log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None
        return self.log()

    def starts(self, model: str) -> list[int]:
        """Pids of every process start of ``model`` (from the simulated upstream's starts file)."""
        path = self.workdir / f"starts-{model}"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def state_of(self, model: str) -> str | None:
        running = requests.get(self.url("/running"), timeout=5).json()["running"]
        return next((r["state"] for r in running if r["model"] == model), None)

    def upstream_processes(self) -> list[psutil.Process]:
        return processes_under(str(self.workdir), "-m simulator")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.proc.stdout is not None:  # a pipe the test may never have read: writes to it fail from now on
            self.proc.stdout.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
