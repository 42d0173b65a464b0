"""The router loop, driven with fake processes and a fake clock: no sockets, no sleeps.

Each test builds a ``Router`` over ``FakeProcess``es whose starts and stops
complete when the test says, and waits on what a caller would see (a ticket
answered, an unload returned) with ``wait_until``, which yields to the loop
and fails after a real-time deadline: a router that hangs fails the test
instead of stalling the suite. ``on_processed`` counts the events the loop
has handled, for the tests that must show something did *not* happen.
"""

from __future__ import annotations

import gevent
import pytest

from scheduler.errors import InternalError, ModelNotFound, RouteError, ShuttingDown, StartFailed, Unloaded
from scheduler.events import SwapBegan, SwapEnded
from scheduler.fifo import Occupancy
from scheduler.process import PortTemplate, ProcessSpec
from scheduler.router import Router, Ticket
from scheduler.state import ProcessState
from scheduler.swappers import Group, GroupSwapper
from tests.helpers.fakes import FakeClock, FakeProcess, settle, wait_until

READY = ProcessState.READY


class Harness:
    def __init__(self, models: str = "AB", groups=(), swapper=None, **kwargs) -> None:
        self.clock = FakeClock()
        self.processes = {m: FakeProcess(m, self.clock) for m in models}
        self.events: list[object] = []
        self.handled: list[str] = []
        self.swapper = swapper or GroupSwapper(list(groups), list(models))
        self.router = Router(self.processes, self.swapper, clock=self.clock, publish=self.events.append,
                             on_processed=self.handled.append, **kwargs)

    def ready(self, *models: str) -> None:
        for m in models:
            self.processes[m].state = READY

    def ask(self, model: str) -> Ticket:
        return self.router.submit(model)

    def answer(self, ticket: Ticket):
        """What the caller gets: the lease, or the RouteError it raises."""
        wait_until(lambda: ticket._reply.ready(), f"an answer for {ticket.model}")
        try:
            return ticket.wait(0)
        except RouteError as exc:
            return exc

    def close(self) -> None:
        for process in self.processes.values():
            process.finish_start()
            process.finish_stop()
        self.router.shutdown()


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def exclusive(*members: str) -> Group:
    return Group("g", members, swap=True, exclusive=True, persistent=False)


def side_by_side(*members: str) -> Group:
    """Members run together and nothing outside the group stops them."""
    return Group("pair", members, swap=False, exclusive=True, persistent=True)


# --------------------------------------------------------------------------- serving


