"""One upstream process and the greenlet that owns its lifecycle.

Every state change of an upstream (stopped → starting → ready → stopping →
stopped, or shutdown) is taken by one owner greenlet reading one mailbox,
through one method (``_become``), which also publishes it. Callers *ask*
(``ensure_ready``, ``stop``, ``shutdown``) and block until the owner answers;
they never read ``state`` and act on it. That is what makes a request
arriving during a TTL unload safe: the owner sees "stopping", holds the
caller until the child is dead, then starts a fresh one.

The owner never waits on anything slow itself. Polling health, waiting for a
child to exit, reading its output and asking it to stop (``cmdStop`` or
SIGTERM) run in helper greenlets; they, and timers (the TTL, the
``unloadTimeout`` after which a stop is forced), report back through the
same mailbox, tagged with the generation of the child they were about, so
news of an old child never moves the state of a newer one.

Whether the model is busy is the scheduler's to count (its in-flight
requests); the router tells the owner when that turns (``set_busy``), and the
TTL counts idle time from the last turn to idle.

A bug while handling a message never leaves a caller waiting: the loop
catches it and answers every waiter (``InternalError``). Once shut down (its
child dead, every waiter answered) the owner's loop ends, answering whatever
is still in its mailbox, and later asks are refused at once (the ``done``
guard): a config reload leaves no owner greenlet behind.

Everything the owner needs from outside comes in ``ProcessServices``: the
launcher (``scheduler.launcher``), the health probe, the clock, where to
publish state changes and output lines, and the hook that drops idle
keep-alive connections to the upstream before it is asked to stop
(llama-server takes ~110 ms to exit on SIGTERM while one is open, 5 to 9 ms
with none).
"""

from __future__ import annotations

import collections
import logging
import signal
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import gevent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue

from scheduler.clock import Clock, Timer
from scheduler.errors import InternalError, RouteError, ShuttingDown, StartFailed
from scheduler.events import ModelStateChanged, Publish, publish_nothing
from scheduler.health import HEALTH_FIRST_INTERVAL, READY_HINT, HealthProbe, next_health_interval
from scheduler.launcher import Child, Launcher
from scheduler.ports import AssignedPorts, Ports
from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.process")

LAST_LINES_KEPT = 20
PUMP_DRAIN_S = 0.5  # after an exit, how long the last output lines may take to arrive


@dataclass(frozen=True)
class PortTemplate:
    """The parts of a spec that name its port, with the literal ``${PORT}`` where the number goes."""

    argv: tuple[str, ...]
    stop_argv: tuple[str, ...]
    proxy_url: str
    check_url: str | None = None


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
    port: int | None = None  # the assigned ${PORT}, already in argv and the URLs
    port_template: PortTemplate | None = None  # set when port is

    def runs_as(self, other: "ProcessSpec") -> bool:
        """Whether ``other`` runs the same upstream: equal, or equal but for the port each was assigned
        from one ``${PORT}`` template (a reload that adds a model earlier shifts every later one's)."""
        if self.port_template is None or other.port_template is None:
            return self == other
        return self._unported() == other._unported()

    def _unported(self) -> "ProcessSpec":
        """This spec without its assigned port (its template says where the port goes)."""
        return replace(self, port=None, argv=(), stop_argv=(), proxy_url="", check_url=None)

    def at_port(self, port: int) -> "ProcessSpec":
        """This spec with ``port`` in place of the assigned one."""
        template = self.port_template
        if template is None or port == self.port:
            return self

        def put(text: str) -> str:
            return text.replace("${PORT}", str(port))

        return replace(self, port=port, argv=tuple(map(put, template.argv)),
                       stop_argv=tuple(map(put, template.stop_argv)), proxy_url=put(template.proxy_url),
                       check_url=None if template.check_url is None else put(template.check_url))


def _no_output(model: str, line: str) -> None:
    pass


def _keep_connections(proxy_url: str) -> None:
    pass


@dataclass(frozen=True)
class ProcessServices:
    """The owner's whole window onto the world."""

    launcher: Launcher
    probe: HealthProbe
    clock: Clock
    publish: Publish = publish_nothing
    on_output: Callable[[str, str], None] = _no_output  # (model, line) for each line the child prints
    # (the child's proxy URL) before it is signalled
    release_connections: Callable[[str], None] = _keep_connections
    ports: Ports = field(default_factory=AssignedPorts)  # which port each start uses


