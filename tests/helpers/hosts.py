"""Test helper: the real app served by other WSGI hosts through ``wsgi.py``, and the issue's six checks.

Each host runs from the test's own directory (so gunicorn finds no
``gunicorn.conf.py`` of ours), with the repository on ``PYTHONPATH``, the
config from $LLAMA_SWAP_CONFIG, and 127.0.0.1 only. Two simulated models:
A streams a token every 50 ms, B answers at once. Every wait polls with a
deadline (``wait_for``) or is a bounded request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest
import requests

from tests.helpers.server import fake_cmd, guardians_of, hang_up, processes_under, wait_for
from tests.helpers.upstream import REPO_ROOT, free_port, free_port_block

BIN = Path(sys.executable).parent
TOKEN_DELAY = 0.05  # model A's seconds per token: a stream of 40 takes 2 s
REQUEST_TIMEOUT = 30


def in_venv(name: str) -> str:
    """The path of a host's program in our virtual environment, else on PATH ("" when neither has it)."""
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name) or ""


@dataclass(frozen=True)
class HostCase:
    """One host: its command line (given the port), how it is stopped, and how many requests it serves at once."""

    id: str
    program: str  # the executable that must be installed
    args: Callable[[int], list[str]]
    install: str  # what to install when it is missing
    stop_signal: int = signal.SIGTERM
    exit_code: int = 0  # the host's exit status on its stop signal (as subprocess gives it)
    stops_mid_request: bool = True  # its stop runs ours with a request in flight (uWSGI's threads: no)
    one_at_a_time: bool = False  # the host serves one request at a time (gunicorn sync, uWSGI's one thread)
    says: str = ""  # what wsgi.py logs at start in this host
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, port: int) -> list[str]:
        program = in_venv(self.program)
        if not program:
            pytest.skip(f"{self.id}: {self.program} is not installed ({self.install})")
        return [program, *self.args(port)]


def two_models_config(workdir: Path) -> str:
    return (f"startPort: {free_port_block(4)}\nhealthCheckTimeout: 15\nmodels:\n"
            f"  A:\n    cmd: {fake_cmd('A', workdir, '--token-delay', str(TOKEN_DELAY))}\n"
            f"  B:\n    cmd: {fake_cmd('B', workdir)}\n")


