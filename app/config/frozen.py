"""Read-only containers for the free-form data a config carries (metadata, setParams, ...).

``FrozenDict`` is a real ``dict`` subclass so that ``json.dumps`` and
``isinstance(x, dict)`` keep working downstream; every mutating method raises.
``freeze`` turns nested dicts into FrozenDicts and lists into tuples, so a
frozen value is hashable all the way down (and so are the dataclasses holding it);
``thaw`` gives back a mutable, JSON-ready copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn


class FrozenDict(dict):
    """A dict that refuses to change after construction."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("config data is read-only")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def freeze(value: Any) -> Any:
    """A deep, read-only copy: dict → FrozenDict, list/tuple → tuple, scalars as they are."""
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A mutable, JSON-ready copy of a frozen config value (FrozenDict, tuples)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
