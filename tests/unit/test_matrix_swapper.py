"""The matrix eviction policy, case by case: which set a target joins and what it stops."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.config import expand_sets, load_config
from app.runtime.build import build_swapper
from scheduler.swappers import GroupSwapper, MatrixSwapper, ModelSet

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llama-swap"


def swapper(sets: dict[str, str], costs: dict[str, int] | None = None) -> MatrixSwapper:
    """A swapper over the sets the DSL expands ``sets`` to, as the app wires it."""
    return MatrixSwapper([ModelSet(s.name, s.members, s.expression) for s in expand_sets(sets)],
                         costs or {})


VOICE = {"voice": "(llm1 | llm2) & tts"}

CASES = [
    # (id, sets, evict costs, target, running, expected eviction)
    ("target already running in the cheapest set: nothing evicted",
     VOICE, {}, "llm1", {"llm1", "tts"}, set()),
    ("switching between two LLMs keeps the shared TTS model loaded",
     VOICE, {}, "llm2", {"llm1", "tts"}, {"llm1"}),
    ("a set-mate keeps running", {"pair": "a & b"}, {}, "b", {"a"}, set()),
    ("separate sets swap", {"only_a": "a", "only_b": "b"}, {}, "b", {"a"}, {"a"}),
    ("the set that keeps the expensive model wins",
     {"a_with_c": "a & c", "a_with_b": "a & b"}, {"b": 10}, "a", {"b", "c"}, {"c"}),
    ("many cheap models lose to one expensive one",
     {"keep_cheap": "t & x & y", "keep_big": "t & big"}, {"big": 5}, "t", {"x", "y", "big"},
     {"x", "y"}),
    ("at equal costs, keeping more models running wins",
     {"keep_cheap": "t & x & y", "keep_big": "t & big"}, {}, "t", {"x", "y", "big"}, {"big"}),
    ("ties go to the set defined first",
     {"first": "a & b", "second": "a & c"}, {}, "a", {"b", "c"}, {"c"}),
    ("ties follow expansion order within a set",
     {"s": "(a & b) | (a & c)"}, {}, "a", {"b", "c"}, {"c"}),
    ("costs default to 1", {"first": "a & b", "second": "a & c & d"}, {}, "a", {"b", "c", "d"},
     {"b"}),
    ("a model in no set runs alone", VOICE, {}, "loner", {"llm1", "tts"}, {"llm1", "tts"}),
    ("a model in no set is evicted by a set member", VOICE, {}, "llm1", {"loner"}, {"loner"}),
    ("an unknown running model is evicted", VOICE, {}, "llm1", {"tts", "ghost"}, {"ghost"}),
    ("nothing running, nothing to evict", VOICE, {}, "llm1", set(), set()),
    ("the target is never in the result", {"only_a": "a", "only_b": "b"}, {}, "a", {"b"}, {"b"}),
    ("only running models are returned", {"abc": "a & b & c", "d": "d"}, {}, "a", {"d"}, {"d"}),
    ("subset semantics: a set does not start its other members",
     {"trio": "a & b & c"}, {}, "a", {"b"}, set()),
    ("a +ref set is a candidate like any other",
     {"llms": "llm1 | llm2", "voice": "+llms & tts"}, {"tts": 50}, "llm2", {"llm1", "tts"},
     {"llm1"}),
]


@pytest.mark.parametrize(("sets", "costs", "target", "running", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_eviction_for(sets: dict[str, str], costs: dict[str, int], target: str,
                      running: set[str], expected: set[str]) -> None:
    evict = swapper(sets, costs).eviction_for(target, frozenset(running))

    assert evict == frozenset(expected)
    assert evict <= frozenset(running)
    assert target not in evict


def test_decide_names_the_set_and_the_cost() -> None:
    solver = swapper({"voice": "(llm1 | llm2) & tts", "alone": "big"}, {"tts": 50})

    decision = solver.decide("llm2", frozenset({"llm1", "tts", "big"}))

    assert decision.chosen == ModelSet("voice", frozenset({"llm2", "tts"}), "(llm1 | llm2) & tts")
    assert decision.evict == frozenset({"llm1", "big"})
    assert decision.cost == 2


def test_a_model_in_no_set_costs_everything_running() -> None:
    decision = swapper(VOICE, {"tts": 50}).decide("loner", frozenset({"llm1", "tts"}))

    assert decision.chosen is None
    assert decision.cost == 51


def test_a_running_target_evicts_nothing_even_beside_a_model_it_has_no_set_with() -> None:
    # Go's solver: "if the requested model is already running, no eviction needed".
    solver = swapper({"only_a": "a", "only_b": "b"})

    assert solver.eviction_for("a", frozenset({"a", "b"})) == frozenset()


@pytest.mark.parametrize("costs", [{"a": 0}, {"a": -3}, {"a": 1.5}, {"a": True}])
def test_evict_costs_must_be_positive_integers(costs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="evict cost of 'a' must be an integer >= 1"):
        MatrixSwapper([ModelSet("s", frozenset({"a"}))], costs)  # type: ignore[arg-type]


# -- logging -------------------------------------------------------------------------

def test_eviction_for_never_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    solver = swapper(VOICE)

    solver.eviction_for("llm2", frozenset({"llm1", "tts"}))
    solver.eviction_for("loner", frozenset({"llm1"}))

    assert caplog.records == []


LOG_LINES = [
    # (id, target, running, the one line logged)
    ("evicting", "llm2", {"llm1", "tts"},
     'matrix: llm2 joins set voice "(llm1 | llm2) & tts" [llm2, tts], evicting llm1 (cost 1)'),
    ("beside running models", "llm2", {"tts"},
     'matrix: llm2 joins set voice "(llm1 | llm2) & tts" [llm2, tts] beside tts, '
     'evicting nothing (cost 0)'),
    ("nothing running", "llm2", set(),
     'matrix: llm2 starts in set voice "(llm1 | llm2) & tts" [llm2, tts] (no models running)'),
    ("in no set", "loner", {"llm1", "tts"},
     "matrix: loner is in no set and runs alone, evicting llm1, tts (cost 2)"),
]


@pytest.mark.parametrize(("target", "running", "line"), [case[1:] for case in LOG_LINES],
                         ids=[case[0] for case in LOG_LINES])
def test_a_committed_swap_logs_one_line(caplog: pytest.LogCaptureFixture, target: str,
                                        running: set[str], line: str) -> None:
    caplog.set_level(logging.DEBUG, logger="llama-swap.matrix")

    swapper(VOICE).on_swap_start(target, frozenset(running))

    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("llama-swap.matrix", logging.INFO, line)]


# -- wiring ----------------------------------------------------------------------------

def test_the_app_wires_a_matrix_swapper_when_the_matrix_is_in_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY_1", "API_KEY_2", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(name, "x")
    config = load_config(str(REFERENCE / "config.example.seed-790.yaml"))

    solver = build_swapper(config)

    assert isinstance(solver, MatrixSwapper)
    # v (voxtral-model) costs 50 to evict, so moving from gemma to qwen keeps it.
    assert solver.eviction_for("qwen-model", frozenset({"gemma-model", "voxtral-model"})) == \
        frozenset({"gemma-model"})
    # llama-70B only runs alone.
    assert solver.eviction_for("llama-70B", frozenset({"qwen-model", "voxtral-model"})) == \
        frozenset({"qwen-model", "voxtral-model"})


def test_the_app_wires_a_group_swapper_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY_1", "API_KEY_2", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(name, "x")
    config = load_config(str(REFERENCE / "config.example.yaml"))

    assert isinstance(build_swapper(config), GroupSwapper)