class HostRun:
    """One host serving ``wsgi:app`` on a free loopback port, with its config and log in ``workdir``."""

    def __init__(self, workdir: Path, argv: list[str], config_text: str, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "host.log"
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        environment = {**os.environ, "LLAMA_SWAP_CONFIG": str(self.config_path), "PYTHONPATH": pythonpath,
                       "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def starts(self, model: str) -> list[int]:
        path = self.workdir / f"starts-{model}"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def upstreams(self) -> list[psutil.Process]:
        return processes_under(str(self.workdir), "-m simulator")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, f"the host exited with {self.proc.returncode}:\n{self.log()}"
            try:
                return requests.get(self.url("/health"), timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout, what=f"/health\n{self.log()}")

    def chat(self, model: str, max_tokens: int = 4, stream: bool = False) -> requests.Response:
        return requests.post(self.url("/v1/chat/completions"), timeout=REQUEST_TIMEOUT, stream=stream,
                             json={"model": model, "max_tokens": max_tokens, "stream": stream,
                                   "messages": [{"role": "user", "content": "hi"}]})

    def stop(self, signum: int, timeout: float = 30.0) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the host did not exit {timeout}s after signal {signum}:\n{self.log()}") from None

    def kill(self) -> None:
        """Teardown: the host and everything it left, whatever state the test ended in."""
        for proc in [self.proc] if self.proc.poll() is None else []:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
            except psutil.NoSuchProcess:
                pass
            proc.kill()
            proc.wait()
        for leftover in processes_under(str(self.workdir)):
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass


def events(response: requests.Response) -> list[tuple[float, str]]:
    """The server-sent events of a streamed answer, each with the time it arrived."""
    found = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            found.append((time.monotonic(), line[6:].decode()))
    return found


def check_start(run: HostRun, says: str) -> None:
    run.wait_healthy()
    assert says in run.log(), run.log()


def check_list(run: HostRun) -> None:
    r = requests.get(run.url("/v1/models"), timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    assert {"A", "B"} <= {m["id"] for m in r.json()["data"]}, r.text


def check_chat(run: HostRun) -> None:
    r = run.chat("B")
    assert r.status_code == 200, f"chat: {r.status_code} {r.text}\n{run.log()}"
    assert r.json()["choices"][0]["message"]["content"], r.text


def check_guarded(run: HostRun) -> None:
    """A started model's group is watched by a live guardian, run by a Python interpreter (under uWSGI
    ``sys.executable`` is the uwsgi binary, which ran no guardian)."""
    def guardians() -> list[psutil.Process]:
        host = psutil.Process(run.proc.pid)
        return guardians_of(host.pid, *(child.pid for child in host.children(recursive=True)))

    wait_for(guardians, timeout=10, what=f"a guardian under the host\n{run.log()}")
    for guardian in guardians():
        program = os.path.basename(guardian.info["cmdline"][0])
        assert program.startswith("python"), f"the guardian runs as {guardian.info['cmdline']}"


def check_stream(run: HostRun) -> None:
    """16 tokens of A, 50 ms apart, arrive as they are made (not in one piece at the end), ending [DONE]."""
    with run.chat("A", max_tokens=16, stream=True) as r:
        assert r.status_code == 200, f"stream: {r.status_code} {r.text}\n{run.log()}"
        got = events(r)
    assert len(got) >= 10 and got[-1][1] == "[DONE]", got
    spread = got[-1][0] - got[0][0]
    assert spread >= 8 * TOKEN_DELAY, f"the events arrived within {spread:.3f}s: buffered, not streamed"


def check_concurrent(run: HostRun, one_at_a_time: bool) -> None:
    """6 requests over two models at once all answer 200; and (unless the host serves one request at a
    time) /v1/models answers while a 2 s stream of A is still under way, not behind it."""
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda model: run.chat(model), ["A", "B"] * 3))
    assert [r.status_code for r in answers] == [200] * 6, [(r.status_code, r.text[:200]) for r in answers]
    if one_at_a_time:
        return
    first_event, done = threading.Event(), {}

    def read_stream() -> None:
        with run.chat("A", max_tokens=40, stream=True) as r:
            for line in r.iter_lines():
                if line.startswith(b"data: "):
                    first_event.set()
            done["at"], done["status"] = time.monotonic(), r.status_code
        first_event.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    assert first_event.wait(REQUEST_TIMEOUT), "no event of A's stream arrived"
    models = requests.get(run.url("/v1/models"), timeout=REQUEST_TIMEOUT)
    answered = time.monotonic()
    reader.join(REQUEST_TIMEOUT)
    assert models.status_code == 200 and done.get("status") == 200, (models.status_code, done)
    assert answered < done["at"], \
        f"/v1/models answered {answered - done['at']:.2f}s after the stream it should not wait behind ended"


def running_models(run: HostRun) -> dict[str, int]:
    """The models running now (``/running``), each with the pid the server last logged starting it."""
    r = requests.get(run.url("/running"), timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    models = [record["model"] for record in r.json()["running"]]

    def started() -> dict[str, int] | None:  # the log is written behind the answers
        log = run.log()
        pids = {model: re.findall(rf"\b{re.escape(model)}: starting pid (\d+)", log) for model in models}
        return {model: int(found[-1]) for model, found in pids.items()} if all(pids.values()) else None

    return wait_for(started, timeout=10, what=f"the start of {models} in the log\n{run.log()}")


STOP_WITHIN = 20  # seconds: under gunicorn's --graceful-timeout (30 s), after which its master SIGKILLs the worker


@contextmanager
def event_feed(run: HostRun) -> Iterator[None]:
    """The UI's live event feed (``/api/events``), open and served (its first lines read) for the block."""
    feed = requests.get(run.url("/api/events"), stream=True, timeout=REQUEST_TIMEOUT)
    try:
        assert feed.status_code == 200, feed.text
        lines = feed.iter_lines()
        assert next(lines), "the feed's first line"
        yield
        del lines  # only now: urllib3 closes the connection when its reader is dropped (a hang-up)
    finally:
        hang_up(feed)


def check_clean_stop(run: HostRun, case: HostCase, feed_open: bool = False) -> None:
    """The host's stop signal stops the server: every model running at that moment is stopped by the server
    and logged so after the signal (not SIGKILLed by the guardian as the process dies), no upstream is
    left, and the host exits with its own status, within ``STOP_WITHIN`` seconds. With ``feed_open``, the
    UI's event feed is open at the signal (a request that never ends by itself); where the host stops
    without running our stop while a request is in flight (``case.stops_mid_request`` false), the guardian
    must still leave no upstream."""
    running = running_models(run)  # before the feed: a one-at-a-time host would answer it after
    assert running and run.upstreams(), "no upstream ran: the checks before did not start any model"
    with event_feed(run) if feed_open else nullcontext():
        before = len(run.log())
        code = run.stop(case.stop_signal, timeout=STOP_WITHIN)
    wait_for(lambda: not run.upstreams(), timeout=10, what=f"every upstream to be stopped\n{run.log()}")
    after = run.log()[before:]
    assert code == case.exit_code, \
        f"the host exited with {code}, not {case.exit_code}, on signal {case.stop_signal}:\n{after}"
    if feed_open and not case.stops_mid_request:
        assert "stopped pid" not in after, f"{case.id} now runs our stop mid-request: update the docs\n{after}"
        return
    for model, pid in running.items():
        assert f"{model}: stopped pid {pid}" in after, \
            f"{model} (pid {pid}) was not stopped by the server after signal {case.stop_signal}:\n{after}"


def six_checks(workdir: Path, case: HostCase) -> None:
    """The issue's six checks against ``case``'s host: start, list, chat, stream, concurrent, clean stop."""
    port = free_port()
    run = HostRun(workdir, case.argv(port), two_models_config(workdir), case.env, port=port)
    try:
        check_start(run, case.says)
        check_list(run)
        check_chat(run)
        check_guarded(run)
        check_stream(run)
        check_concurrent(run, case.one_at_a_time)
        check_clean_stop(run, case)
    finally:
        run.kill()
