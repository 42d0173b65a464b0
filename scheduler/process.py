"""One upstream process and the greenlet that owns its lifecycle.

Every state change of an upstream (stopped → starting → ready → stopping →
stopped, or shutdown) is taken by one owner greenlet reading one mailbox.
Callers *ask* (``ensure_ready``, ``stop``, ``shutdown``) and block until the
owner answers; they never read ``state`` and act on it. That is what makes a
request arriving during a TTL unload safe: the owner sees "stopping", holds the
caller until the child is dead, then starts a fresh one.

Slow work (polling health, waiting for a child to exit, running ``cmdStop``)
runs in helper greenlets that report back through the same mailbox, tagged
with the generation of the child they were about, so news of an old child
never moves the state of a newer one.

Children run in their own session (so one ``killpg`` reaches everything they
spawned) and are asked by the kernel to die with us (``PR_SET_PDEATHSIG``),
so even a SIGKILLed proxy leaves no orphan holding a GPU.

This module expects gevent's monkey patching (gunicorn's gevent worker does
it) so that ``requests`` in the health poller yields to other greenlets.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import gevent
import gevent.subprocess
from gevent.event import AsyncResult
from gevent.queue import Empty, Queue
import requests

from scheduler.errors import RouteError, ShuttingDown, StartFailed
from scheduler.httpclient import upstream_session
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.process")

# Health polling: first poll right after spawn, every 10 ms for the first
# second (most swaps of small models land there), then backing off by 1.5x to
# at most 100 ms. The Go version waits 250 ms, then polls once a second.
HEALTH_FIRST_INTERVAL = 0.010
HEALTH_FAST_PERIOD = 1.0
HEALTH_MAX_INTERVAL = 0.100
HEALTH_BACKOFF = 1.5

LAST_LINES_KEPT = 20
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True)
class ProcessSpec:
    """What the owner needs to run one model's upstream, already macro-expanded."""

    model_id: str
    argv: tuple[str, ...]
    proxy_url: str
    check_url: str | None = None  # None: ready as soon as spawned
    stop_argv: tuple[str, ...] = ()  # may contain the literal "${PID}"
    env: Mapping[str, str] = field(default_factory=dict)
    health_timeout: float = 120.0
    unload_timeout: float = 10.0
    ttl: float = 0.0  # seconds idle before unloading; 0 = never
    cwd: str | None = None


