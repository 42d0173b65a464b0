"""Fakes for unit-testing the owners (router loop, process owners) without sockets or sleeps.

- ``FakeClock``: time moves only when the test calls ``advance``; timers and
  ``sleep`` fire then, in deadline order.
- ``FakeLauncher`` / ``FakeChild``: children whose output, exit and reaction
  to signals the test controls.
- ``FakeProbe``: a health endpoint the test turns healthy; it records when
  each check happened (on the fake clock).
- ``FakeProcess``: an upstream process as the router sees it, whose starts
  and stops complete when the test says (or at once).
- ``wait_until``: yield to other greenlets until a condition holds; fails
  after a real-time deadline so a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import itertools
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import gevent
from gevent.event import Event
from gevent.queue import Queue

from scheduler.errors import RouteError, ShuttingDown, StartFailed
from scheduler.process import ProcessSpec
from scheduler.state import ProcessState

DEADLINE_S = 5.0


def wait_until(predicate: Callable[[], object], what: str = "condition", deadline: float = DEADLINE_S):
    """Yield (never sleep) until ``predicate()`` is truthy; AssertionError after ``deadline`` real seconds."""
    limit = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0)


def settle(rounds: int = 50) -> None:
    """Let every runnable greenlet run a few turns (for asserting that something did *not* happen)."""
    for _ in range(rounds):
        gevent.sleep(0)


# --------------------------------------------------------------------------- time


@dataclass(eq=False)
class FakeTimer:
    deadline: float
    seq: int
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[FakeTimer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self._now + max(0.0, delay), next(self._seq), callback)
        self._timers.append(timer)
        return timer

    def wait(self, event: Event, timeout: float) -> bool:
        timed_out = Event()
        timer = self.call_later(timeout, timed_out.set)
        gevent.wait([event, timed_out], count=1)
        timer.cancel()
        return event.is_set()

    def pending(self) -> list[float]:
        """Deadlines of the timers not yet fired nor cancelled."""
        return sorted(t.deadline for t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time on; each timer due fires in deadline order, with other greenlets let run after it."""
        target = self._now + seconds
        while True:
            settle(20)  # greenlets woken earlier may set new timers first
            due = [t for t in self._timers if not t.cancelled and t.deadline <= target]
            if not due:
                break
            timer = min(due, key=lambda t: (t.deadline, t.seq))
            self._timers.remove(timer)
            self._now = max(self._now, timer.deadline)
            timer.callback()
        self._now = target
        settle(20)


# --------------------------------------------------------------------------- children


class FakeChild:
    _pids = itertools.count(4000)

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], ignores_sigterm: bool = False) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.pid = next(self._pids)
        self.ignores_sigterm = ignores_sigterm
        self.signals: list[int] = []
        self.returncode: int | None = None
        self._lines: Queue = Queue()
        self._exited = Event()

    def print(self, line: str) -> None:
        self._lines.put(line)

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._lines.put(None)
            self._exited.set()

    def lines(self) -> Iterator[str]:
        while (line := self._lines.get()) is not None:
            yield line

    def wait(self) -> int:
        self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self.ignores_sigterm):
            self.exit(-sig)


class FakeLauncher:
    def __init__(self, ignores_sigterm: bool = False) -> None:
        self.children: list[FakeChild] = []
        self.ran: list[list[str]] = []  # cmdStop command lines
        self.run_timeouts: list[float] = []  # the time each was given
        self.ignores_sigterm = ignores_sigterm
        self.fail_with: Exception | None = None
        self.on_run: Callable[[list[str]], None] = lambda argv: None

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> FakeChild:
        if self.fail_with is not None:
            raise self.fail_with
        child = FakeChild(argv, env, self.ignores_sigterm)
        self.children.append(child)
        return child

    def run(self, argv: Sequence[str], timeout: float) -> None:
        self.ran.append(list(argv))
        self.run_timeouts.append(timeout)
        self.on_run(list(argv))

    @property
    def child(self) -> FakeChild:
        return self.children[-1]


class FakeCheck:
    def __init__(self, probe: "FakeProbe", url: str) -> None:
        self._probe = probe
        self._url = url
        self.closed = False

    def check(self, timeout: float) -> bool:
        self._probe.checks.append(self._probe.clock.now())
        return self._url in self._probe.healthy

    def close(self) -> None:
        self.closed = True
        self._probe.open_checks -= 1


class FakeProbe:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.healthy: set[str] = set()
        self.checks: list[float] = []
        self.open_checks = 0

    def open(self, url: str) -> FakeCheck:
        self.open_checks += 1
        return FakeCheck(self, url)


# --------------------------------------------------------------------------- processes, as the router sees them


@dataclass(eq=False)
class FakeProcess:
    """Starts and stops complete at once unless the test holds them (``hold_starts``/``hold_stops``)."""

    model: str
    clock: FakeClock
    hold_starts: bool = False
    hold_stops: bool = False
    start_error: RouteError | None = None
    state: ProcessState = ProcessState.STOPPED
    busy: bool = False
    calls: list[str] = field(default_factory=list)
    last_start: tuple[float, float | None] | None = None
    _start_gate: Event = field(default_factory=Event)
    _stop_gate: Event = field(default_factory=Event)

    def __post_init__(self) -> None:
        self.spec = ProcessSpec(self.model, ("fake", self.model), f"http://upstream.invalid/{self.model}")

    @property
    def model_id(self) -> str:
        return self.model

    @property
    def assigned_spec(self) -> ProcessSpec:
        return self.spec

    def ensure_ready(self) -> None:
        self.calls.append("ensure_ready")
        if self.state is ProcessState.SHUTDOWN:
            raise ShuttingDown(f"{self.model} is shut down")
        if self.state is ProcessState.READY:
            return
        self.state = ProcessState.STARTING
        self.last_start = (self.clock.now(), None)
        if self.hold_starts:
            self._start_gate.wait()
            self._start_gate.clear()
        if self.start_error is not None:
            self.state = ProcessState.STOPPED
            raise self.start_error
        if self.state is not ProcessState.STARTING:
            raise StartFailed(f"{self.model} was stopped while starting")
        self.state = ProcessState.READY
        self.last_start = (self.last_start[0], self.clock.now())

    def stop(self) -> None:
        self.calls.append("stop")
        if self.state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
            return
        self.state = ProcessState.STOPPING
        if self.hold_stops:
            self._stop_gate.wait()
        self.state = ProcessState.STOPPED

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self._stop_gate.set()
        self._start_gate.set()
        self.state = ProcessState.SHUTDOWN

    def set_busy(self, busy: bool) -> None:
        self.busy = busy

    def finish_start(self) -> None:
        self._start_gate.set()

    def finish_stop(self) -> None:
        self._stop_gate.set()
