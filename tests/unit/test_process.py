"""One upstream's owner, driven with a fake child, a fake health probe and a fake clock.

No process is started (but for the NUL-byte case, which the real launcher
refuses before forking), no socket opened, no real time waited: health
polls, the unload timeout and the TTL happen when the test advances the
clock. Callers' blocking asks (``ensure_ready``, ``stop``) run in greenlets
the test waits on with ``wait_until``.
"""

from __future__ import annotations

import signal

import gevent
from gevent.event import Event
import pytest

from scheduler.errors import InternalError, RouteError, ShuttingDown, StartFailed
from scheduler.events import ModelStateChanged
from scheduler.launcher import PosixLauncher
from scheduler.ports import LocalPorts
from scheduler.process import PortTemplate, ProcessServices, ProcessSpec, UpstreamProcess
from scheduler.state import ProcessState as S
from tests.helpers.fakes import FakeClock, FakeLauncher, FakeProbe, settle, wait_until

CHECK = "http://127.0.0.1:5800/health"


class Harness:
    def __init__(self, ttl: float = 0.0, unload_timeout: float = 5.0, health_timeout: float = 30.0,
                 stop_argv: tuple[str, ...] = (), check_url: str | None = CHECK, launcher=None,
                 publish=None, argv: tuple[str, ...] = ("llama-server", "--port", "5800"), port=None,
                 port_template=None, ports=None) -> None:
        self.clock = FakeClock()
        self.launcher = launcher or FakeLauncher()
        self.probe = FakeProbe(self.clock)
        self.events: list[ModelStateChanged] = []
        self.output: list[str] = []
        self.released: list[tuple[str, list[int]]] = []  # (proxy URL, signals the child had seen by then)
        spec = ProcessSpec("m", argv, "http://127.0.0.1:5800", check_url=check_url,
                           stop_argv=stop_argv, ttl=ttl, unload_timeout=unload_timeout,
                           health_timeout=health_timeout, port=port, port_template=port_template)
        services = ProcessServices(
            launcher=self.launcher, probe=self.probe, clock=self.clock,
            publish=publish or self.events.append,
            on_output=lambda model, line: self.output.append(line),
            release_connections=lambda url: self.released.append((url, list(self.child.signals))),
            **({} if ports is None else {"ports": ports}))
        self.process = UpstreamProcess(spec, services)

    @property
    def child(self):
        return self.launcher.child

    def states(self) -> list[S]:
        return [e.state for e in self.events]

    def start(self) -> gevent.Greenlet:
        asking = gevent.spawn(self.process.ensure_ready)
        wait_until(lambda: self.launcher.children, "a child to be launched")
        return asking

    def become_ready(self) -> None:
        asking = self.start()
        self.probe.healthy.add(CHECK)
        self.clock.advance(0.01)
        wait_until(asking.ready, "ensure_ready to return")
        asking.get()

    def stop(self) -> gevent.Greenlet:
        return gevent.spawn(self.process.stop)


def outcome(job: gevent.Greenlet):
    wait_until(job.ready, "the ask to be answered")
    return job.exception if job.exception is not None else job.value


# --------------------------------------------------------------------------- starting


def test_start_polls_health_until_it_answers_and_publishes_each_state():
    h = Harness()
    asking = h.start()
    h.clock.advance(0.25)
    assert not asking.ready()
    h.probe.healthy.add(CHECK)
    h.clock.advance(0.01)
    assert outcome(asking) is None
    assert h.process.state is S.READY
    assert h.states() == [S.STARTING, S.READY]
    assert h.events[-1].pid == h.child.pid
    began, ready = h.process.last_start
    assert ready - began == pytest.approx(0.26, abs=0.011)
    assert h.probe.open_checks == 0, "the health check's connection is closed once healthy"