def test_a_ready_model_is_granted_at_once_with_no_queue_or_load_time(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    assert lease.model == "A" and lease.proxy_url == h.processes["A"].spec.proxy_url
    assert lease.queued == 0.0 and lease.loading == 0.0
    assert h.processes["A"].busy, "the process hears the model turned busy"
    lease.release()
    wait_until(lambda: not h.processes["A"].busy, "A turning idle")


def test_a_ready_models_grant_and_release_are_handled_without_a_trip_to_the_loop(h: Harness):
    # The loop waits on an empty mailbox: submit handles the request itself, so the view
    # sends upstream at once (no two switches through the hub, ~0.1 ms before the first byte).
    h.ready("A")
    settle()
    ticket = h.ask("A")
    assert ticket._reply.ready(), "granted before submit returned"
    assert h.handled == ["request"], "handled once, as the loop would have"
    ticket.wait(0).release()
    assert not h.processes["A"].busy and h.handled == ["request", "serve_done"], "the release counted at once"


def test_a_request_behind_events_in_the_mailbox_waits_its_turn_on_the_loop(h: Harness):
    h.ready("A")
    settle()
    h.router._post(("tick",))  # something already waiting for the loop
    ticket = h.ask("A")
    assert not ticket._reply.ready(), "order kept: the loop handles the tick first"
    assert h.answer(ticket).model == "A"
    assert h.handled == ["tick", "request"]


def test_a_cold_model_is_started_and_the_lease_says_how_long_it_loaded(h: Harness):
    h.processes["A"].hold_starts = True
    ticket = h.ask("A")
    wait_until(lambda: h.processes["A"].calls == ["ensure_ready"], "the swap to start A")
    h.clock.advance(2.5)
    h.processes["A"].finish_start()
    lease = h.answer(ticket)
    assert lease.queued == pytest.approx(2.5) and lease.loading == pytest.approx(2.5)
    began, ended = (e for e in h.events if isinstance(e, (SwapBegan, SwapEnded)))
    assert (began.model, began.evict) == ("A", frozenset())
    assert (ended.swap_id, ended.error, ended.seconds) == (began.swap_id, None, pytest.approx(2.5))
    lease.release()


def test_a_swap_names_the_request_it_was_started_for(h: Harness):
    first = h.router.submit("A", lambda: {"by": "request", "id": "7"})
    lease = h.answer(first)
    lease.release()
    h.router.submit("B", lambda: {"by": "request", "id": "8"})  # B must evict A: a swap, caused by 8
    wait_until(lambda: sum(isinstance(e, SwapBegan) for e in h.events) == 2, "the second swap")
    causes = [(e.model, e.evict, e.cause) for e in h.events if isinstance(e, SwapBegan)]
    assert causes == [("A", frozenset(), {"by": "request", "id": "7"}),
                      ("B", frozenset({"A"}), {"by": "request", "id": "8"})]


def test_a_failed_start_fails_every_waiter_with_the_reason(h: Harness):
    h.processes["A"].start_error = StartFailed("upstream command exited prematurely with code 1")
    first, second = h.ask("A"), h.ask("A")
    for ticket in (first, second):
        error = h.answer(ticket)
        assert isinstance(error, StartFailed) and "exited prematurely" in error.message
    assert h.processes["A"].calls == ["ensure_ready"], "one start for both"


def test_a_client_that_leaves_while_queued_is_dropped_and_its_slot_freed(h: Harness):
    h.processes["A"].hold_starts = True
    ticket = h.ask("A")
    wait_until(lambda: "ensure_ready" in h.processes["A"].calls, "A starting")
    h.router.cancel(ticket)
    wait_until(lambda: "cancel" in h.handled, "the cancel to be handled")
    assert h.router.load("A") == 0
    h.processes["A"].finish_start()
    wait_until(lambda: h.router.load("A") == 0 and "swap_done" in h.handled, "the swap to end")
    assert not h.processes["A"].busy, "a grant nobody took is not counted"


# --------------------------------------------------------------------------- the four bugs


def test_a_late_result_of_an_unloaded_swap_does_not_fail_a_newer_swap_of_the_same_model():
    h = Harness("AX", groups=[exclusive("A", "X")])
    try:
        h.ready("A")
        h.processes["A"].hold_stops = True  # A is slow to stop: X's swap is stuck evicting it
        first = h.ask("X")
        wait_until(lambda: h.processes["A"].state is ProcessState.STOPPING, "the swap to stop A")
        unloading = gevent.spawn(h.router.unload, ["X"])
        assert isinstance(h.answer(first), Unloaded)
        wait_until(unloading.ready, "the unload of X (never started) to return")
        second = h.ask("X")  # X again, while the first swap is still stopping A
        wait_until(lambda: h.router.queue_position(second) == 1, "X to queue behind the dropped swap")
        h.processes["A"].finish_stop()  # the first swap finds X unloaded and reports so; then X's turn
        lease = h.answer(second)
        assert not isinstance(lease, RouteError), f"the second request failed: {lease}"
        assert lease.model == "X" and h.processes["X"].state is READY
        lease.release()
    finally:
        h.close()


def test_unload_after_shutdown_returns_at_once(h: Harness):
    h.ready("A")
    h.router.shutdown()
    outcome = gevent.with_timeout(2.0, h.router.unload, timeout_value="blocked")
    assert outcome == []
    assert isinstance(h.answer(h.ask("A")), ShuttingDown)


def test_an_unload_in_progress_at_shutdown_still_returns(h: Harness):
    h.ready("A")
    h.processes["A"].hold_stops = True
    unloading = gevent.spawn(h.router.unload, ["A"])
    wait_until(lambda: "stop" in h.processes["A"].calls, "A stopping")
    h.router.shutdown()  # shuts A down, which ends its stop
    assert wait_until(unloading.ready, "the unload to return") and unloading.value == ["A"]


class FaultySwapper(GroupSwapper):
    """Raises for ``broken`` targets: a bug in the swapper, anywhere the scheduler asks it."""

    def __init__(self, models: str, **kwargs) -> None:
        super().__init__([], list(models), **kwargs)
        self.broken: set[str] = set()

    def eviction_for(self, target, running):
        if target in self.broken:
            raise KeyError(f"a bug in the swapper for {target}")
        return super().eviction_for(target, running)


def test_a_bug_in_the_loop_answers_every_waiter_and_the_next_request_works():
    swapper = FaultySwapper("ABC")
    swapper.broken.add("B")
    h = Harness("ABC", swapper=swapper)
    try:
        h.ready("A")
        held = h.ask("A")
        lease = h.answer(held)
        queued = h.ask("C")  # waits for A (busy) to drain
        wait_until(lambda: h.router.queue_position(queued) == 1, "C to queue")
        faulty = h.ask("B")
        error = h.answer(faulty)
        assert isinstance(error, InternalError) and "KeyError" in error.message
        assert isinstance(h.answer(queued), InternalError), "a waiter the fault stranded was answered"
        swapper.broken.clear()
        lease.release()
        after = h.answer(h.ask("B"))
        assert not isinstance(after, RouteError) and after.model == "B"
        after.release()
    finally:
        h.close()


def test_a_bug_while_an_unload_finishes_still_answers_the_unload():
    swapper = FaultySwapper("AB")
    h = Harness("AB", swapper=swapper)
    try:
        h.ready("A")
        h.processes["A"].hold_stops = True
        unloading = gevent.spawn(h.router.unload, ["A"])
        wait_until(lambda: "stop" in h.processes["A"].calls, "A stopping")
        queued = h.ask("B")  # B would evict A: it waits for the stop
        wait_until(lambda: h.router.queue_position(queued) == 1, "B to queue behind the stop")
        swapper.broken.add("B")  # the re-walk after the stop will raise
        h.processes["A"].finish_stop()
        assert wait_until(unloading.ready, "the unload to return") and unloading.value == ["A"]
        assert isinstance(h.answer(queued), InternalError)
    finally:
        h.close()


def test_after_faults_the_scheduler_holds_no_phantom_waiters():
    swapper = FaultySwapper("AB")
    h = Harness("AB", swapper=swapper, limits={"B": 2})
    try:
        swapper.broken.add("B")
        for _ in range(3):  # more faults than B's concurrency limit
            assert isinstance(h.answer(h.ask("B")), InternalError)
        assert h.router.load("B") == 0
        swapper.broken.clear()
        lease = h.answer(h.ask("B"))
        assert not isinstance(lease, RouteError), f"B refused after faults: {lease}"
        lease.release()
    finally:
        h.close()


def test_unloading_a_model_slow_to_die_does_not_hold_up_requests_for_others():
    h = Harness("AB", groups=[side_by_side("A", "B")])
    try:
        h.ready("A", "B")
        h.processes["A"].hold_stops = True  # A ignores SIGTERM: its stop takes unloadTimeout
        unloading = gevent.spawn(h.router.unload, ["A"])
        wait_until(lambda: "stop" in h.processes["A"].calls, "A's stop to begin")
        lease = h.answer(h.ask("B"))
        assert not isinstance(lease, RouteError) and lease.model == "B"
        assert not unloading.ready(), "B was answered only once A had died"
        lease.release()
        h.processes["A"].finish_stop()
        assert wait_until(unloading.ready, "the unload to return") and unloading.value == ["A"]
    finally:
        h.close()


# --------------------------------------------------------------------------- unloads


def test_a_request_for_a_model_being_unloaded_waits_and_gets_a_fresh_start(h: Harness):
    h.ready("A")
    h.processes["A"].hold_stops = True
    unloading = gevent.spawn(h.router.unload, ["A"])
    wait_until(lambda: "stop" in h.processes["A"].calls, "A stopping")
    ticket = h.ask("A")
    wait_until(lambda: h.router.queue_position(ticket) == 1, "the request to queue behind the stop")
    h.processes["A"].finish_stop()
    lease = h.answer(ticket)
    assert lease.model == "A" and h.processes["A"].calls == ["stop", "ensure_ready"]
    assert unloading.value == ["A"]
    lease.release()


def test_unload_of_everything_covers_a_model_a_swap_is_starting(h: Harness):
    h.processes["A"].hold_starts = True
    ticket = h.ask("A")
    wait_until(lambda: "ensure_ready" in h.processes["A"].calls, "A starting")
    assert h.router.unload() == ["A"]
    assert isinstance(h.answer(ticket), Unloaded)


def test_unload_of_nothing_running_returns_an_empty_list(h: Harness):
    assert h.router.unload() == []
    assert h.router.unload(["no-such-model"]) == []


def test_occupancy_counts_each_models_requests_in_flight_queued_and_waiting_for_a_load(h: Harness):
    h.ready("A")
    busy = h.answer(h.ask("A"))
    queued = h.ask("B")
    wait_until(lambda: h.router.queue_position(queued) == 1, "B to queue behind busy A")
    assert h.router.occupancy() == {"A": Occupancy(in_flight=1, waiting=0, queued=0),
                                    "B": Occupancy(in_flight=0, waiting=1, queued=1)}
    h.processes["B"].hold_starts = True
    busy.release()
    wait_until(lambda: "ensure_ready" in h.processes["B"].calls, "B starting")
    assert h.router.occupancy() == {"B": Occupancy(in_flight=0, waiting=1, queued=0)}, "joined to B's swap"
    h.processes["B"].finish_start()
    lease = h.answer(queued)
    assert h.router.occupancy() == {"B": Occupancy(in_flight=1, waiting=0, queued=0)}
    lease.release()
    wait_until(lambda: h.router.occupancy() == {}, "B's request to be done")


# --------------------------------------------------------------------------- time


def test_max_wait_wakes_the_loop_when_a_queued_request_turns_overdue():
    h = Harness("AB", max_wait=2.0)
    try:
        h.ready("A")
        busy = h.answer(h.ask("A"))
        queued = h.ask("B")
        wait_until(lambda: h.router.queue_position(queued) == 1, "B to queue behind busy A")
        assert h.clock.pending() == [pytest.approx(h.clock.now() + 2.0)], "one wake-up at B's deadline"
        ticks = h.handled.count("tick")
        h.clock.advance(2.0)
        wait_until(lambda: h.handled.count("tick") == ticks + 1, "the tick")
        # B is overdue: a new request for A now queues behind it instead of being granted.
        late = h.ask("A")
        wait_until(lambda: h.router.queue_position(late) is not None, "the late A to queue")
        busy.release()
        lease = h.answer(queued)
        assert lease.model == "B"
        lease.release()
    finally:
        h.close()


def test_shutdown_fails_waiters_and_shuts_every_process_down(h: Harness):
    h.processes["A"].hold_starts = True
    ticket = h.ask("A")
    wait_until(lambda: "ensure_ready" in h.processes["A"].calls, "A starting")
    h.router.shutdown()
    assert isinstance(h.answer(ticket), ShuttingDown)
    assert all("shutdown" in p.calls for p in h.processes.values())
    settle()
    assert isinstance(h.answer(h.ask("B")), ShuttingDown)


# --------------------------------------------------------------------------- draining (a graceful stop)


def test_a_drain_refuses_new_requests_and_ends_when_those_already_in_are_done(h: Harness):
    h.ready("A")
    streaming = h.answer(h.ask("A"))
    queued = h.ask("B")
    wait_until(lambda: h.router.queue_position(queued) == 1, "B to queue behind busy A")
    drain = gevent.spawn(h.router.drain, 10.0)
    wait_until(lambda: "drain" in h.handled, "the drain to begin")
    assert isinstance(h.answer(h.ask("A")), ShuttingDown), "a new request after the drain began"
    assert not drain.ready()
    streaming.release()  # the request in flight ends; the queued one is served as usual
    lease = h.answer(queued)
    assert lease.model == "B"
    settle()
    assert not drain.ready(), "B's request is still in"
    lease.release()
    assert wait_until(lambda: drain.ready(), "the drain to end") and drain.value is True
    assert h.clock.pending() == [], "the drain's deadline is cancelled"


def test_a_drain_gives_up_at_its_deadline_and_shutdown_fails_what_is_left(h: Harness):
    h.ready("A")
    stuck = h.answer(h.ask("A"))
    h.processes["B"].hold_starts = True
    loading = h.ask("B")
    drain = gevent.spawn(h.router.drain, 5.0)
    wait_until(lambda: "drain" in h.handled, "the drain to begin")
    h.clock.advance(4.9)
    settle()
    assert not drain.ready()
    h.clock.advance(0.1)
    assert wait_until(lambda: drain.ready(), "the deadline") and drain.value is False
    h.router.shutdown()
    assert isinstance(h.answer(loading), ShuttingDown)
    stuck.release()  # after shutdown: nothing posted, nothing raised


def test_a_drain_with_nothing_in_ends_at_once_and_after_shutdown_answers_true(h: Harness):
    assert h.router.drain(5.0) is True
    h.router.shutdown()
    assert h.router.drain(5.0) is True


def test_a_request_still_in_the_mailbox_when_the_drain_begins_is_waited_for(h: Harness):
    h.ready("A")
    h.answer(h.ask("A")).release()  # its serve_done is posted...
    late = h.ask("A")  # ...and this request behind it; the loop has seen neither when the drain begins
    done_with_late: list[bool] = []

    def finish_late() -> None:
        lease = h.answer(late)
        settle()
        done_with_late.append(True)
        lease.release()

    gevent.spawn(finish_late)
    assert h.router.drain(10.0) is True
    assert done_with_late, "the drain ended before the request submitted ahead of it was done"


def test_a_drain_cut_short_answers_false_at_once(h: Harness):
    h.ready("A")
    stuck = h.answer(h.ask("A"))
    drain = gevent.spawn(h.router.drain, 60.0)
    wait_until(lambda: "drain" in h.handled, "the drain to begin")
    h.router.cut_drain()
    assert wait_until(lambda: drain.ready(), "the cut") and drain.value is False
    stuck.release()


# --------------------------------------------------------------------------- a config reload (apply)


def reloaded(h: Harness, changed: str = "", models: str = "AB") -> dict[str, FakeProcess]:
    """Fresh processes for ``models``, as a reload builds them; those in ``changed`` with a new command."""
    fresh = {m: FakeProcess(m, h.clock) for m in models}
    for m in changed:
        fresh[m].spec = ProcessSpec(m, ("fake", m, "--new"), fresh[m].spec.proxy_url)
    return fresh


def test_a_reload_keeps_an_unchanged_model_serving_on_the_same_process(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    fresh = reloaded(h)
    applied = h.router.apply(fresh, GroupSwapper([], "AB"))
    assert applied.kept == ("A", "B") and not applied.changed
    assert h.router.processes["A"] is h.processes["A"], "the running process stays"
    assert h.processes["A"].calls == [], "neither stopped nor restarted"
    wait_until(lambda: fresh["A"].state is ProcessState.SHUTDOWN, "the unused new process to end")
    second = h.answer(h.ask("A"))  # still served at once, next to the request in flight
    assert second.model == "A"
    lease.release()
    second.release()


def test_a_changed_model_finishes_its_requests_then_its_new_process_takes_over(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    fresh = reloaded(h, changed="A")
    applied = h.router.apply(fresh, GroupSwapper([], "AB"))
    assert applied.restarted == ("A",) and applied.kept == ("B",)
    waiting = h.ask("A")
    settle()
    assert not waiting._reply.ready(), "a new request waits for the new process"
    assert h.processes["A"].calls == [], "the old one is not stopped under its request"
    assert h.router.processes["A"] is h.processes["A"]
    lease.release()
    granted = h.answer(waiting)
    assert granted.model == "A"
    assert h.processes["A"].calls == ["shutdown"], "the old process stopped once drained"
    assert fresh["A"].calls == ["ensure_ready"], "then the new one started, and served the request"
    assert h.router.processes["A"] is fresh["A"]
    granted.release()


def test_a_removed_model_is_stopped_once_drained_and_then_not_found(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    applied = h.router.apply(reloaded(h, models="B"), GroupSwapper([], "B"))
    assert applied.removed == ("A",)
    late = h.ask("A")  # a request resolved under the old config
    settle()
    assert h.processes["A"].calls == [] and not late._reply.ready()
    lease.release()
    assert isinstance(h.answer(late), ModelNotFound)
    assert h.processes["A"].state is ProcessState.SHUTDOWN and "A" not in h.router.processes


def test_a_new_model_is_served_at_once_and_the_new_policy_decides(h: Harness):
    h.ready("A")
    fresh = reloaded(h, models="ABC")
    h.router.apply(fresh, GroupSwapper([side_by_side("A", "C")], "ABC"))
    lease = h.answer(h.ask("C"))
    assert lease.model == "C" and fresh["C"].calls == ["ensure_ready"]
    assert h.processes["A"].calls == [], "A and C may run together now"
    lease.release()


def test_a_second_reload_before_the_first_retired_replaces_the_pending_process(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    first = reloaded(h, changed="A")
    h.router.apply(first, GroupSwapper([], "AB"))
    second = reloaded(h, changed="A")
    second["A"].spec = ProcessSpec("A", ("fake", "A", "--newer"), second["A"].spec.proxy_url)
    assert h.router.apply(second, GroupSwapper([], "AB")).restarted == ("A",)
    wait_until(lambda: first["A"].state is ProcessState.SHUTDOWN, "the first replacement to be dropped")
    lease.release()
    granted = h.answer(h.ask("A"))
    assert h.router.processes["A"] is second["A"] and second["A"].calls == ["ensure_ready"]
    granted.release()


def test_shutdown_while_a_model_retires_shuts_its_replacement_down_too(h: Harness):
    h.ready("A")
    lease = h.answer(h.ask("A"))
    fresh = reloaded(h, changed="A")
    h.router.apply(fresh, GroupSwapper([], "AB"))
    h.router.shutdown()
    assert h.processes["A"].state is ProcessState.SHUTDOWN and fresh["A"].state is ProcessState.SHUTDOWN
    lease.release()


def test_a_model_whose_assigned_port_alone_moved_keeps_its_process(h: Harness):
    def spec(port: int) -> ProcessSpec:
        template = PortTemplate(("server", "--port", "${PORT}"), (), "http://127.0.0.1:${PORT}")
        return ProcessSpec("A", ("server", "--port", str(port)), f"http://127.0.0.1:{port}", port=port,
                           port_template=template)

    h.processes["A"].spec = spec(5801)
    h.ready("A")
    fresh = reloaded(h)
    fresh["A"].spec = spec(5800)  # a model before it was removed: every later port moves down
    assert h.router.apply(fresh, GroupSwapper([], "AB")).kept == ("A", "B")
    fresh["A"].spec = ProcessSpec("A", ("server", "--port", "5800", "-v"), "http://127.0.0.1:5800", port=5800,
                                  port_template=PortTemplate(("server", "--port", "${PORT}", "-v"), (),
                                                             "http://127.0.0.1:${PORT}"))
    assert h.router.apply(fresh, GroupSwapper([], "AB")).restarted == ("A",)
