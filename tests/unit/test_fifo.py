"""The FIFO scheduler driven event by event against a recording fake ``Effects``.

No greenlets and no sleeps: each test plays the router's part, calling the
``on_*`` methods in the order the events would arrive, and standing in for the
processes by changing the fake's states when it completes a swap. Time is a
fake clock the test moves by hand; the wake-ups the scheduler asks for are
delivered as ``on_tick`` when the clock passes them. Every test ends by
settling everything still outstanding and checking that the scheduler's
bookkeeping is back to zero and every request left exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from scheduler.errors import (
    ConcurrencyLimited,
    ModelNotFound,
    RouteError,
    ShuttingDown,
    StartFailed,
    Unloaded,
)
from scheduler.fifo import FifoScheduler, Request
from scheduler.state import ProcessState
from scheduler.swappers import Group, GroupSwapper

READY = ProcessState.READY
STOPPED = ProcessState.STOPPED
IDLE = {"queued": [], "swaps": {}, "stopping": [], "in_flight": {}, "waiting": {}}


class FakeEffects:
    """Records every call; the test owns the process states."""

    def __init__(self, models: Sequence[str], clock: "FakeClock") -> None:
        self.clock = clock
        self.states: dict[str, ProcessState] = {m: STOPPED for m in models}
        self.swaps: list[tuple[str, frozenset[str]]] = []
        self.swap_ids: list[int] = []  # parallel to swaps
        self.grants: list[tuple[Request, str]] = []
        self.errors: list[tuple[Request, RouteError]] = []
        self.stops: list[list[str]] = []
        self.pending_stops: list[tuple[int, list[str]]] = []  # asked for, not yet reported
        self.busy: list[tuple[str, bool]] = []
        self.departed: set[Request] = set()  # callers whose grant_serve returns False
        self.wakeups: list[float] = []  # deadlines asked for and not yet delivered
        self.holds: list[tuple[str, float, frozenset[str]]] = []  # (model, waited, held)

    def model_state(self, model: str) -> ProcessState | None:
        return self.states.get(model)

    def running_models(self) -> Mapping[str, ProcessState]:
        gone = (ProcessState.STOPPED, ProcessState.SHUTDOWN)
        return {m: s for m, s in self.states.items() if s not in gone}

    def start_swap(self, swap_id: int, model: str, evict: frozenset[str], cause: Request) -> None:
        self.swaps.append((model, evict))
        self.swap_ids.append(swap_id)

    def grant_serve(self, req: Request, model: str) -> bool:
        self.grants.append((req, model))
        return req not in self.departed

    def grant_error(self, req: Request, error: RouteError) -> None:
        self.errors.append((req, error))

    def stop_processes(self, stop_id: int, models: Sequence[str]) -> None:
        self.stops.append(list(models))
        self.pending_stops.append((stop_id, list(models)))

    def model_busy(self, model: str, busy: bool) -> None:
        self.busy.append((model, busy))

    def wake_after(self, delay: float) -> None:
        assert delay > 0, "a wake-up for a moment already past would spin"
        self.wakeups.append(self.clock.now + delay)

    def report_hold(self, req: Request, waited: float, held: frozenset[str]) -> None:
        self.holds.append((req.model, waited, held))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingSwapper(GroupSwapper):
    def __init__(self, groups: Sequence[Group], models: Sequence[str]) -> None:
        super().__init__(groups, models)
        self.started: list[tuple[str, frozenset[str]]] = []

    def on_swap_start(self, target: str, running: frozenset[str]) -> None:
        self.started.append((target, running))


class Harness:
    """A scheduler, its fake world, and the router's side of each event."""

    def __init__(self, models: str = "ABC", groups: Sequence[Group] = (), **kwargs) -> None:
        self.clock = FakeClock()
        self.fx = FakeEffects(list(models), self.clock)
        self.swapper = RecordingSwapper(groups, list(models))
        self.sched = FifoScheduler(self.swapper, self.fx, now=self.clock, **kwargs)
        self.sent: list[Request] = []
        self.cancelled: list[Request] = []
        self.served: list[Request] = []  # grants whose on_serve_done was posted

    def ask(self, *models: str) -> list[Request]:
        reqs = [Request(m) for m in models]
        for req in reqs:
            self.sent.append(req)
            self.sched.on_request(req)
        return reqs

    def ready(self, *models: str) -> None:
        for m in models:
            self.fx.states[m] = READY

    def complete(self, model: str, error: RouteError | None = None) -> None:
        """The swap goroutine for ``model`` finished: apply its effect, report it."""
        index = max(i for i, (t, _) in enumerate(self.fx.swaps) if t == model)
        evict = self.fx.swaps[index][1]
        if error is None:
            for m in evict:
                self.fx.states[m] = STOPPED
            self.fx.states[model] = READY
        self.sched.on_swap_done(self.fx.swap_ids[index], error)

    def stopped(self) -> None:
        """Every stop an unload asked for is done: the models are down, the scheduler hears it."""
        pending, self.fx.pending_stops = self.fx.pending_stops, []
        for stop_id, models in pending:
            for m in models:
                self.fx.states[m] = STOPPED
            self.sched.on_stopped(stop_id)

    def advance(self, seconds: float) -> None:
        """Time passes; every wake-up now due is delivered, earliest first."""
        self.clock.now += seconds
        while due := sorted(d for d in self.fx.wakeups if d <= self.clock.now):
            self.fx.wakeups.remove(due[0])
            self.sched.on_tick()

    def cancel(self, req: Request) -> None:
        self.cancelled.append(req)
        self.sched.on_cancel(req)

    def finish(self, req: Request) -> None:
        """A granted request's handler returned."""
        assert req in self.taken(), "only a taken grant posts serve-done"
        assert req not in self.served
        self.served.append(req)
        self.sched.on_serve_done(req.model)

    def finish_model(self, model: str) -> None:
        for req in self.taken():
            if req.model == model and req not in self.served:
                self.finish(req)

    def taken(self) -> list[Request]:
        return [r for r, _ in self.fx.grants if r not in self.fx.departed]

    def granted_models(self) -> list[str]:
        return [m for _, m in self.fx.grants]

    def swap_targets(self) -> list[str]:
        return [t for t, _ in self.fx.swaps]

    def error_of(self, req: Request) -> RouteError:
        (error,) = [e for r, e in self.fx.errors if r is req]
        return error

    def settle(self) -> None:
        """Finish every open request and swap, then check the books balance."""
        for _ in range(100):
            snap = self.sched.snapshot()
            open_grants = [r for r in self.taken() if r not in self.served]
            if not open_grants and not snap["swaps"] and not self.fx.pending_stops:
                break
            self.stopped()
            for req in open_grants:
                self.finish(req)
            for target in list(self.sched.snapshot()["swaps"]):
                self.complete(target)
        assert self.sched.snapshot() == IDLE
        self.assert_each_request_left_once()

    def assert_each_request_left_once(self) -> None:
        outcomes = (
            [r for r, _ in self.fx.grants]
            + [r for r, _ in self.fx.errors]
            + [r for r in self.cancelled if r not in self._answered()]
        )
        for req in self.sent:
            assert sum(o is req for o in outcomes) == 1, f"request for {req.model} left {outcomes}"

    def _answered(self) -> list[Request]:
        return [r for r, _ in self.fx.grants] + [r for r, _ in self.fx.errors]


