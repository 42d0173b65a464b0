"""Which models may run together: groups or the matrix, and the FIFO priorities.

Two spellings are accepted, never both (Go refuses the mix too):
``routing.router.{use,settings.groups,settings.matrix}`` and the legacy
top-level ``groups`` / ``matrix``. A legacy ``matrix`` means
``router_use = "matrix"``.

Group members that are not defined models are dropped with a warning rather
than refused: llama-swap's own example lists illustrative names, and Go never
checks members against the models either (it only refuses a model listed
twice or in two groups, as we do).

The matrix is interpreted (``app.config.matrix`` expands its sets) only when
it is the engine in use; otherwise it is ignored with a warning, as Go ignores
it. Go refuses a matrix naming undefined models; we warn and keep the names,
because the seed's example does exactly that: a model that does not exist is
never running and never requested, so keeping it changes no decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.config.errors import ConfigError
from app.config.frozen import FrozenDict
from app.config.matrix import MatrixConfig, MatrixError, MatrixSet, expand_sets
from app.config.model import GroupConfig

MATRIX_VAR_RE = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")


@dataclass(frozen=True)
class Routing:
    use: str
    groups: tuple[GroupConfig, ...]
    matrix: MatrixConfig | None  # None unless use is "matrix"


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
        matrix=_matrix(matrix_raw, matrix_key, use, model_ids, warnings),
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


def _matrix(raw: Mapping[str, Any] | None, key: str, use: str, model_ids: frozenset[str],
            warnings: list[str]) -> MatrixConfig | None:
    """The interpreted matrix, or None when there is none or another engine is in use."""
    if raw is None:
        return None
    if use != "matrix":
        warnings.append(f"{key}: not used because routing.router.use is '{use}' (ignored)")
        return None
    var_ids = _matrix_vars(raw.get("vars", {}), key, model_ids, warnings)
    if not raw.get("sets"):
        raise ConfigError("must define at least one set", f"{key}.sets")
    sets = _matrix_sets(raw["sets"], var_ids, key)
    _warn_undefined_set_members(sets, var_ids, key, model_ids, warnings)
    return MatrixConfig(
        vars=var_ids,
        evict_costs=_evict_costs(raw.get("evict_costs", {}), var_ids, key, model_ids, warnings),
        sets=sets,
        expressions=FrozenDict(raw["sets"]),
    )


def _matrix_vars(raw_vars: Mapping[str, str], key: str, model_ids: frozenset[str],
                 warnings: list[str]) -> FrozenDict:
    for var, model_id in raw_vars.items():
        if not MATRIX_VAR_RE.match(var):
            raise ConfigError("must be 1-32 letters, digits, '-' or '.'", f"{key}.vars.{var}")
        if model_id not in model_ids:
            warnings.append(f"{key}.vars.{var}: '{model_id}' is not a defined model "
                            f"(it can never run)")
    return FrozenDict(raw_vars)


def _matrix_sets(expressions: Mapping[str, str], var_ids: Mapping[str, str],
                 key: str) -> tuple[MatrixSet, ...]:
    try:
        return expand_sets(expressions, var_ids)
    except MatrixError as err:
        set_key = f"{key}.sets.{err.set_name}"
        # ConfigError prints "<set_key>: <message>"; the caret lines up under that.
        raise ConfigError(err.with_pointer(indent=len(set_key) + 2), set_key) from None


def _warn_undefined_set_members(sets: tuple[MatrixSet, ...], var_ids: Mapping[str, str],
                                key: str, model_ids: frozenset[str], warnings: list[str]) -> None:
    """One warning per name that is neither a var nor a model, at the first set using it.

    Dependency order puts a referenced set first, so that is the set that
    spells the name. Undefined var targets were already reported under vars.
    """
    var_targets = frozenset(var_ids.values())
    reported: set[str] = set()
    for matrix_set in sets:
        for member in sorted(matrix_set.members - model_ids - var_targets - reported):
            reported.add(member)
            warnings.append(f"{key}.sets.{matrix_set.name}: '{member}' is neither a var nor a "
                            f"defined model (it can never run)")


def _evict_costs(raw_costs: Mapping[str, int], var_ids: Mapping[str, str], key: str,
                 model_ids: frozenset[str], warnings: list[str]) -> FrozenDict:
    """Costs keyed by model id; keys may be vars or model ids, not both for one model."""
    costs: dict[str, int] = {}
    spelled: dict[str, str] = {}  # model id -> the key that set its cost
    for name, cost in raw_costs.items():
        if name not in var_ids and name not in model_ids:
            warnings.append(f"{key}.evict_costs.{name}: '{name}' is neither a var nor a "
                            f"defined model (ignored)")
            continue
        model_id = var_ids.get(name, name)
        if model_id in spelled:
            raise ConfigError(f"'{spelled[model_id]}' and '{name}' both set the cost of model "
                              f"'{model_id}'", f"{key}.evict_costs.{name}")
        spelled[model_id] = name
        costs[model_id] = cost
    return FrozenDict(costs)


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