def next_health_interval(elapsed: float, previous: float) -> float:
    """Seconds until the next health poll, ``elapsed`` seconds after spawn."""
    if elapsed <= HEALTH_FAST_PERIOD:
        return HEALTH_FIRST_INTERVAL
    return min(HEALTH_MAX_INTERVAL, previous * HEALTH_BACKOFF)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn asking the kernel to SIGKILL the child when we die."""

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already died before prctl
            os._exit(1)

    return preexec


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class UpstreamProcess:
    """Owns one upstream's child process, its state, health checks and TTL."""

    def __init__(self, spec: ProcessSpec, on_output: Callable[[str, str], None] | None = None):
        self.spec = spec
        self._on_output = on_output or (lambda model, line: None)
        self._mailbox: Queue = Queue()
        self._state = ProcessState.STOPPED
        self._generation = 0
        self._child: gevent.subprocess.Popen | None = None
        self._started_at = 0.0
        self._pump: gevent.Greenlet | None = None  # reads the child's output until EOF
        self._health: gevent.Greenlet | None = None  # polls checkEndpoint while starting
        self._stop_began = 0.0
        self._ready_waiters: list[AsyncResult] = []
        self._stop_waiters: list[AsyncResult] = []
        self._shutdown_after_stop = False
        self._last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES_KEPT)
        self._in_flight = 0
        self._idle_since = time.monotonic()
        self._owner = gevent.spawn(self._run)

    # ------------------------------------------------------------------ asking
    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def state(self) -> ProcessState:
        """Advisory snapshot: fine for reports and eviction choices, never to gate a start or stop."""
        return self._state

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._state != ProcessState.STOPPED else None

    def ensure_ready(self) -> None:
        """Block until the upstream is ready, starting it (or waiting out a stop) as needed."""
        self._ask("ensure_ready")

    def stop(self) -> None:
        """Block until the upstream is stopped (graceful, then forced after ``unload_timeout``)."""
        self._ask("stop")

    def shutdown(self) -> None:
        """Stop for good: later ``ensure_ready`` calls fail at once."""
        self._ask("shutdown")

    def request_started(self) -> None:
        """Count a request in flight (TTL never unloads a busy upstream).

        Called synchronously by the router when it grants a request: under
        gevent this cannot interleave with the owner's TTL decision, so a
        granted request is always counted before the owner can look.
        """
        self._in_flight += 1

    def request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle_since = time.monotonic()
            if self.spec.ttl > 0:
                self._mailbox.put(("activity",))

    def _ask(self, verb: str) -> None:
        reply = AsyncResult()
        self._mailbox.put((verb, reply))
        reply.get()  # raises the RouteError the owner set

    # ------------------------------------------------------------------ owner loop
    def _run(self) -> None:
        while True:
            try:
                message = self._mailbox.get(timeout=self._ttl_wait())
            except Empty:
                message = ("ttl",)
            try:
                getattr(self, "_on_" + message[0])(*message[1:])
            except Exception:  # the owner must never die: it would wedge every caller
                log.exception("%s: error handling %s", self.model_id, message[0])

    def _ttl_wait(self) -> float | None:
        if self.spec.ttl <= 0 or self._state != ProcessState.READY or self._in_flight > 0:
            return None
        return max(0.0, self._idle_since + self.spec.ttl - time.monotonic())

    def _on_activity(self) -> None:
        pass  # wakes the loop so _ttl_wait is recomputed

    def _on_ttl(self) -> None:
        if self._ttl_wait() == 0.0:
            log.info("%s: unloading after %gs idle (ttl)", self.model_id, self.spec.ttl)
            self._begin_stop()

    def _on_ensure_ready(self, reply: AsyncResult) -> None:
        state = self._state
        if state == ProcessState.READY:
            reply.set(None)
        elif state in (ProcessState.STARTING, ProcessState.STOPPING):
            # While stopping (a TTL unload, say) the caller waits for the child
            # to die; _on_exited then starts a fresh one for it.
            self._ready_waiters.append(reply)
        elif state == ProcessState.STOPPED:
            self._ready_waiters.append(reply)
            self._spawn()
        else:
            reply.set_exception(ShuttingDown(f"model {self.model_id} is shut down"))

    def _on_stop(self, reply: AsyncResult) -> None:
        if self._state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
            reply.set(None)
            return
        self._stop_waiters.append(reply)
        if self._state != ProcessState.STOPPING:
            self._begin_stop()
        self._fail_ready_waiters(StartFailed(f"model {self.model_id} was stopped while starting"))

    def _on_shutdown(self, reply: AsyncResult) -> None:
        self._shutdown_after_stop = True
        self._fail_ready_waiters(ShuttingDown(f"model {self.model_id} is shutting down"))
        if self._state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
            self._state = ProcessState.SHUTDOWN
            reply.set(None)
            return
        self._stop_waiters.append(reply)
        if self._state != ProcessState.STOPPING:
            self._begin_stop()

    def _on_healthy(self, generation: int) -> None:
        if generation != self._generation or self._state != ProcessState.STARTING:
            return
        self._state = ProcessState.READY
        self._idle_since = time.monotonic()
        elapsed = time.monotonic() - self._started_at
        log.info("%s: ready, pid %d, in %.2fs", self.model_id, self._child.pid, elapsed)
        waiters, self._ready_waiters = self._ready_waiters, []
        for reply in waiters:
            reply.set(None)

    def _on_unhealthy(self, generation: int, reason: str) -> None:
        if generation != self._generation or self._state != ProcessState.STARTING:
            return
        log.warning("%s: %s; stopping pid %d", self.model_id, reason, self._child.pid)
        self._fail_ready_waiters(StartFailed(f"model {self.model_id}: {reason}{self._tail()}"))
        self._begin_stop()

    def _on_exited(self, generation: int, returncode: int) -> None:
        if generation != self._generation:
            return
        previous = self._state
        pid = self._child.pid
        _kill_group(pid, signal.SIGKILL)  # anything the child left in its group
        self._cancel_health()
        if self._pump is not None:
            self._pump.join(timeout=0.5)  # let the last lines in before quoting them
        self._state = ProcessState.STOPPED
        if previous == ProcessState.STARTING:
            log.warning("%s: pid %d exited with code %s while starting", self.model_id, pid, returncode)
            self._fail_ready_waiters(StartFailed(
                f"upstream command exited prematurely with code {returncode} "
                f"while starting model {self.model_id}{self._tail()}"))
        elif previous == ProcessState.READY:
            log.warning("%s: pid %d exited unexpectedly with code %s", self.model_id, pid, returncode)
        else:
            log.info("%s: stopped pid %d in %.2fs (exit code %s)",
                     self.model_id, pid, time.monotonic() - self._stop_began, returncode)
        waiters, self._stop_waiters = self._stop_waiters, []
        if self._shutdown_after_stop:
            self._state = ProcessState.SHUTDOWN
        for reply in waiters:
            reply.set(None)
        if self._ready_waiters and self._state == ProcessState.STOPPED:
            self._spawn()  # someone asked for it while it was stopping

    # ------------------------------------------------------------------ child machinery
    def _spawn(self) -> None:
        spec = self.spec
        self._generation += 1
        self._last_lines.clear()
        self._started_at = time.monotonic()
        env = dict(os.environ)
        env.update(spec.env)
        try:
            child = gevent.subprocess.Popen(
                list(spec.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env, cwd=spec.cwd, close_fds=True,
                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        except OSError as exc:
            log.error("%s: cannot start %r: %s", self.model_id, spec.argv[0] if spec.argv else "", exc)
            self._fail_ready_waiters(StartFailed(f"cannot start model {self.model_id}: {exc}"))
            return
        self._child = child
        self._state = ProcessState.STARTING
        log.info("%s: starting pid %d: %s", self.model_id, child.pid, " ".join(spec.argv))
        generation = self._generation
        self._pump = gevent.spawn(self._pump_output, child)
        gevent.spawn(self._watch_exit, generation, child)
        if spec.check_url is None:
            self._mailbox.put(("healthy", generation))
        else:
            self._health = gevent.spawn(self._poll_health, generation)

    def _pump_output(self, child: gevent.subprocess.Popen) -> None:
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._last_lines.append(line)
            self._on_output(self.model_id, line)

    def _watch_exit(self, generation: int, child: gevent.subprocess.Popen) -> None:
        returncode = child.wait()
        self._mailbox.put(("exited", generation, returncode))

    def _poll_health(self, generation: int) -> None:
        url = self.spec.check_url
        deadline = self._started_at + self.spec.health_timeout
        interval = HEALTH_FIRST_INTERVAL
        with upstream_session(pool_size=1) as session:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    self._mailbox.put(("unhealthy", generation,
                                       f"health check timed out after {self.spec.health_timeout:g}s"))
                    return
                try:
                    response = session.get(url, timeout=(1.0, min(5.0, deadline - now)))
                    if response.status_code == 200:
                        self._mailbox.put(("healthy", generation))
                        return
                except requests.RequestException:
                    pass
                interval = next_health_interval(now - self._started_at, interval)
                gevent.sleep(interval)

    def _begin_stop(self) -> None:
        self._state = ProcessState.STOPPING
        self._stop_began = time.monotonic()
        self._cancel_health()
        gevent.spawn(self._terminate, self._child)

    def _terminate(self, child: gevent.subprocess.Popen) -> None:
        """Ask the child to stop (cmdStop or SIGTERM to its group), then force it."""
        timeout = self.spec.unload_timeout
        if self.spec.stop_argv:
            argv = [arg.replace("${PID}", str(child.pid)) for arg in self.spec.stop_argv]
            log.info("%s: running cmdStop for pid %d: %s", self.model_id, child.pid, " ".join(argv))
            try:
                gevent.subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, timeout=timeout)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("%s: cmdStop failed: %s; sending SIGTERM", self.model_id, exc)
                _kill_group(child.pid, signal.SIGTERM)
        else:
            _kill_group(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s: pid %d still running %gs after stop request; sending SIGKILL",
                        self.model_id, child.pid, timeout)
            _kill_group(child.pid, signal.SIGKILL)

    def _cancel_health(self) -> None:
        if self._health is not None:
            self._health.kill(block=False)
            self._health = None

    def _fail_ready_waiters(self, error: RouteError) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for reply in waiters:
            reply.set_exception(error)

    def _tail(self) -> str:
        lines = list(self._last_lines)[-5:]
        return (": last output: " + " | ".join(lines)) if lines else ""