@pytest.fixture
def h() -> Harness:
    return Harness()


# ---- collation ----------------------------------------------------------


def test_abcabc_burst_is_served_in_three_swaps(h: Harness):
    h.ask("A", "C", "B", "A", "C", "B")
    assert h.swap_targets() == ["A"]
    assert h.sched.snapshot()["queued"] == ["C", "B", "C", "B"]

    h.complete("A")
    assert h.granted_models() == ["A", "A"]
    h.finish_model("A")
    assert h.swap_targets() == ["A", "C"]

    h.complete("C")
    h.finish_model("C")
    h.complete("B")
    h.finish_model("B")

    assert h.swap_targets() == ["A", "C", "B"]
    assert h.granted_models() == ["A", "A", "C", "C", "B", "B"]
    assert h.fx.errors == []
    h.settle()


def test_request_joins_in_flight_swap(h: Harness):
    first, second = h.ask("A", "A")
    assert h.swap_targets() == ["A"]
    assert h.sched.snapshot()["swaps"] == {"A": {"evict": [], "waiters": 2}}

    h.complete("A")
    assert [r for r, _ in h.fx.grants] == [first, second]
    assert h.sched.snapshot()["in_flight"] == {"A": 2}
    h.settle()


def test_load_counts_waiting_and_in_flight_requests(h: Harness):
    h.ask("A", "A")
    assert h.sched.load("A") == 2, "joined to the swap: waiting"
    h.complete("A")
    assert h.sched.load("A") == 2, "granted: in flight"
    h.finish_model("A")
    assert h.sched.load("A") == 0 and h.sched.load("B") == 0
    h.settle()


