"""Which models may run together: groups or the matrix, and the FIFO priorities.

Two spellings are accepted, never both (Go refuses the mix too):
``routing.router.{use,settings.groups,settings.matrix}`` and the legacy
top-level ``groups`` / ``matrix``. A legacy ``matrix`` means
``router_use = "matrix"``. The matrix is only checked for shape here; its
expressions are not interpreted yet.

Group members that are not defined models are dropped with a warning rather
than refused: llama-swap's own example lists illustrative names, and Go never
checks members against the models either (it only refuses a model listed
twice or in two groups, as we do).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.config.errors import ConfigError
from app.config.frozen import FrozenDict, freeze
from app.config.model import GroupConfig

MATRIX_VAR_RE = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")


@dataclass(frozen=True)
class Routing:
    use: str
    groups: tuple[GroupConfig, ...]
    matrix: FrozenDict | None


def build_routing(raw: Mapping[str, Any], model_ids: frozenset[str],
                  warnings: list[str]) -> Routing:
    """The effective router settings of a validated config."""
    router = raw.get("routing", {}).get("router", {})
    settings = router.get("settings", {})
    legacy = [key for key in ("groups", "matrix") if raw.get(key)]
    if legacy and ("use" in router or settings.get("groups") or settings.get("matrix")):
        raise ConfigError(f"cannot be used together with routing.router; move it to "
                          f"routing.router.settings.{legacy[0]}", legacy[0])

    if legacy:
        if len(legacy) == 2:
            raise ConfigError("cannot be used together with top-level groups; use one or the "
                              "other", "matrix")
        use = "matrix" if legacy == ["matrix"] else "group"
        groups_raw, groups_key = raw.get("groups", {}), "groups"
        matrix_raw, matrix_key = raw.get("matrix"), "matrix"
    else:
        use = router.get("use", "group")
        groups_raw, groups_key = settings.get("groups", {}), "routing.router.settings.groups"
        matrix_raw, matrix_key = settings.get("matrix"), "routing.router.settings.matrix"
        if use == "matrix" and matrix_raw is None:
            raise ConfigError(f"is 'matrix' but {matrix_key} is not set", "routing.router.use")

    return Routing(
        use=use,
        groups=_groups(groups_raw, groups_key, model_ids, warnings),
        matrix=None if matrix_raw is None else _matrix(matrix_raw, matrix_key),
    )


def _groups(raw_groups: Mapping[str, Mapping[str, Any]], key: str,
            model_ids: frozenset[str], warnings: list[str]) -> tuple[GroupConfig, ...]:
    home: dict[str, str] = {}
    groups = []
    for name, raw in raw_groups.items():
        members_key = f"{key}.{name}.members"
        members = raw.get("members", [])
        for member in members:
            if home.get(member) == name:
                raise ConfigError(f"lists model '{member}' twice", members_key)
            if member in home:
                raise ConfigError(f"model '{member}' is in both group '{home[member]}' and "
                                  f"group '{name}'; a model can belong to one group only",
                                  members_key)
            home[member] = name
        for member in members:
            if member not in model_ids:
                warnings.append(f"{members_key}: '{member}' is not a defined model (ignored)")
        groups.append(GroupConfig(
            name=name,
            members=tuple(m for m in members if m in model_ids),
            swap=raw.get("swap", True),
            exclusive=raw.get("exclusive", True),
            persistent=raw.get("persistent", False),
        ))
    return tuple(groups)


def _matrix(raw: Mapping[str, Any], key: str) -> FrozenDict:
    for var in raw.get("vars", {}):
        if not MATRIX_VAR_RE.match(var):
            raise ConfigError("must be 1-32 letters, digits, '-' or '.'", f"{key}.vars.{var}")
    if not raw.get("sets"):
        raise ConfigError("must define at least one set", f"{key}.sets")
    return freeze({"vars": raw.get("vars", {}), "evict_costs": raw.get("evict_costs", {}),
                   "sets": raw["sets"]})


def fifo_priority(raw: Mapping[str, Any], resolve: Callable[[str], str | None],
                  warnings: list[str]) -> FrozenDict:
    """routing.scheduler.settings.fifo.priority keyed by model id (aliases resolved).

    Go refuses an unknown model here; we warn and drop it, because llama-swap's
    own example config uses placeholder names (A, B, C, D).
    """
    key = "routing.scheduler.settings.fifo.priority"
    given = raw.get("routing", {}).get("scheduler", {}).get("settings", {}) \
        .get("fifo", {}).get("priority", {})
    priority: dict[str, int] = {}
    for name, value in given.items():
        model_id = resolve(name)
        if model_id is None:
            warnings.append(f"{key}.{name}: '{name}' is not a defined model or alias (ignored)")
        else:
            priority[model_id] = value
    return FrozenDict(priority)
