"""The FIFO scheduler against random event sequences in a fake world.

Hypothesis draws a small world (2-4 models, a random ``groups:`` config for
the real ``GroupSwapper``, priorities, a concurrency limit, ``maxWait``) and a
sequence of events: requests, swap completions (success or failure),
serve-dones, clients hanging up (the cancel event arriving later, as through
the router's mailbox), unloads and their stops completing later, and the clock moving on with the wake-ups due
delivered as ticks. After every event the world checks the scheduler's
promises:

- no request is answered twice, or at all once its cancel was handled;
- in-flight and waiting counts match the world's own count of them;
- no grant goes to a model that a swap still running is evicting (one an
  unload dropped included), or that an unload is stopping;
- the world is told a model is busy exactly while it has grants in flight;
- an overdue queued request: nothing decided for a younger request is granted
  to, joins or loads a model it must evict, or starts a swap that evicts its
  target or what it must evict (its drain and load are the events that
  complete them, so this is the bound);
- every queued request not yet overdue has a wake-up coming by its deadline;
- a tick when nothing happened changes nothing (nobody was left waiting who
  could have gone).

At the end it lets everything finish and checks that the scheduler is idle
and every request left exactly once.

The fake world moves process states only when a swap completes (evicted
models stopped, the target ready on success) or when an unload's stop is
reported, like the
``Harness`` in ``test_fifo.py``. A swap dropped by an unload still completes
in this world, as it does in the router; "in flight" above means the swaps
the scheduler still tracks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.errors import RouteError, StartFailed
from scheduler.fifo import FifoScheduler, Request
from scheduler.state import ProcessState
from scheduler.swappers import Group, GroupSwapper

READY = ProcessState.READY
STOPPED = ProcessState.STOPPED
IDLE = {"queued": [], "swaps": {}, "stopping": [], "in_flight": {}, "waiting": {}}
NAMES = "ABCD"

# Derandomized so CI sees the same examples every run; the budget keeps the
# whole file to a few seconds.
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# ---- the world ----------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    models: tuple[str, ...]
    groups: tuple[Group, ...]
    priority: Mapping[str, int]
    limit: int
    max_wait: float


@dataclass(eq=False)
class Tracked:
    """What the world knows of one request: when it came, how it ended."""

    req: Request
    index: int
    arrived: float
    answers: list[str] = field(default_factory=list)  # "grant:M" or "error"
    departed: bool = False  # the client hung up (grant_serve now answers False)
    cancel_delivered: bool = False
    served: bool = False  # its serve-done was delivered


class World:
    """Plays the router and the processes around one scheduler; checks as it goes."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.now = 0.0
        self.states: dict[str, ProcessState] = {m: STOPPED for m in config.models}
        self.swapper = GroupSwapper(config.groups, config.models)
        self.sched = FifoScheduler(
            self.swapper, self, default_limit=config.limit, priority=config.priority,
            max_wait=config.max_wait, now=lambda: self.now,
        )
        self.tracked: list[Tracked] = []
        self.pending_swaps: list[tuple[int, str, frozenset[str]]] = []
        self.pending_stops: list[tuple[int, list[str]]] = []
        self.busy: set[str] = set()
        self.wakeups: list[float] = []
        self.pending_cancels: list[Tracked] = []
        self.reported: list[Request] = []
        # Per event: what the scheduler did, for the checks after it.
        self.event_grants: list[tuple[Tracked, str]] = []
        self.event_swaps: list[tuple[str, frozenset[str]]] = []
        self.log: list[tuple] = []  # every decision, for comparing two runs

    # ---- Effects --------------------------------------------------------

    def model_state(self, model: str) -> ProcessState | None:
        return self.states.get(model)

    def running_models(self) -> Mapping[str, ProcessState]:
        return {m: s for m, s in self.states.items() if s is not STOPPED}

    def start_swap(self, swap_id: int, model: str, evict: frozenset[str], cause: Request) -> None:
        self.pending_swaps.append((swap_id, model, evict))
        self.event_swaps.append((model, evict))
        self.log.append(("swap", model, evict))

    def grant_serve(self, req: Request, model: str) -> bool:
        t = self.find(req)
        assert t.cancel_delivered is False, "granted after its cancel was handled"
        assert model == req.model
        # Every swap still running counts, the ones an unload dropped too: they still stop their evict set.
        evicting = [target for _, target, evict in self.pending_swaps if model in evict]
        assert not evicting, f"{model} granted while the swap to {evicting} is stopping it"
        assert not any(model in stopping for stopping in self.sched.snapshot()["stopping"]), (
            f"{model} granted while an unload is stopping it")
        t.answers.append(f"grant:{model}")
        self.event_grants.append((t, model))
        self.log.append(("grant", t.index, model))
        return not t.departed

    def grant_error(self, req: Request, error: RouteError) -> None:
        t = self.find(req)
        assert t.cancel_delivered is False, "answered after its cancel was handled"
        t.answers.append("error")
        self.log.append(("error", t.index, type(error).__name__))

    def stop_processes(self, stop_id: int, models: Sequence[str]) -> None:
        self.pending_stops.append((stop_id, list(models)))

    def model_busy(self, model: str, busy: bool) -> None:
        assert (model in self.busy) != busy, f"{model} told busy={busy} twice"
        (self.busy.add if busy else self.busy.discard)(model)

    def wake_after(self, delay: float) -> None:
        assert self.config.max_wait > 0, "maxWait 0 needs no clock"
        assert delay > 0
        self.wakeups.append(self.now + delay)

    def report_hold(self, req: Request, waited: float, held: frozenset[str]) -> None:
        assert self.config.max_wait > 0
        assert waited >= self.config.max_wait
        assert self.sched.queue_position(req) is not None, "only a queued request holds"
        assert all(r is not req for r in self.reported), "a hold is reported once"
        self.reported.append(req)

    # ---- lookups --------------------------------------------------------

    def find(self, req: Request) -> Tracked:
        return next(t for t in self.tracked if t.req is req)

    def outstanding(self) -> list[Tracked]:
        """Requests the scheduler still holds (queued or waiting on a swap)."""
        return [t for t in self.tracked if not t.answers and not t.cancel_delivered]

    def open_grants(self) -> list[Tracked]:
        return [t for t in self.tracked
                if t.answers[-1:] == [f"grant:{t.req.model}"] and not t.departed and not t.served]

    def queued(self) -> list[Tracked]:
        return [t for t in self.outstanding() if self.sched.queue_position(t.req) is not None]

    def evicts(self, target: str, model: str) -> bool:
        """Whether loading ``target`` must stop ``model`` (group rules are pairwise)."""
        return model in self.swapper.eviction_for(target, frozenset({model}))

    # ---- events ---------------------------------------------------------

    def request(self, which: int) -> None:
        model = self.config.models[which % len(self.config.models)]
        t = Tracked(Request(model), len(self.tracked), self.now)
        self.tracked.append(t)
        self.event(lambda: self.sched.on_request(t.req), new=t)

    def complete(self, which: int, ok: bool) -> None:
        if not self.pending_swaps:
            return
        swap_id, model, evict = self.pending_swaps.pop(which % len(self.pending_swaps))
        for m in evict:
            self.states[m] = STOPPED
        self.states[model] = READY if ok else STOPPED
        error = None if ok else StartFailed(f"{model} failed")
        self.event(lambda: self.sched.on_swap_done(swap_id, error))

    def stopped(self, which: int) -> None:
        """One stop an unload asked for is done."""
        if not self.pending_stops:
            return
        stop_id, models = self.pending_stops.pop(which % len(self.pending_stops))
        for m in models:
            self.states[m] = STOPPED
        self.event(lambda: self.sched.on_stopped(stop_id))

    def serve_done(self, which: int) -> None:
        grants = self.open_grants()
        if grants:
            t = grants[which % len(grants)]
            t.served = True
            self.event(lambda: self.sched.on_serve_done(t.req.model))

    def hang_up(self, which: int) -> None:
        """The client leaves now; its cancel reaches the scheduler later."""
        waiting = [t for t in self.outstanding() if not t.departed]
        if waiting:
            t = waiting[which % len(waiting)]
            t.departed = True
            self.pending_cancels.append(t)

    def deliver_cancel(self, which: int) -> None:
        if self.pending_cancels:
            t = self.pending_cancels.pop(which % len(self.pending_cancels))
            t.cancel_delivered = True
            self.event(lambda: self.sched.on_cancel(t.req))

    def unload(self, mask: int) -> None:
        models = [m for i, m in enumerate(self.config.models) if mask >> i & 1]
        self.event(lambda: self.sched.on_unload(models))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while due := sorted(d for d in self.wakeups if d <= self.now):
            self.wakeups.remove(due[0])
            self.event(self.sched.on_tick)

    def traffic(self, which: int, rounds: int) -> None:
        """Steady traffic: a request every 0.25 s, each ending 0.5 s later, so
        the model, once serving, never drains on its own."""
        model = self.config.models[which % len(self.config.models)]
        for _ in range(rounds):
            self.request(which)
            self.advance(0.25)
            grants = [t for t in self.open_grants() if t.req.model == model]
            if len(grants) > 1:
                grants[0].served = True
                self.event(lambda: self.sched.on_serve_done(model))

    def spurious_tick(self) -> None:
        """A timer firing early, or twice. Nothing happened, so nothing may change:
        a request the scheduler could have placed at the last event but left
        waiting would be placed now (time passing only ever adds holds)."""
        decisions = len(self.log)
        self.event(self.sched.on_tick)
        assert self.log[decisions:] == [], "a request was left waiting that could have gone"

    # ---- the checks around every event ----------------------------------

    def event(self, deliver, new: Tracked | None = None) -> None:
        queued_before = self.queued()
        self.event_grants, self.event_swaps = [], []
        deliver()
        placed = self.placed_in_event(queued_before, new)
        self.check_holds(queued_before, placed)
        self.check_books()
        self.check_wakeups()

    def placed_in_event(self, queued_before: list[Tracked], new: Tracked | None) -> list[Tracked]:
        """Requests decided afresh in this event: granted, or into a swap (started or joined).

        Grants to waiters that joined a swap earlier are not fresh decisions.
        """
        candidates = queued_before + ([new] if new is not None else [])
        return [t for t in candidates
                if self.sched.queue_position(t.req) is None
                and (not t.answers or t.answers[0].startswith("grant:"))
                and not t.cancel_delivered]

    def check_holds(self, queued_before: list[Tracked], placed: list[Tracked]) -> None:
        """An overdue queued request: nothing decided for a younger one stands in its way."""
        if self.config.max_wait <= 0:
            return
        for holder in queued_before:
            if self.sched.queue_position(holder.req) is None:
                continue  # it went (or left) in this event; the ordinary rules protect it now
            if self.now < holder.arrived + self.config.max_wait:
                continue
            target = holder.req.model
            for t in placed:
                if t.arrived > holder.arrived and t.req.model != target:
                    assert not self.evicts(target, t.req.model), (
                        f"{t.req.model} served while overdue {target} waits to evict it")
            for model, evict in self.event_swaps:
                starters = [t for t in placed if t.req.model == model]
                if model == target or any(t.arrived <= holder.arrived for t in starters):
                    continue
                assert not self.evicts(target, model), f"{model} loaded in overdue {target}'s way"
                assert target not in evict, f"swap to {model} evicts overdue {target}"
                assert not any(self.evicts(target, m) for m in evict), (
                    f"swap to {model} evicts what overdue {target} must evict too")

    def check_books(self) -> None:
        snap = self.sched.snapshot()
        in_flight: dict[str, int] = {}
        for t in self.open_grants():
            in_flight[t.req.model] = in_flight.get(t.req.model, 0) + 1
        assert snap["in_flight"] == in_flight
        waiting: dict[str, int] = {}
        for t in self.outstanding():
            waiting[t.req.model] = waiting.get(t.req.model, 0) + 1
        assert snap["waiting"] == waiting
        assert self.busy == set(in_flight), "busy/idle told out of step with the grants in flight"
        for t in self.tracked:
            assert len(t.answers) <= 1, f"request {t.index} answered {t.answers}"
        scheduler_swaps = set(snap["swaps"])
        assert scheduler_swaps <= {m for _, m, _ in self.pending_swaps}, "a swap nobody is running"

    def check_wakeups(self) -> None:
        """Every queued request is either overdue and reported, or has a wake-up coming."""
        if self.config.max_wait <= 0:
            assert not self.wakeups and not self.reported
            return
        for t in self.queued():
            deadline = t.arrived + self.config.max_wait
            if self.now >= deadline:
                continue  # reported at the latest by the tick due at its deadline
            assert any(d <= deadline for d in self.wakeups), f"no wake-up for request {t.index}"

    # ---- the end --------------------------------------------------------

    def finish_everything(self) -> None:
        """Hang-ups arrive, swaps complete, requests finish, time passes: until quiet."""
        for _ in range(200):
            if self.pending_cancels:
                self.deliver_cancel(0)
            elif self.pending_swaps:
                self.complete(0, ok=True)
            elif self.pending_stops:
                self.stopped(0)
            elif self.open_grants():
                self.serve_done(0)
            elif self.wakeups:
                self.advance(max(self.wakeups) - self.now)
            else:
                break
        assert not self.pending_swaps and not self.pending_stops and not self.open_grants()
        assert self.sched.snapshot() == IDLE, "the scheduler is stuck with work nobody will wake"
        for t in self.tracked:
            left = len(t.answers) + (t.cancel_delivered and not t.answers)
            assert left == 1, f"request {t.index} for {t.req.model} left {left} times: {t.answers}"