def test_ready_model_takes_fast_path(h: Harness):
    h.ready("A")
    (req,) = h.ask("A")
    assert h.fx.swaps == []
    assert h.fx.grants == [(req, "A")]
    assert h.sched.snapshot()["in_flight"] == {"A": 1}
    h.settle()


def test_swap_records_itself_before_starting_and_logs_once(h: Harness):
    h.ready("A")
    h.ask("B", "B")
    assert h.fx.swaps == [("B", frozenset({"A"}))]
    assert h.swapper.started == [("B", frozenset({"A"}))]
    h.settle()


# ---- waiting for busy models -------------------------------------------


def test_swap_waits_for_busy_model_to_drain(h: Harness):
    h.ready("A")
    a1, a2 = h.ask("A", "A")
    h.ask("B")
    assert h.fx.swaps == []
    assert h.sched.snapshot()["queued"] == ["B"]

    h.finish(a1)
    assert h.fx.swaps == [], "A still has a request in flight"
    h.finish(a2)
    assert h.fx.swaps == [("B", frozenset({"A"}))]
    h.settle()


def test_ready_model_keeps_serving_while_another_waits_for_it_to_drain(h: Harness):
    # The Go scheduler's known starvation: the fast path still admits A.
    h.ready("A")
    (a1,) = h.ask("A")
    h.ask("B")
    (a2,) = h.ask("A")
    assert [r for r, _ in h.fx.grants] == [a1, a2]
    h.settle()


def test_no_request_served_while_its_model_is_being_evicted():
    # B's exclusive group stops the non-exclusive A (the one-way quirk), while
    # A, judged from its own group, would not need to evict anything.
    h = Harness("AB", groups=[Group("shared", ("A",), exclusive=False), Group("solo", ("B",))])
    h.ready("A")
    h.ask("B")
    assert h.fx.swaps == [("B", frozenset({"A"}))]

    (a,) = h.ask("A")
    assert h.fx.grants == [], "A is READY but being stopped: it must not be served"
    assert h.sched.queue_position(a) == 1

    h.complete("B")
    assert h.swap_targets() == ["B", "A"], "A reloads next to B, evicting nothing"
    assert h.fx.swaps[-1] == ("A", frozenset())
    h.complete("A")
    assert (a, "A") in h.fx.grants
    h.settle()


def test_parallel_swaps_when_evict_sets_disjoint():
    groups = [
        Group("left", ("A1", "A2"), exclusive=False),
        Group("right", ("B1", "B2"), exclusive=False),
    ]
    h = Harness(("A1", "A2", "B1", "B2"), groups=groups)
    h.ready("A1", "B1")
    h.ask("A2", "B2")
    assert h.fx.swaps == [("A2", frozenset({"A1"})), ("B2", frozenset({"B1"}))]
    # B2's running set already counts A2, whose swap is committed.
    assert h.swapper.started[1] == ("B2", frozenset({"A1", "B1", "A2"}))

    h.complete("B2")
    h.complete("A2")
    assert sorted(h.granted_models()) == ["A2", "B2"]
    h.settle()


class TableSwapper:
    """A matrix-like policy: each target names what it must stop, if running."""

    def __init__(self, table: Mapping[str, set[str]]) -> None:
        self.table = table

    def eviction_for(self, target: str, running: frozenset[str]) -> frozenset[str]:
        return frozenset(self.table.get(target, set())) & running - {target}

    def on_swap_start(self, target: str, running: frozenset[str]) -> None:
        pass


def test_overlapping_evict_sets_run_one_after_another():
    # Neither target stops the other, but both need S gone: no parallel swap.
    h = Harness("ABS")
    h.sched = FifoScheduler(TableSwapper({"A": {"S"}, "B": {"S"}}), h.fx, now=h.clock)
    h.ready("S")
    h.ask("A", "B")
    assert h.fx.swaps == [("A", frozenset({"S"}))]
    h.complete("A")
    assert h.fx.swaps[-1] == ("B", frozenset()), "S is gone now: B evicts nothing"
    h.settle()


# ---- cancellation and departed callers ----------------------------------


def test_cancelled_queued_request_is_never_granted(h: Harness):
    h.ask("A")
    (b,) = h.ask("B")
    h.cancel(b)
    assert h.sched.queue_position(b) is None
    assert h.sched.snapshot()["waiting"] == {"A": 1}

    h.complete("A")
    h.finish_model("A")
    assert h.swap_targets() == ["A"], "no swap for a caller that left"
    assert b not in [r for r, _ in h.fx.grants + h.fx.errors]
    h.settle()