def test_health_is_polled_every_10_ms_for_a_second_then_every_20_ms():
    h = Harness()
    h.start()
    h.clock.advance(3.0)
    polls = h.probe.checks
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    started = polls[0]
    early = [g for t, g in zip(polls[1:], gaps) if t - started <= 1.0]
    late = [g for t, g in zip(polls[1:], gaps) if t - started > 1.2]
    assert polls[0] == pytest.approx(h.process.last_start[0]), "the first poll is right after spawn"
    assert max(early) == pytest.approx(0.010)
    assert late and max(late) == pytest.approx(0.020), "a model loading for long is still seen within 20 ms"


def test_a_model_that_never_gets_healthy_fails_its_waiters_and_is_stopped():
    h = Harness(health_timeout=2.0)
    asking = h.start()
    h.child.print("llama_model_load: error loading model")
    h.clock.advance(1.99)
    assert not asking.ready()
    h.clock.advance(0.03)  # the first poll past the deadline
    error = outcome(asking)
    assert isinstance(error, StartFailed) and "timed out after 2s" in error.message
    assert "error loading model" in error.message, "the last output lines are quoted"
    assert signal.SIGTERM in h.child.signals
    wait_until(lambda: h.process.state is S.STOPPED, "the stop to finish")


def test_a_child_that_exits_while_starting_fails_its_waiters_with_its_exit_code_and_output():
    h = Harness()
    asking = h.start()
    h.child.print("error: unknown argument: --bogus")
    h.child.exit(1)
    error = outcome(asking)
    assert isinstance(error, StartFailed)
    assert "exited prematurely with code 1" in error.message and "--bogus" in error.message
    assert h.states() == [S.STARTING, S.STOPPED]
    assert h.output == ["error: unknown argument: --bogus"]


def test_a_nul_byte_in_the_command_fails_the_start_instead_of_hanging_it():
    # Popen raises ValueError("embedded null byte") before forking: a real launcher, no child.
    h = Harness(launcher=PosixLauncher(), argv=("llama-server", "--alias", "a\0b"))
    asking = gevent.spawn(h.process.ensure_ready)
    error = outcome(asking)
    assert isinstance(error, StartFailed) and "null byte" in error.message
    assert h.process.state is S.STOPPED
    assert h.states() == []


def test_a_spec_without_a_command_fails_its_start_with_gos_message_and_launches_nothing():
    h = Harness(argv=())
    asking = gevent.spawn(h.process.ensure_ready)
    error = outcome(asking)
    assert isinstance(error, StartFailed)
    assert error.message.startswith("unable to get sanitized command: empty command (model m has no cmd")
    assert h.launcher.children == [] and h.states() == []
    assert h.process.state is S.STOPPED


def test_a_model_with_no_check_endpoint_is_ready_once_spawned():
    h = Harness(check_url=None)
    assert outcome(h.start()) is None
    assert h.probe.checks == []


# --------------------------------------------------------------------------- stopping


def test_stop_drops_idle_connections_before_it_signals_the_group():
    h = Harness()
    h.become_ready()
    stopping = h.stop()
    assert outcome(stopping) is None
    assert h.released == [("http://127.0.0.1:5800", [])], "connections dropped before any signal reached the child"
    assert h.child.signals[0] == signal.SIGTERM
    assert h.states() == [S.STARTING, S.READY, S.STOPPING, S.STOPPED]


def test_a_child_ignoring_sigterm_is_killed_after_unload_timeout():
    h = Harness(unload_timeout=5.0)
    h.launcher.ignores_sigterm = True
    h.become_ready()
    stopping = h.stop()
    h.clock.advance(4.9)
    assert not stopping.ready() and h.process.state is S.STOPPING
    h.clock.advance(0.1)
    assert outcome(stopping) is None
    assert h.child.signals == [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]  # the last: the group's leftovers


def test_cmd_stop_runs_with_the_pid_in_place_of_the_macro():
    h = Harness(stop_argv=("docker", "stop", "--pid", "${PID}"))
    h.become_ready()
    h.launcher.on_run = lambda argv: h.child.exit(0)
    assert outcome(h.stop()) is None
    assert h.launcher.ran == [["docker", "stop", "--pid", str(h.child.pid)]]
    assert signal.SIGTERM not in h.child.signals


