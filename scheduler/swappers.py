"""Eviction policies: which running models must stop so that a target can run.

A swapper is a pure decision over its inputs. ``eviction_for`` is speculative:
the scheduler asks it for every incoming request and again for every queued
request on every queue re-walk, so it must not log or mutate anything; most of
its answers never become a swap. ``on_swap_start`` is called exactly once per
swap actually committed, so that is where a policy may log.

Invariants of every answer: it is a subset of ``running`` and never holds the
target.

Two policies: ``GroupSwapper`` (llama-swap's ``groups``) and ``MatrixSwapper``
(its ``matrix``: a cost-based choice among allowed model sets). Both take
plain data; ``app.runtime.build`` builds it from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_GROUP = "(default)"
DEFAULT_EVICT_COST = 1

matrix_log = logging.getLogger("llama-swap.matrix")


class Swapper(Protocol):
    def eviction_for(self, target: str, running: frozenset[str]) -> frozenset[str]:
        """The members of ``running`` that must stop for ``target`` to run. Pure; never logs."""
        ...

    def on_swap_start(self, target: str, running: frozenset[str]) -> None:
        """A swap to ``target`` was committed against ``running``; the place to log."""
        ...


@dataclass(frozen=True)
class Group:
    """A llama-swap ``groups:`` entry.

    ``swap``: members run one at a time. ``exclusive``: loading a member stops
    other groups' members. ``persistent``: other groups never stop its members.
    """

    name: str
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


class GroupSwapper:
    """llama-swap's group policy, including its one-way exclusivity quirk.

    Models in no group (and running models the swapper has never heard of) form
    the implicit group ``(default)``: swap, exclusive, not persistent, so with
    no groups configured exactly one model runs at a time.

    The quirk, kept for compatibility: exclusivity is judged only on the
    target's group. Loading a member of a non-exclusive group leaves every other
    group alone, yet loading a member of an exclusive group stops members of
    non-exclusive groups (unless they are persistent).
    """

    def __init__(self, groups: Sequence[Group], models: Iterable[str]) -> None:
        self._group_of = _index_members(groups, frozenset(models))
        self._groups: Mapping[str, Group] = {g.name: g for g in groups}
        # Models no group claims need no entry: lookup falls back to (default).
        if DEFAULT_GROUP not in self._groups:
            self._groups = {**self._groups, DEFAULT_GROUP: Group(DEFAULT_GROUP, ())}

    def group_of(self, model: str) -> Group:
        return self._groups[self._group_of.get(model, DEFAULT_GROUP)]

    def eviction_for(self, target: str, running: frozenset[str]) -> frozenset[str]:
        home = self.group_of(target)
        return frozenset(m for m in running if m != target and self._evicts(home, self.group_of(m)))

    def on_swap_start(self, target: str, running: frozenset[str]) -> None:
        # Group decisions are fully determined by static config; nothing to log.
        return None

    @staticmethod
    def _evicts(home: Group, other: Group) -> bool:
        if other.name == home.name:
            return home.swap
        return home.exclusive and not other.persistent


def _index_members(groups: Sequence[Group], models: frozenset[str]) -> dict[str, str]:
    """Map each member to its group; a member must be a known model, in one group only."""
    group_of: dict[str, str] = {}
    names: set[str] = set()
    for group in groups:
        if group.name in names:
            raise ValueError(f"group {group.name!r} is defined twice")
        names.add(group.name)
        for member in group.members:
            if member not in models:
                raise ValueError(f"group {group.name!r} names unknown model {member!r}")
            if member in group_of:
                raise ValueError(
                    f"model {member!r} is in multiple groups: {group_of[member]!r} and {group.name!r}"
                )
            group_of[member] = group.name
    return group_of


@dataclass(frozen=True)
class ModelSet:
    """Models allowed to run together (any subset of them too); one expanded matrix set.

    ``name`` and ``expression`` (the set's DSL, if known) are only for the log.
    """

    name: str
    members: frozenset[str]
    expression: str = ""


@dataclass(frozen=True)
class MatrixDecision:
    """What the matrix solver chose: ``chosen`` is None when the target is in no set."""

    evict: frozenset[str]
    chosen: ModelSet | None
    cost: int


class MatrixSwapper:
    """llama-swap's matrix policy: keep the running models that cost most to lose.

    Among the sets holding the target, choose the one whose running-but-outside
    models have the smallest summed evict cost (ties: the earliest set), and
    evict exactly those. Only the target is started; the rest of the set is a
    permission, not a preload. Rules kept from Go's solver:

    - a target that is already running evicts nothing (it is served, or its
      pending start goes ahead, next to whatever runs now);
    - a target in no set runs alone: everything else running is evicted;
    - a running model the matrix has never heard of is outside every set, so it
      is evicted like any other, at the default cost.
    """

    def __init__(self, sets: Sequence[ModelSet], evict_costs: Mapping[str, int],
                 default_cost: int = DEFAULT_EVICT_COST) -> None:
        _check_cost("the default cost", default_cost)
        for model, cost in evict_costs.items():
            _check_cost(f"the evict cost of {model!r}", cost)
        self._sets = tuple(sets)
        self._costs = dict(evict_costs)
        self._default_cost = default_cost
        self._sets_with: dict[str, list[ModelSet]] = {}
        for model_set in self._sets:  # in order, so each list keeps the tie-break order
            for member in model_set.members:
                self._sets_with.setdefault(member, []).append(model_set)

    def eviction_for(self, target: str, running: frozenset[str]) -> frozenset[str]:
        return self.decide(target, running).evict

    def on_swap_start(self, target: str, running: frozenset[str]) -> None:
        decision = self.decide(target, running)
        level = logging.DEBUG if target in running else logging.INFO
        matrix_log.log(level, "matrix: %s", _describe(target, running, decision))

    def decide(self, target: str, running: frozenset[str]) -> MatrixDecision:
        """The full solver answer: what to evict, which set, at what cost. Pure."""
        if target in running:
            return MatrixDecision(frozenset(), self._first_holding(running), 0)
        candidates = self._sets_with.get(target)
        if not candidates:
            return MatrixDecision(frozenset(running), None, self.cost_of(running))
        # min() keeps the first of equal costs: definition order breaks ties.
        chosen = min(candidates, key=lambda s: self.cost_of(running - s.members))
        evict = running - chosen.members
        return MatrixDecision(frozenset(evict), chosen, self.cost_of(evict))

    def cost_of(self, models: Iterable[str]) -> int:
        return sum(self._costs.get(m, self._default_cost) for m in models)

    def _first_holding(self, models: frozenset[str]) -> ModelSet | None:
        """For the log only: the first set that allows all of ``models`` at once."""
        return next((s for s in self._sets if models <= s.members), None)


def _check_cost(what: str, cost: object) -> None:
    # Costs must be positive: were a model free to evict, keeping it running
    # would be worth nothing and the cheapest set would stop meaning "evict least".
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {cost!r}")


def _describe(target: str, running: frozenset[str], decision: MatrixDecision) -> str:
    """One log line for a committed swap: the set chosen, its DSL, what goes, the cost."""
    chosen = decision.chosen
    if chosen is None:
        if target in running:
            return f"{target} already running"
        return (f"{target} is in no set and runs alone, evicting "
                f"{_names(decision.evict) or 'nothing'} (cost {decision.cost})")
    expression = f' "{chosen.expression}"' if chosen.expression else ""
    where = f"set {chosen.name}{expression} [{_names(chosen.members)}]"
    if target in running:
        return f"{target} already running in {where}"
    if decision.evict:
        return (f"{target} joins {where}, evicting {_names(decision.evict)} "
                f"(cost {decision.cost})")
    if running:
        return f"{target} joins {where} beside {_names(running)}, evicting nothing (cost 0)"
    return f"{target} starts in {where} (no models running)"


def _names(models: Iterable[str]) -> str:
    return ", ".join(sorted(models))