def test_cancelled_waiter_does_not_count_in_flight(h: Harness):
    first, second = h.ask("A", "A")
    h.cancel(first)
    h.cancel(second)
    assert h.sched.snapshot()["swaps"] == {"A": {"evict": [], "waiters": 0}}

    h.complete("A")  # the swap still completes, with nobody to grant
    assert h.fx.grants == [] and h.fx.errors == []
    assert h.sched.snapshot() == IDLE
    h.ask("B")
    assert h.fx.swaps[-1] == ("B", frozenset({"A"})), "idle A is evicted at once"
    h.settle()


def test_cancel_of_unknown_or_finished_request_is_a_noop(h: Harness):
    h.ready("A")
    (a,) = h.ask("A")
    h.sched.on_cancel(a)  # already granted
    h.sched.on_cancel(Request("A"))  # never seen
    assert h.sched.snapshot()["in_flight"] == {"A": 1}
    h.settle()


def test_grant_to_departed_caller_is_not_counted(h: Harness):
    gone, stays = Request("A"), Request("A")
    h.fx.departed.add(gone)
    for req in (gone, stays):
        h.sent.append(req)
        h.sched.on_request(req)
    h.complete("A")
    assert h.sched.snapshot()["in_flight"] == {"A": 1}

    h.finish(stays)
    h.ask("B")
    assert h.fx.swaps[-1] == ("B", frozenset({"A"})), "A must not look busy forever"
    h.settle()


# ---- failures, unload, shutdown -----------------------------------------


def test_failed_swap_errors_every_waiter(h: Harness):
    reqs = h.ask("A", "A", "A")
    failure = StartFailed("upstream command exited prematurely")
    h.complete("A", error=failure)
    assert [(r, e) for r, e in h.fx.errors] == [(r, failure) for r in reqs]
    assert h.fx.grants == []
    assert h.sched.snapshot() == IDLE
    h.settle()


def test_failed_swap_lets_queued_requests_try_again(h: Harness):
    h.ask("A")
    (b,) = h.ask("B")
    h.complete("A", error=StartFailed("boom"))
    assert h.swap_targets() == ["A", "B"]
    h.complete("B")
    assert (b, "B") in h.fx.grants
    h.settle()


def test_unload_errors_waiters_and_queued_and_stops(h: Harness):
    waiting_a = h.ask("A", "A")
    queued_b = h.ask("B")
    (queued_c,) = h.ask("C")
    h.sched.on_unload(["A", "B"])

    for req in waiting_a + queued_b:
        assert isinstance(h.error_of(req), Unloaded)
    assert h.fx.stops == [["A", "B"]]
    # The A swap was dropped, so C no longer collides and starts at once.
    assert h.fx.swaps[-1] == ("C", frozenset())
    assert h.sched.queue_position(queued_c) is None

    h.complete("A")  # the dropped swap reports late: ignored
    assert not any(m == "A" for _, m in h.fx.grants)
    h.settle()


def test_late_result_of_an_unloaded_swap_does_not_settle_a_newer_swap_of_its_target(h: Harness):
    (first,) = h.ask("A")  # swap 1: A starting
    h.sched.on_unload(["A"])  # its start is stopped: swap 1 will report a failure, late
    assert isinstance(h.error_of(first), Unloaded)
    h.stopped()
    (second,) = h.ask("A")  # swap 2 of the same target, while swap 1 has not reported
    assert [t for t, _ in h.fx.swaps] == ["A", "A"]

    h.sched.on_swap_done(h.fx.swap_ids[0], StartFailed("model A was stopped while starting"))
    assert second not in [r for r, _ in h.fx.errors], "swap 1's late result failed swap 2's waiter"
    h.complete("A")  # swap 2 (the newest of A)
    assert (second, "A") in h.fx.grants
    h.settle()


def test_what_an_unloaded_swap_is_still_stopping_stays_off_limits_until_it_reports():
    h = Harness("AX", groups=[Group("g", ("A", "X"), swap=True, exclusive=True, persistent=False)])
    h.ready("A")
    (first,) = h.ask("X")  # swap 1: X in, evicting A (A is slow to stop)
    h.sched.on_unload(["X"])
    assert isinstance(h.error_of(first), Unloaded)
    h.stopped()  # X was not running: its stop is done at once
    late_a, late_x = h.ask("A", "X")
    # A may still say ready, but the dropped swap is stopping it: no grant,
    # and no new swap of X that would stop it a second time.
    assert h.fx.grants == [] and [t for t, _ in h.fx.swaps] == ["X"]
    h.fx.states["A"] = STOPPED
    h.sched.on_swap_done(h.fx.swap_ids[0], Unloaded("swap 1 saw its target unloaded"))
    assert [t for t, _ in h.fx.swaps] == ["X", "A"], "once it reports, the queue goes on in order"
    h.settle()
    assert {(late_a, "A"), (late_x, "X")} <= set(h.fx.grants)