def test_a_hung_cmd_stop_shares_the_one_unload_timeout_and_is_not_followed_by_sigterm():
    # The whole stop, cmdStop included, is bounded by unloadTimeout once: the
    # child is SIGKILLed at 5 s, cmdStop was given those same 5 s, and its
    # overrun does not send a late SIGTERM after the SIGKILL.
    h = Harness(unload_timeout=5.0, stop_argv=("stop-it", "${PID}"))
    h.launcher.ignores_sigterm = True
    h.become_ready()
    overran = Event()

    def hang(argv):
        overran.wait()
        raise TimeoutError("cmdStop overran")

    h.launcher.on_run = hang
    stopping = h.stop()
    h.clock.advance(4.9)
    assert not stopping.ready() and h.launcher.run_timeouts == [5.0]
    h.clock.advance(0.1)
    assert outcome(stopping) is None
    overran.set()
    settle()
    assert h.child.signals == [signal.SIGKILL, signal.SIGKILL]


def test_a_stop_while_starting_fails_the_start():
    h = Harness()
    asking = h.start()
    stopping = h.stop()
    assert isinstance(outcome(asking), StartFailed)
    assert outcome(stopping) is None


def test_a_request_during_a_stop_waits_for_it_then_gets_a_fresh_child():
    h = Harness(unload_timeout=5.0)
    h.launcher.ignores_sigterm = True
    h.become_ready()
    first = h.child
    stopping = h.stop()
    asking = gevent.spawn(h.process.ensure_ready)
    settle()
    assert not asking.ready() and len(h.launcher.children) == 1
    h.clock.advance(5.0)  # SIGKILL: the old child dies
    assert outcome(stopping) is None
    wait_until(lambda: len(h.launcher.children) == 2, "a fresh child")
    h.probe.healthy.add(CHECK)
    h.clock.advance(0.01)
    assert outcome(asking) is None
    assert first.returncode == -signal.SIGKILL and h.child is not first


def test_an_unexpected_exit_when_ready_is_reported_and_the_next_ask_starts_again():
    h = Harness()
    h.become_ready()
    h.child.exit(139)
    wait_until(lambda: h.process.state is S.STOPPED, "the exit to be noticed")
    asking = h.start()
    wait_until(lambda: len(h.launcher.children) == 2, "a restart")
    h.clock.advance(0.01)
    assert outcome(asking) is None


def test_shutdown_stops_the_child_and_refuses_later_starts():
    h = Harness()
    h.become_ready()
    assert outcome(gevent.spawn(h.process.shutdown)) is None
    assert h.process.state is S.SHUTDOWN
    error = outcome(gevent.spawn(h.process.ensure_ready))
    assert isinstance(error, ShuttingDown)


# --------------------------------------------------------------------------- TTL


def test_ttl_unloads_an_idle_model_after_ttl_seconds():
    h = Harness(ttl=60.0)
    h.become_ready()
    h.clock.advance(59.9)
    assert h.process.state is S.READY
    h.clock.advance(0.1)
    wait_until(lambda: h.process.state is S.STOPPED, "the TTL unload")


def test_ttl_never_unloads_a_busy_model_and_counts_from_its_last_request():
    h = Harness(ttl=60.0)
    h.become_ready()
    h.process.set_busy(True)
    h.clock.advance(120.0)
    assert h.process.state is S.READY, "busy for two TTLs and still loaded"
    h.process.set_busy(False)
    h.clock.advance(59.0)
    assert h.process.state is S.READY
    h.clock.advance(1.0)
    wait_until(lambda: h.process.state is S.STOPPED, "the TTL unload, 60 s after it went idle")


# --------------------------------------------------------------------------- faults


