"""The group eviction policy, case by case: which running models a target stops."""

from __future__ import annotations

import pytest

from scheduler.swappers import Group, GroupSwapper

MODELS = ("a", "b", "c", "x", "y", "p", "q")


def swapper(*groups: Group) -> GroupSwapper:
    return GroupSwapper(groups, MODELS)


CASES = [
    # (id, groups, target, running, expected eviction)
    ("no groups: one model at a time", (), "c", {"a", "b"}, {"a", "b"}),
    ("no groups: target alone running", (), "a", {"a"}, set()),
    ("swap group stops its siblings", (Group("g", ("a", "b")),), "b", {"a"}, {"a"}),
    (
        "non-swap group keeps its siblings",
        (Group("g", ("a", "b"), swap=False),),
        "b",
        {"a"},
        set(),
    ),
    (
        "exclusive group stops other groups",
        (Group("g1", ("a",)), Group("g2", ("b",))),
        "a",
        {"b"},
        {"b"},
    ),
    (
        "non-exclusive group leaves other groups",
        (Group("g1", ("a",), exclusive=False), Group("g2", ("b",))),
        "a",
        {"b"},
        set(),
    ),
    (
        "quirk: exclusive target stops a non-exclusive group",
        (Group("ex", ("a",)), Group("shared", ("b",), exclusive=False)),
        "a",
        {"b"},
        {"b"},
    ),
    (
        "quirk: non-exclusive target leaves an exclusive group",
        (Group("ex", ("a",)), Group("shared", ("b",), exclusive=False)),
        "b",
        {"a"},
        set(),
    ),
    (
        "persistent group survives an exclusive target",
        (Group("keep", ("p", "q"), persistent=True), Group("g", ("a",))),
        "a",
        {"p"},
        set(),
    ),
    (
        "persistent swap group still swaps within itself",
        (Group("keep", ("p", "q"), persistent=True), Group("g", ("a",))),
        "q",
        {"p", "a"},
        {"p", "a"},
    ),
    (
        "persistent non-swap group keeps its siblings",
        (Group("keep", ("p", "q"), persistent=True, swap=False),),
        "q",
        {"p"},
        set(),
    ),
    (
        "ungrouped target is exclusive: stops grouped models",
        (Group("g", ("a",)),),
        "x",
        {"a", "y"},
        {"a", "y"},
    ),
    (
        "non-exclusive group leaves ungrouped models",
        (Group("g", ("a", "b"), exclusive=False),),
        "a",
        {"b", "x"},
        {"b"},
    ),
    ("unknown running model is in (default)", (), "a", {"ghost"}, {"ghost"}),
    (
        "unknown running model survives a non-exclusive target",
        (Group("g", ("a",), exclusive=False),),
        "a",
        {"ghost"},
        set(),
    ),
    (
        "unknown running model is swapped out by a default target",
        (Group("g", ("a",), exclusive=False),),
        "x",
        {"ghost", "a"},
        {"ghost", "a"},
    ),
    ("target is never evicted", (Group("g", ("a", "b")),), "a", {"a", "b"}, {"b"}),
    ("only running models are returned", (Group("g", ("a", "b", "c")),), "b", {"a"}, {"a"}),
    ("nothing running, nothing to evict", (Group("g", ("a", "b")),), "a", set(), set()),
]


@pytest.mark.parametrize(
    ("groups", "target", "running", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_eviction_for(groups, target, running, expected):
    evict = swapper(*groups).eviction_for(target, frozenset(running))
    assert evict == frozenset(expected)
    assert evict <= frozenset(running)
    assert target not in evict


def test_explicit_default_group_settings_apply_to_ungrouped_models():
    relaxed = swapper(Group("(default)", (), swap=False))
    assert relaxed.eviction_for("x", frozenset({"y"})) == frozenset()


def test_model_in_two_groups_is_rejected():
    with pytest.raises(ValueError, match="multiple groups"):
        swapper(Group("g1", ("a",)), Group("g2", ("a",)))


def test_group_naming_an_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        swapper(Group("g", ("nope",)))


def test_swap_start_has_no_effect_on_decisions():
    s = swapper(Group("g", ("a", "b")))
    s.on_swap_start("a", frozenset({"b"}))
    assert s.eviction_for("a", frozenset({"b"})) == frozenset({"b"})