def test_a_model_being_unloaded_is_queued_for_until_its_stop_is_done(h: Harness):
    h.ready("A")
    h.sched.on_unload(["A"])
    (again,) = h.ask("A")  # its process may still say ready: it must not be granted
    assert h.fx.grants == [] and h.fx.swaps == []
    assert h.sched.queue_position(again) == 1
    h.stopped()
    assert h.fx.swaps == [("A", frozenset())], "once stopped, it is started afresh"
    h.complete("A")
    assert (again, "A") in h.fx.grants
    h.settle()


def test_other_models_are_served_while_an_unload_stops_one():
    h = Harness(groups=[Group("g", ("A", "B"), swap=False, exclusive=True, persistent=True)])
    h.ready("A", "B")
    h.sched.on_unload(["A"])  # A may take its unloadTimeout to die
    (b,) = h.ask("B")
    assert (b, "B") in h.fx.grants, "B waited for A's stop"
    (c,) = h.ask("C")  # C's group is not A's: no need to wait either
    assert h.fx.swaps == [("C", frozenset())]
    h.settle()


def test_a_swap_that_would_evict_a_model_being_unloaded_waits_for_the_stop():
    h = Harness(groups=[Group("g", ("A", "B"), swap=True, exclusive=True, persistent=False)])
    h.ready("A")
    h.sched.on_unload(["A"])
    (b,) = h.ask("B")
    assert h.fx.swaps == [] and h.sched.queue_position(b) == 1
    h.stopped()
    assert h.fx.swaps == [("B", frozenset())]
    h.settle()


def test_the_world_hears_when_a_model_turns_busy_and_idle(h: Harness):
    h.ready("A")
    first, second = h.ask("A", "A")
    assert h.fx.busy == [("A", True)], "told once, as the count leaves zero"
    h.finish(first)
    assert h.fx.busy == [("A", True)]
    h.finish(second)
    assert h.fx.busy == [("A", True), ("A", False)]
    h.settle()


def test_a_fault_answers_every_waiter_and_the_scheduler_works_on(h: Harness):
    joined = h.ask("B", "B")
    queued = h.ask("C")
    assert h.sched.queue_position(queued[0]) == 1
    fault = RouteError("a bug")
    h.sched.on_fault(fault)
    assert all(h.error_of(r) is fault for r in joined + queued)
    h.complete("B")  # the swap still reports; nobody is left to grant
    assert h.fx.grants == []
    (later,) = h.ask("B")
    assert (later, "B") in h.fx.grants
    h.settle()


def test_unload_leaves_in_flight_requests_to_report_themselves(h: Harness):
    h.ready("A")
    (a,) = h.ask("A")
    h.sched.on_unload(["A"])
    assert h.fx.stops == [["A"]]
    assert h.sched.snapshot()["in_flight"] == {"A": 1}
    h.finish(a)
    h.stopped()
    assert h.sched.snapshot() == IDLE
    h.settle()


def test_shutdown_errors_everyone(h: Harness):
    joined = h.ask("A", "A")
    queued = h.ask("B", "C")
    stop = ShuttingDown("llama-swap is shutting down")
    h.sched.on_shutdown(stop)
    assert {id(r) for r, e in h.fx.errors if e is stop} == {id(r) for r in joined + queued}
    assert h.fx.stops == [], "teardown is the router's job"

    (late,) = h.ask("A")
    assert h.error_of(late) is stop
    h.complete("A")  # a swap finishing after shutdown grants nothing
    assert h.fx.grants == []
    h.settle()


# ---- admission, priority, lookups ---------------------------------------


def test_concurrency_limit_counts_waiting_and_in_flight():
    h = Harness(limits={"A": 2})
    r1, r2, r3 = h.ask("A", "A", "A")
    assert isinstance(h.error_of(r3), ConcurrencyLimited)

    h.complete("A")
    (r4,) = h.ask("A")
    assert isinstance(h.error_of(r4), ConcurrencyLimited), "two are in flight now"

    h.finish(r1)
    (r5,) = h.ask("A")
    assert (r5, "A") in h.fx.grants
    h.settle()