def test_a_bug_while_handling_a_message_answers_every_waiter():
    def publish(event):
        if event.state is S.READY:
            raise RuntimeError("a broken subscriber")

    h = Harness(publish=publish)
    first, second = h.start(), gevent.spawn(h.process.ensure_ready)
    settle()  # both asks are waiting for the start
    h.probe.healthy.add(CHECK)
    h.clock.advance(0.01)
    for asking in (first, second):
        error = outcome(asking)
        assert isinstance(error, InternalError) and "broken subscriber" in error.message
    # The owner lives on: a stop still works.
    assert outcome(h.stop()) is None


def test_a_shut_down_owner_ends_its_loop_and_answers_later_asks_at_once():
    h = Harness()
    h.become_ready()
    assert outcome(gevent.spawn(h.process.shutdown)) is None
    wait_until(lambda: h.process._owner.dead, "the owner greenlet to end (nothing left behind on a reload)")
    assert isinstance(outcome(gevent.spawn(h.process.ensure_ready)), ShuttingDown)
    assert outcome(h.stop()) is None and outcome(gevent.spawn(h.process.shutdown)) is None
    h.process.set_busy(False)  # a late serve_done of a request cut off by the shutdown: harmless


def test_an_ask_to_start_while_shutting_down_is_refused_not_left_waiting():
    h = Harness(unload_timeout=5.0)
    h.launcher.ignores_sigterm = True
    h.become_ready()
    shutting = gevent.spawn(h.process.shutdown)
    wait_until(lambda: h.process.state is S.STOPPING, "the shutdown's stop to begin")
    late = gevent.spawn(h.process.ensure_ready)
    assert isinstance(outcome(late), ShuttingDown)
    h.clock.advance(5.0)
    assert outcome(shutting) is None and h.process.state is S.SHUTDOWN


def test_ttl_counts_again_from_the_restart_after_a_crash():
    h = Harness(ttl=60.0)
    h.become_ready()
    h.clock.advance(50.0)
    h.child.exit(139)  # crashed 50 s into its TTL
    wait_until(lambda: h.process.state is S.STOPPED, "the crash to be noticed")
    asking = h.start()
    wait_until(lambda: len(h.launcher.children) == 2, "a restart")
    h.clock.advance(0.01)
    assert outcome(asking) is None
    h.clock.advance(59.0)
    assert h.process.state is S.READY, "the old TTL timer must not unload the new child"
    h.clock.advance(1.0)
    wait_until(lambda: h.process.state is S.STOPPED, "the TTL unload, 60 s after the restart")


def test_an_output_line_saying_the_model_is_loaded_makes_the_health_check_happen_at_once():
    h = Harness()
    asking = h.start()
    h.clock.advance(5.0)  # polled every 20 ms by now
    checks = len(h.probe.checks)
    h.probe.healthy.add(CHECK)
    h.child.print("main: model loaded")  # llama-server's line, a few ms before the next poll
    wait_until(asking.ready, "the start to finish without the clock moving")
    assert outcome(asking) is None and len(h.probe.checks) == checks + 1


# --------------------------------------------------------------------------- ports


def test_a_start_whose_port_is_taken_runs_on_the_next_free_one_and_its_urls_follow():
    template = PortTemplate(("llama-server", "--port", "${PORT}"), ("stop", "${PORT}", "${PID}"),
                            "http://127.0.0.1:${PORT}", "http://127.0.0.1:${PORT}/health")
    ports = LocalPorts([5800], is_free=lambda port: port != 5800)
    h = Harness(port=5800, port_template=template, ports=ports, stop_argv=("stop", "5800", "${PID}"))
    asking = h.start()
    assert h.child.argv == ["llama-server", "--port", "5801"]
    assert h.process.spec.proxy_url == "http://127.0.0.1:5801"
    h.probe.healthy.add("http://127.0.0.1:5801/health")
    h.clock.advance(0.01)
    assert outcome(asking) is None
    h.launcher.on_run = lambda argv: h.child.exit(0)
    assert outcome(h.stop()) is None
    assert h.launcher.ran == [["stop", "5801", str(h.child.pid)]]
    assert ports.pick("other", 5801) == 5801  # released with its child
