"""The swap timeline on its own: core events and occupancy snapshots in, the hour's document out; a fake clock."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.observe.events import ConfigReloaded, TimelineChanged
from app.observe.timeline import SwapTimeline
from scheduler.events import ModelStateChanged, SwapBegan, SwapEnded
from scheduler.fifo import Occupancy
from scheduler.state import ProcessState

STOPPED, STARTING, READY = ProcessState.STOPPED, ProcessState.STARTING, ProcessState.READY
EPOCH = 1_800_000_000.0  # the wall clock at monotonic 0


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 100.0

    def wall(self) -> float:
        return EPOCH + self.monotonic

    def now(self) -> float:
        return self.monotonic


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def told() -> list[TimelineChanged]:
    return []


def timeline(clocks: Clocks, told: list, waiting: dict[str, int] | None = None, **kwargs) -> SwapTimeline:
    counts = waiting if waiting is not None else {}
    return SwapTimeline(told.append, lambda: {m: Occupancy(0, n, 0) for m, n in counts.items()},
                        wall=clocks.wall, monotonic=clocks.now, **kwargs)


def unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_state_change_is_kept_at_its_own_moment_and_told(clocks, told):
    line = timeline(clocks, told)
    clocks.monotonic = 105.0  # the event is read 5 s after the process owner stamped it
    line.record(ModelStateChanged("alpha", STOPPED, STARTING, 4242, at=100.0))
    [state] = line.document()["states"]
    assert state["model"] == "alpha" and (state["previous"], state["state"], state["pid"]) == ("stopped", "starting", 4242)
    assert unix(state["at"]) == pytest.approx(EPOCH + 100.0)
    assert [(t.kind, t.entry) for t in told] == [("state", state)]


def test_a_swap_is_one_entry_from_its_beginning_to_its_end_with_its_cause(clocks, told):
    line = timeline(clocks, told)
    cause = {"by": "request", "id": "12", "method": "POST", "path": "/v1/chat/completions", "client": "127.0.0.1"}
    line.record(SwapBegan(3, "beta", frozenset({"gamma", "alpha"}), at=100.0, cause=cause))
    [open_swap] = line.document()["swaps"]
    assert open_swap["ended"] is None and open_swap["seconds"] is None
    assert open_swap["evict"] == ["alpha", "gamma"] and open_swap["cause"] == cause
    clocks.monotonic = 102.5
    line.record(SwapEnded(3, "beta", None, 2.5, at=102.5))
    line.record(SwapEnded(99, "beta", "never began here", 1.0, at=102.5))  # not ours: ignored
    [swap] = line.document()["swaps"]
    assert swap["id"] == 1 and swap["error"] is None and swap["seconds"] == 2.5  # numbered here
    assert unix(swap["ended"]) - unix(swap["began"]) == pytest.approx(2.5)
    assert [(t.kind, t.entry["ended"] is None) for t in told] == [("swap", True), ("swap", False)]


def test_the_queue_depth_is_kept_only_when_it_changes(clocks, told):
    waiting: dict[str, int] = {}
    line = timeline(clocks, told, waiting)
    line.sample()  # nothing waits, as at the start: nothing kept
    waiting["beta"] = 2
    line.sample()
    clocks.monotonic += 1
    line.sample()  # the same: nothing new
    waiting["beta"] = 0  # a model with none waiting counts as absent
    line.record(ModelStateChanged("beta", STARTING, READY, 1, at=101.0))  # each event samples too
    queue = line.document()["queue"]
    assert [(q["waiting"], q["models"]) for q in queue] == [(2, {"beta": 2}), (0, {})]
    assert [t.kind for t in told] == ["queue", "state", "queue"]


def test_a_broken_occupancy_is_skipped_not_raised(clocks, told):
    def broken():
        raise RuntimeError("the router is being replaced")

    line = SwapTimeline(told.append, broken, wall=clocks.wall, monotonic=clocks.now)
    line.record(ModelStateChanged("alpha", STOPPED, STARTING, 1, at=100.0))
    assert len(line.document()["states"]) == 1 and line.document()["queue"] == []


def test_after_an_hour_old_entries_become_the_starting_values(clocks, told):
    waiting = {"alpha": 1}
    line = timeline(clocks, told, waiting)
    line.record(SwapBegan(1, "alpha", frozenset(), at=100.0))
    line.record(ModelStateChanged("alpha", STOPPED, STARTING, 1, at=100.0))
    line.record(ModelStateChanged("alpha", STARTING, READY, 1, at=101.0))
    line.record(SwapEnded(1, "alpha", None, 1.0, at=101.0))
    line.record(SwapBegan(2, "beta", frozenset({"alpha"}), at=102.0))  # never ends: stays
    clocks.monotonic = 101.0 + 3600.5
    document = line.document()
    assert document["states"] == [] and document["initial"]["states"] == {"alpha": "ready"}
    assert [s["id"] for s in document["swaps"]] == [2]
    assert document["initial"]["queue"]["models"] == {"alpha": 1} and document["queue"] == []
    assert unix(document["until"]) - unix(document["since"]) == pytest.approx(3600)


def test_past_its_size_bound_the_oldest_states_become_starting_values(clocks, told):
    line = timeline(clocks, told, max_entries=2)
    for i, (before, after) in enumerate([(STOPPED, STARTING), (STARTING, READY), (READY, STOPPED)]):
        line.record(ModelStateChanged("alpha", before, after, 1, at=100.0 + i))
    document = line.document()
    assert [s["state"] for s in document["states"]] == ["ready", "stopped"]
    assert document["initial"]["states"] == {"alpha": "starting"}


def test_a_swap_running_through_a_reload_ends_with_its_own_outcome(clocks, told):
    line = timeline(clocks, told)
    line.record(SwapBegan(1, "beta", frozenset({"alpha"}), at=102.0))  # still running when the config changes
    clocks.monotonic = 104.0
    line.record(ConfigReloaded(("alpha", "beta"), None))  # the router is kept: its swaps go on
    line.record(SwapEnded(1, "beta", None, 4.0, at=106.0))
    (swap,) = line.document()["swaps"]
    assert (swap["id"], swap["model"], swap["error"], swap["seconds"]) == (1, "beta", None, 4.0)