def test_concurrency_limit_counts_queued_requests():
    h = Harness(limits={"B": 1})
    h.ask("A")
    (b1, b2) = h.ask("B", "B")
    assert h.sched.queue_position(b1) == 1
    assert isinstance(h.error_of(b2), ConcurrencyLimited)
    h.settle()


@pytest.mark.parametrize("limit", [0, -3])
def test_non_positive_limit_means_default(limit: int):
    h = Harness(limits={"A": limit}, default_limit=2)
    reqs = h.ask("A", "A", "A")
    assert [type(e) for _, e in h.fx.errors] == [ConcurrencyLimited]
    assert h.fx.errors[0][0] is reqs[2]
    h.settle()


def test_priority_orders_queue_fifo_within_priority():
    h = Harness("ABCD", priority={"C": 5, "D": 5})
    h.ready("A")
    (a,) = h.ask("A")
    b, c1, d, c2, b2 = h.ask("B", "C", "D", "C", "B")
    assert h.sched.snapshot()["queued"] == ["C", "D", "C", "B", "B"]
    assert [h.sched.queue_position(r) for r in (c1, d, c2, b, b2)] == [1, 2, 3, 4, 5]

    h.finish(a)
    assert h.swap_targets() == ["C"]
    h.complete("C")
    h.finish_model("C")
    h.complete("D")
    h.finish_model("D")
    h.complete("B")
    assert h.swap_targets() == ["C", "D", "B"]
    assert h.granted_models() == ["A", "C", "C", "D", "B", "B"]
    h.settle()


def test_unknown_model_is_not_found(h: Harness):
    (req,) = h.ask("nope")
    error = h.error_of(req)
    assert isinstance(error, ModelNotFound)
    assert "nope" in error.message
    assert h.fx.swaps == []
    h.settle()


def test_stray_serve_done_is_ignored(h: Harness):
    h.sched.on_serve_done("A")
    assert h.sched.snapshot() == IDLE
    h.settle()


def test_swap_done_for_unknown_swap_is_ignored(h: Harness):
    h.sched.on_swap_done("B", None)
    assert h.fx.grants == [] and h.sched.snapshot() == IDLE
    h.settle()


# ---- maxWait: the starvation bound -------------------------------------


def steady_traffic(h: Harness, model: str, seconds: float, every: float = 0.5) -> list[Request]:
    """A request for ``model`` every ``every`` seconds, each finishing one period
    after it began, so ``model`` always has one in flight and never drains."""
    sent: list[Request] = []
    for _ in range(int(seconds / every)):
        sent += h.ask(model)
        for req in h.taken():
            if req.model == model and req not in h.served and req is not sent[-1]:
                h.finish(req)
        h.advance(every)
    return sent


def test_steady_traffic_to_a_starves_b_without_max_wait():
    h = Harness(max_wait=0)
    h.ready("A")
    h.ask("A")
    (b,) = h.ask("B")

    steady_traffic(h, "A", seconds=60)

    assert h.sched.queue_position(b) == 1, "B has waited a minute and would wait forever"
    assert h.fx.swaps == [] and set(h.granted_models()) == {"A"}
    assert h.fx.wakeups == [] and h.fx.holds == []
    h.finish_model("A")  # only when A's traffic stops does B get its swap
    assert h.fx.swaps == [("B", frozenset({"A"}))]
    h.settle()


def test_max_wait_holds_new_requests_for_the_model_b_must_evict():
    h = Harness(max_wait=2)
    h.ready("A")
    h.ask("A")
    (b,) = h.ask("B")
    before = steady_traffic(h, "A", seconds=2)
    assert all(r in h.taken() for r in before), "below maxWait A keeps its fast path"
    assert h.fx.holds == [("B", 2.0, frozenset({"A"}))]

    late = h.ask("A", "A")
    assert all(h.sched.queue_position(r) is not None for r in late), "A is held behind B"
    assert h.sched.snapshot()["queued"] == ["B", "A", "A"]

    h.finish_model("A")  # A drains...
    assert h.fx.swaps == [("B", frozenset({"A"}))], "...and B's swap goes at once"
    h.complete("B")
    assert (b, "B") in h.fx.grants
    h.finish(b)
    assert h.fx.swaps[-1] == ("A", frozenset({"B"})), "then the queue carries on"
    h.complete("A")
    assert all(r in h.taken() for r in late)
    assert len(h.fx.holds) == 1, "the hold is reported once"
    h.settle()