class UpstreamProcess:
    """Owns one upstream's child process, its state, health checks and TTL."""

    def __init__(self, spec: ProcessSpec, services: ProcessServices):
        self._assigned = spec
        self.spec = spec  # as the newest child runs it: its port may differ from the assigned one
        self._services = services
        self._clock = services.clock
        self._mailbox: Queue = Queue()
        self._state = ProcessState.STOPPED
        self._generation = 0
        self._child: Child | None = None
        self._started_at: float | None = None
        self._ready_at: float | None = None
        self._stop_began = 0.0
        self._health: gevent.Greenlet | None = None  # polls checkEndpoint while starting
        self._poll_now = Event()  # set by an output line that says the upstream is ready
        self._ttl_timer: Timer | None = None
        self._overdue_timer: Timer | None = None  # forces a stop after unloadTimeout
        self._ready_waiters: list[AsyncResult] = []
        self._stop_waiters: list[AsyncResult] = []
        self._shutdown_after_stop = False
        self._last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES_KEPT)
        self._busy = False
        self._idle_since = self._clock.now()
        self._done = False  # the loop has ended (shut down): asks are refused at once
        self._owner = gevent.spawn(self._run)

    # ------------------------------------------------------------------ asking
    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def assigned_spec(self) -> ProcessSpec:
        """The spec it was built with; a reload compares it to tell an unchanged model."""
        return self._assigned

    @property
    def state(self) -> ProcessState:
        """Advisory snapshot: fine for reports and eviction choices, never to gate a start or stop."""
        return self._state

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._state != ProcessState.STOPPED else None

    @property
    def last_start(self) -> tuple[float, float | None] | None:
        """(began, ready or None while starting) of the newest child, on the owner's clock; advisory."""
        return None if self._started_at is None else (self._started_at, self._ready_at)

    def ensure_ready(self) -> None:
        """Block until the upstream is ready, starting it (or waiting out a stop) as needed."""
        self._ask("ensure_ready")

    def stop(self) -> None:
        """Block until the upstream is stopped (graceful, then forced after ``unload_timeout``)."""
        self._ask("stop")

    def shutdown(self) -> None:
        """Stop for good: later ``ensure_ready`` calls fail at once."""
        self._ask("shutdown")

    def set_busy(self, busy: bool) -> None:
        """The scheduler's word that requests are in flight (TTL never unloads a busy upstream).

        Called synchronously by the router as the count turns: under gevent
        this cannot interleave with the owner's TTL decision, so a granted
        request is always seen before the owner can look.
        """
        self._busy = busy
        if not busy:
            self._idle_since = self._clock.now()
            if self.spec.ttl > 0 and not self._done:
                self._mailbox.put(("idle",))

    def _ask(self, verb: str) -> None:
        if self._done:
            refusal = self._answer_when_done(verb)
            if refusal is not None:
                raise refusal
            return  # stopped for good already
        reply = AsyncResult()
        self._mailbox.put((verb, reply))
        reply.get()  # raises the RouteError the owner set

    # ------------------------------------------------------------------ owner loop
    def _run(self) -> None:
        while True:
            message = self._mailbox.get()
            try:
                getattr(self, "_on_" + message[0])(*message[1:])
            except Exception as exc:  # the owner must never die, nor leave anyone waiting
                log.exception("%s: error handling %s", self.model_id, message[0])
                self._answer_everyone(message, InternalError(
                    f"model {self.model_id}: internal error while handling {message[0]}: {exc!r}"))
            if self._state is ProcessState.SHUTDOWN and not self._stop_waiters:
                self._end()
                return

    def _end(self) -> None:
        """Shut down for good: refuse later asks at once, answer what is still in the mailbox."""
        self._done = True
        self._cancel_timers()
        self._fail_ready_waiters(ShuttingDown(f"model {self.model_id} is shut down"))
        while not self._mailbox.empty():
            message = self._mailbox.get()
            for reply in message[1:]:
                if isinstance(reply, AsyncResult) and not reply.ready():
                    refusal = self._answer_when_done(message[0])
                    if refusal is None:
                        reply.set(None)
                    else:
                        reply.set_exception(refusal)

    def _answer_when_done(self, verb: str) -> RouteError | None:
        """Once shut down: a start is refused; a stop or shutdown is already done."""
        return ShuttingDown(f"model {self.model_id} is shut down") if verb == "ensure_ready" else None

    def _answer_everyone(self, message: tuple, error: RouteError) -> None:
        replies = [m for m in message[1:] if isinstance(m, AsyncResult)]
        replies += self._ready_waiters + self._stop_waiters
        self._ready_waiters, self._stop_waiters = [], []
        for reply in replies:
            if not reply.ready():
                reply.set_exception(error)

    def _become(self, state: ProcessState) -> None:
        """The one place the state changes; every change is published."""
        previous, self._state = self._state, state
        if previous is not state:
            pid = self._child.pid if self._child is not None else None
            self._services.publish(ModelStateChanged(self.model_id, previous, state, pid, self._clock.now()))

    def _on_idle(self) -> None:
        self._arm_ttl()

    def _on_ttl(self, timer: Timer) -> None:
        if timer is not self._ttl_timer or self._state != ProcessState.READY or self._busy:
            return
        left = self._idle_since + self.spec.ttl - self._clock.now()
        if left > 0:
            self._arm_ttl()  # it was busy meanwhile: count from its last turn to idle
            return
        log.info("%s: unloading after %gs idle (ttl)", self.model_id, self.spec.ttl)
        self._begin_stop()

    def _on_ensure_ready(self, reply: AsyncResult) -> None:
        state = self._state
        if self._shutdown_after_stop:
            reply.set_exception(ShuttingDown(f"model {self.model_id} is shutting down"))
        elif state == ProcessState.READY:
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
            self._become(ProcessState.SHUTDOWN)
            reply.set(None)
            return
        self._stop_waiters.append(reply)
        if self._state != ProcessState.STOPPING:
            self._begin_stop()

    def _on_healthy(self, generation: int) -> None:
        if generation != self._generation or self._state != ProcessState.STARTING:
            return
        self._health = None
        now = self._clock.now()
        self._ready_at = self._idle_since = now
        self._become(ProcessState.READY)
        log.info("%s: ready, pid %d, in %.2fs", self.model_id, self._child.pid, now - self._started_at)
        waiters, self._ready_waiters = self._ready_waiters, []
        for reply in waiters:
            reply.set(None)
        self._arm_ttl()

    def _on_unhealthy(self, generation: int, reason: str) -> None:
        if generation != self._generation or self._state != ProcessState.STARTING:
            return
        self._health = None
        log.warning("%s: %s; stopping pid %d", self.model_id, reason, self._child.pid)
        self._fail_ready_waiters(StartFailed(f"model {self.model_id}: {reason}{self._tail()}"))
        self._begin_stop()

    def _on_stop_overdue(self, generation: int) -> None:
        if generation != self._generation or self._state != ProcessState.STOPPING:
            return
        log.warning("%s: pid %d still running %gs after stop request; sending SIGKILL",
                    self.model_id, self._child.pid, self.spec.unload_timeout)
        self._child.signal_group(signal.SIGKILL)

    def _on_exited(self, generation: int, returncode: int) -> None:
        if generation != self._generation:
            return
        previous, child = self._state, self._child
        self._cancel_health()
        self._cancel_timers()
        self._services.ports.release(self.model_id)
        self._become(ProcessState.SHUTDOWN if self._shutdown_after_stop else ProcessState.STOPPED)
        if previous == ProcessState.STARTING:
            log.warning("%s: pid %d exited with code %s while starting", self.model_id, child.pid, returncode)
            self._fail_ready_waiters(StartFailed(
                f"upstream command exited prematurely with code {returncode} "
                f"while starting model {self.model_id}{self._tail()}"))
        elif previous == ProcessState.READY:
            log.warning("%s: pid %d exited unexpectedly with code %s", self.model_id, child.pid, returncode)
        else:
            log.info("%s: stopped pid %d in %.2fs (exit code %s)",
                     self.model_id, child.pid, self._clock.now() - self._stop_began, returncode)
        waiters, self._stop_waiters = self._stop_waiters, []
        for reply in waiters:
            reply.set(None)
        if self._ready_waiters and self._state == ProcessState.STOPPED:
            self._spawn()  # someone asked for it while it was stopping

    # ------------------------------------------------------------------ the child
    def _spawn(self) -> None:
        spec = self.spec
        if not spec.argv:  # nothing to start: a model with a proxy but no cmd (Go fails it alike)
            log.error("%s: cannot start: it has no cmd", self.model_id)
            self._fail_ready_waiters(StartFailed(
                f"unable to get sanitized command: empty command (model {self.model_id} has no "
                "cmd to start; a server that runs elsewhere belongs under peers:)"))
            return
        self._generation += 1
        self._last_lines.clear()
        try:
            spec = self.spec = self._on_free_port()
            child = self._services.launcher.launch(spec.argv, spec.env, spec.cwd)
        except Exception as exc:  # OSError, or ValueError for a NUL byte in argv: the caller must hear
            self._services.ports.release(self.model_id)
            log.error("%s: cannot start %r: %s", self.model_id, spec.argv[0], exc)
            self._fail_ready_waiters(StartFailed(f"cannot start model {self.model_id}: {exc}"))
            return
        self._child = child
        self._started_at, self._ready_at = self._clock.now(), None
        self._become(ProcessState.STARTING)
        log.info("%s: starting pid %d: %s", self.model_id, child.pid, " ".join(spec.argv))
        generation = self._generation
        pump = gevent.spawn(self._pump_output, child)  # reads the child's output until EOF
        gevent.spawn(self._watch_exit, generation, child, pump)
        if spec.check_url is None:
            self._mailbox.put(("healthy", generation))
        else:
            self._health = gevent.spawn(self._poll_health, generation, spec.check_url, self._started_at)

    def _on_free_port(self) -> ProcessSpec:
        """The assigned spec, moved to the next free port if another program listens on its own."""
        assigned = self._assigned
        if assigned.port is None:
            return assigned
        port = self._services.ports.pick(self.model_id, assigned.port)
        if port != assigned.port:
            log.warning("%s: port %d is already in use by another program; using port %d instead",
                        self.model_id, assigned.port, port)
        return assigned.at_port(port)

    def _pump_output(self, child: Child) -> None:
        for line in child.lines():
            self._last_lines.append(line)
            self._services.on_output(self.model_id, line)
            if self._health is not None and READY_HINT.search(line):
                self._poll_now.set()  # the health poller checks at once

    def _watch_exit(self, generation: int, child: Child, pump: gevent.Greenlet) -> None:
        returncode = child.wait()
        child.signal_group(signal.SIGKILL)  # anything the child left in its group
        pump.join(timeout=PUMP_DRAIN_S)  # let the last lines in before the owner quotes them
        self._mailbox.put(("exited", generation, returncode))

    def _poll_health(self, generation: int, url: str, started_at: float) -> None:
        deadline = started_at + self.spec.health_timeout
        interval = HEALTH_FIRST_INTERVAL
        poll_now = self._poll_now
        poll_now.clear()
        check = self._services.probe.open(url)
        try:
            while True:
                now = self._clock.now()
                if now >= deadline:
                    self._mailbox.put(("unhealthy", generation,
                                       f"health check timed out after {self.spec.health_timeout:g}s"))
                    return
                if check.check(timeout=min(5.0, deadline - now)):
                    self._mailbox.put(("healthy", generation))
                    return
                interval = next_health_interval(now - started_at, interval)
                if self._clock.wait(poll_now, interval):
                    poll_now.clear()
        finally:
            check.close()

    def _begin_stop(self) -> None:
        self._stop_began = self._clock.now()
        self._become(ProcessState.STOPPING)
        self._cancel_health()
        self._cancel_timers()
        generation = self._generation
        self._overdue_timer = self._clock.call_later(
            self.spec.unload_timeout, lambda: self._mailbox.put(("stop_overdue", generation)))
        gevent.spawn(self._ask_to_stop, self._child, self._stop_began + self.spec.unload_timeout)

    def _ask_to_stop(self, child: Child, deadline: float) -> None:
        """Drop idle connections to it, then cmdStop (or SIGTERM to its group); the exit is watched elsewhere."""
        try:
            self._services.release_connections(self.spec.proxy_url)
        except Exception:  # never let a pool's trouble keep a model running
            log.exception("%s: could not close idle connections before stopping", self.model_id)
        if not self.spec.stop_argv:
            child.signal_group(signal.SIGTERM)
            return
        argv = [arg.replace("${PID}", str(child.pid)) for arg in self.spec.stop_argv]
        log.info("%s: running cmdStop for pid %d: %s", self.model_id, child.pid, " ".join(argv))
        # One bound for the whole stop: cmdStop gets what is left of
        # unloadTimeout, and is killed when the child is (never outlives it).
        try:
            self._services.launcher.run(argv, deadline - self._clock.now())
        except Exception as exc:
            if self._clock.now() >= deadline:
                log.warning("%s: cmdStop did not finish within unloadTimeout (%gs): %s",
                            self.model_id, self.spec.unload_timeout, exc)
                return  # the child has had its SIGKILL
            log.warning("%s: cmdStop failed: %s; sending SIGTERM", self.model_id, exc)
            child.signal_group(signal.SIGTERM)

    def _arm_ttl(self) -> None:
        if self.spec.ttl <= 0 or self._state != ProcessState.READY or self._busy:
            return
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
        left = max(0.0, self._idle_since + self.spec.ttl - self._clock.now())
        timer: list[Timer] = []
        timer.append(self._clock.call_later(left, lambda: self._mailbox.put(("ttl", timer[0]))))
        self._ttl_timer = timer[0]

    def _cancel_timers(self) -> None:
        for timer in (self._ttl_timer, self._overdue_timer):
            if timer is not None:
                timer.cancel()
        self._ttl_timer = self._overdue_timer = None

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
