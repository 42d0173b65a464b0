"""Eviction policies: which running models must stop so that a target can run.

A swapper is a pure decision over its inputs. ``eviction_for`` is speculative:
the scheduler asks it for every incoming request and again for every queued
request on every queue re-walk, so it must not log or mutate anything; most of
its answers never become a swap. ``on_swap_start`` is called exactly once per
swap actually committed, so that is where a policy may log.

Invariants of every answer: it is a subset of ``running`` and never holds the
target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_GROUP = "(default)"


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