def test_max_wait_tick_wakes_the_scheduler_when_nothing_else_happens():
    h = Harness(max_wait=2)
    h.ready("A")
    (a,) = h.ask("A")
    h.ask("B")
    assert h.fx.wakeups == [h.clock.now + 2]

    h.advance(1.5)
    assert h.fx.holds == []
    h.advance(0.5)  # no request arrives or finishes: only the tick comes
    assert h.fx.holds == [("B", 2.0, frozenset({"A"}))]
    assert h.fx.wakeups == [], "nothing else will turn overdue"
    assert h.fx.swaps == [] and h.fx.grants == [(a, "A")], "A's request is not cut off"

    (late,) = h.ask("A")
    assert h.sched.queue_position(late) == 2
    h.finish(a)
    assert h.fx.swaps == [("B", frozenset({"A"}))]
    h.settle()


def run_trace(max_wait: float) -> Harness:
    """A mixed workload: bursts, steady traffic, a failed swap and a cancel."""
    h = Harness("ABC", max_wait=max_wait)
    h.ask("A", "C", "B", "A")
    h.advance(3)
    h.complete("A")
    h.ask("A")
    h.advance(3)
    h.finish_model("A")
    h.complete("C", error=StartFailed("boom"))
    (b,) = [r for r in h.sent if r.model == "B"]
    h.cancel(b)
    steady_traffic(h, "A", seconds=5)
    h.ask("C")
    h.advance(10)
    h.settle()
    return h


def test_max_wait_zero_is_llama_swaps_behaviour():
    unbounded, never_reached = run_trace(max_wait=0), run_trace(max_wait=1e9)
    assert unbounded.fx.wakeups == [] and unbounded.fx.holds == []

    def decisions(h: Harness) -> list:
        return [h.swap_targets(), [(h.sent.index(r), m) for r, m in h.fx.grants],
                [(h.sent.index(r), type(e)) for r, e in h.fx.errors]]

    assert decisions(unbounded) == decisions(never_reached)
    # And the bound, once reached, changes the outcome of the same trace.
    assert decisions(run_trace(max_wait=2)) != decisions(unbounded)


def test_an_overdue_request_goes_before_higher_priority_ones():
    h = Harness(max_wait=2, priority={"C": 5})
    h.ready("A")
    (a,) = h.ask("A")
    h.ask("B")
    h.advance(1)
    h.ask("C")
    assert h.sched.snapshot()["queued"] == ["C", "B"]

    h.advance(1)  # B is overdue, C is not
    h.finish(a)
    assert h.swap_targets() == ["B"], "the bound overrides priority"
    h.complete("B")
    h.finish_model("B")
    assert h.swap_targets() == ["B", "C"]
    h.settle()


def test_priority_orders_the_queue_below_the_bound():
    h = Harness(max_wait=2, priority={"C": 5})
    h.ready("A")
    (a,) = h.ask("A")
    h.ask("B")
    h.advance(1)
    h.ask("C")
    h.advance(0.5)  # nobody is overdue yet
    h.finish(a)
    assert h.swap_targets() == ["C"]
    h.settle()


def test_overdue_requests_go_in_the_order_they_arrived():
    h = Harness(max_wait=2)
    h.ready("A")
    (a,) = h.ask("A")
    h.ask("C")
    h.advance(1)
    h.ask("B")
    h.advance(2)
    assert [m for m, _, _ in h.fx.holds] == ["C", "B"]

    h.finish(a)
    assert h.swap_targets() == ["C"]
    h.complete("C")
    (late_c,) = h.ask("C")
    assert h.sched.queue_position(late_c) is not None, "B is overdue: C is held for it now"
    h.finish_model("C")
    assert h.swap_targets() == ["C", "B"]
    h.settle()


def test_cancelling_the_overdue_request_releases_its_hold():
    h = Harness(max_wait=2)
    h.ready("A")
    h.ask("A")
    (b,) = h.ask("B")
    h.advance(2)
    (held,) = h.ask("A")
    assert h.sched.queue_position(held) == 2

    h.cancel(b)
    assert (held, "A") in h.fx.grants, "nobody is waiting for A to drain any more"
    assert h.fx.swaps == []
    h.settle()


def test_a_request_cancelled_before_max_wait_holds_nothing():
    h = Harness(max_wait=2)
    h.ready("A")
    h.ask("A")
    (b,) = h.ask("B")
    h.cancel(b)
    h.advance(5)  # its wake-up still comes, and finds nobody overdue
    assert h.fx.holds == []
    (a2,) = h.ask("A")
    assert (a2, "A") in h.fx.grants
    h.settle()