# ---- strategies ---------------------------------------------------------


@st.composite
def world_configs(draw, max_wait=st.sampled_from([0.0, 0.5, 1.0, 2.5])) -> WorldConfig:
    models = tuple(NAMES[: draw(st.integers(2, 4))])
    # Each model lands in group 0-2 or in none (-1, the implicit default group).
    slots = draw(st.lists(st.integers(-1, 2), min_size=len(models), max_size=len(models)))
    groups = []
    for g in range(3):
        members = tuple(m for m, s in zip(models, slots) if s == g)
        if members:
            swap, exclusive, persistent = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
            groups.append(Group(f"g{g}", members, swap, exclusive, persistent))
    priority = {m: draw(st.integers(0, 1)) for m in models}
    return WorldConfig(models, tuple(groups), priority, draw(st.integers(1, 6)), draw(max_wait))


def _weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    return st.one_of(*[strategy for weight, strategy in choices for _ in range(weight)])


# Weighted towards steady traffic (requests, completions, serve-dones and time
# passing) so that requests do queue, turn overdue and hold others.
EVENTS = _weighted(
    (8, st.tuples(st.just("request"), st.integers(0, 3))),
    (4, st.tuples(st.just("complete"), st.integers(0, 7), st.sampled_from([True] * 5 + [False]))),
    (6, st.tuples(st.just("serve_done"), st.integers(0, 7))),
    (1, st.tuples(st.just("hang_up"), st.integers(0, 7))),
    (2, st.tuples(st.just("deliver_cancel"), st.integers(0, 7))),
    (1, st.tuples(st.just("unload"), st.sampled_from([1, 2, 4, 8, 15]))),
    (2, st.tuples(st.just("stopped"), st.integers(0, 3))),
    (4, st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 2.0]))),
    (1, st.tuples(st.just("spurious_tick"))),
    (2, st.tuples(st.just("traffic"), st.integers(0, 3), st.integers(1, 12))),
)
SEQUENCES = st.lists(EVENTS, min_size=30, max_size=100)


def play(config: WorldConfig, events: Sequence[tuple]) -> World:
    world = World(config)
    for name, *args in events:
        getattr(world, name)(*args)
    world.finish_everything()
    return world


# ---- properties ---------------------------------------------------------


@SETTINGS
@given(world_configs(), SEQUENCES)
def test_every_request_ends_once_and_the_scheduler_ends_idle(config: WorldConfig, events):
    # The checks run inside the world: after every event, and at the end.
    play(config, events)


@SETTINGS
@given(world_configs(max_wait=st.just(0.0)), SEQUENCES)
def test_a_bound_never_reached_changes_no_decision(config: WorldConfig, events):
    # maxWait 0 (llama-swap) and a maxWait no request ever reaches decide alike.
    unbounded = play(config, events)
    never_reached = play(WorldConfig(config.models, config.groups, config.priority,
                                     config.limit, max_wait=1e9), events)
    assert unbounded.log == never_reached.log