def test_requests_joined_to_a_swap_before_the_hold_are_still_granted():
    h = Harness(max_wait=2)
    early = h.ask("A", "A")
    (b,) = h.ask("B")  # collides with the swap to A in flight
    h.advance(2)
    assert h.fx.holds == [("B", 2.0, frozenset({"A"}))]
    (late,) = h.ask("A")
    assert h.sched.queue_position(late) is not None, "no new waiters for a model B must evict"

    h.complete("A")
    assert [r for r, _ in h.fx.grants] == early, "those that waited for the load are served"
    h.finish_model("A")
    assert h.swap_targets() == ["A", "B"]
    h.complete("B")
    assert (b, "B") in h.fx.grants
    h.settle()


def test_max_wait_holds_only_the_models_in_the_way():
    # B swaps with A; C is in a group of its own that B's group leaves alone.
    groups = [Group("ab", ("A", "B"), exclusive=False), Group("c", ("C",), exclusive=False)]
    h = Harness(groups=groups, max_wait=2)
    h.ready("A", "C")
    h.ask("A", "C")
    h.ask("B")
    h.advance(2)
    assert h.fx.holds == [("B", 2.0, frozenset({"A"}))]

    a2, c2 = h.ask("A", "C")
    assert h.sched.queue_position(a2) is not None
    assert (c2, "C") in h.fx.grants, "C is not in B's way: its fast path stays open"
    h.settle()


def test_max_wait_holds_a_swap_that_would_get_in_the_way():
    # An overdue B waits on busy A; an idle C could swap in for D meanwhile,
    # but B would then have to evict C (and wait for it) too.
    groups = [Group("ab", ("A", "B")), Group("cd", ("C", "D"), exclusive=False)]
    h = Harness("ABCD", groups=groups, max_wait=2)
    h.ready("A")
    (a,) = h.ask("A")
    h.ask("B")
    h.advance(2)
    (c,) = h.ask("C")
    assert h.fx.swaps == [] and h.sched.queue_position(c) is not None
    h.finish(a)
    # B goes first; C then starts beside it, as it would have with no hold.
    assert h.swap_targets() == ["B", "C"]
    h.settle()


def test_max_wait_holds_a_swap_that_would_stop_what_the_overdue_request_must_stop():
    # B must stop A (busy) and S (idle); C only needs S gone. Were C to swap
    # in now, B would then collide with C's swap and wait for C's load too.
    h = Harness("ABCS", max_wait=2)
    h.sched = FifoScheduler(TableSwapper({"B": {"A", "S"}, "C": {"S"}}), h.fx, max_wait=2, now=h.clock)
    h.ready("A", "S")
    (a,) = h.ask("A")
    h.ask("B")
    h.advance(2)
    (c,) = h.ask("C")
    assert h.fx.swaps == [] and h.sched.queue_position(c) is not None
    h.finish(a)
    assert h.fx.swaps[0] == ("B", frozenset({"A", "S"}))
    h.settle()


def test_max_wait_holds_a_swap_that_would_stop_the_overdue_request_s_own_model():
    # B is loaded but must stop a busy A before it may serve; C would stop B.
    h = Harness("ABC", max_wait=2)
    h.sched = FifoScheduler(TableSwapper({"B": {"A"}, "C": {"B"}}), h.fx, max_wait=2, now=h.clock)
    h.ready("A", "B")
    (a,) = h.ask("A")
    (b,) = h.ask("B")
    h.advance(2)
    (c,) = h.ask("C")
    assert h.fx.swaps == [] and h.sched.queue_position(c) is not None
    h.finish(a)
    assert h.fx.swaps[0] == ("B", frozenset({"A"}))
    h.settle()



def test_an_overdue_request_waits_for_an_unload_stop_then_goes_first():
    h = Harness(max_wait=2.0)
    h.ready("A")
    (busy,) = h.ask("A")
    (b,) = h.ask("B")  # must evict A, which is busy
    h.advance(2.0)  # B is overdue now
    h.sched.on_unload(["A"])  # A is stopped under its running request
    (late_a,) = h.ask("A")  # arrives after B: may not get in its way
    assert h.fx.swaps == [] and h.sched.queue_position(b) is not None
    h.stopped()
    assert h.fx.swaps[0] == ("B", frozenset()), "once A is down, overdue B goes first"
    h.finish(busy)
    h.complete("B")
    assert (b, "B") in h.fx.grants
    h.settle()
    assert (late_a, "A") in h.fx.grants
