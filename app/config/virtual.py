"""Profiles and selectors: model ids that stand for other model ids.

Checked as far as is cheap: shapes, a selector id may not be a model id, an
alias or a qualified peer model name, a selector may not target a selector;
and (``check_peer_namespace``) no model id or alias may be a qualified peer
model name either. Targets that name nothing known
are kept and warned about (llama-swap's own example uses placeholder names);
resolving them is the router's job. Two kinds of target are refused, as Go
refuses them, because they would be accepted and then never work: a pin
whose target is only another pin (pins are applied once, they do not chain)
and a spillover selector whose local targets the routing never lets run
together.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from app.config.errors import ConfigError
from app.config.frozen import FrozenDict, freeze
from app.config.model import PeerConfig, ProfileConfig, SelectorConfig
from app.config.routing import Routing


def known_names(models: Collection[str], aliases: Collection[str],
                peers: Mapping[str, PeerConfig], selectors: Collection[str]) -> frozenset[str]:
    """Every id a request may name: models, aliases, peer models (bare and qualified), selectors."""
    peer_models = {name for peer in peers.values() for model in peer.models
                   for name in (model, f"{peer.id}/{model}")}
    return frozenset({*models, *aliases, *peer_models, *selectors})


def peer_namespace(peers: Mapping[str, PeerConfig]) -> dict[str, str]:
    """Every qualified peer model name (``<peer>/<model>``) → its peer id."""
    return {f"{peer.id}/{model}": peer.id for peer in peers.values() for model in peer.models}


def check_peer_namespace(models: Collection[str], aliases: Collection[str],
                         peers: Mapping[str, PeerConfig]) -> None:
    """A model id or alias may not be a qualified peer model name (llama-swap refuses it too)."""
    qualified = peer_namespace(peers)
    for name in (*models, *aliases):
        if name in qualified:
            kind = "model" if name in models else "alias"
            raise ConfigError(f"{kind} '{name}' is also the qualified name of peer "
                              f"'{qualified[name]}''s model; rename one of them", f"peers.{qualified[name]}.models")


def build_selectors(raw_selectors: Mapping[str, Mapping[str, Any]], models: Collection[str],
                    aliases: Mapping[str, str], peers: Mapping[str, PeerConfig]) -> FrozenDict:
    selectors = {}
    qualified = peer_namespace(peers)
    for selector_id, raw in raw_selectors.items():
        path = f"selectors.{selector_id}"
        if not selector_id.strip():
            raise ConfigError("selector ids must not be empty", "selectors")
        if selector_id in models:
            raise ConfigError(f"selector '{selector_id}' has the id of model '{selector_id}'", path)
        if selector_id in aliases:
            raise ConfigError(f"selector '{selector_id}' is an alias of model "
                              f"'{aliases[selector_id]}'", path)
        if selector_id in qualified:
            raise ConfigError(f"selector '{selector_id}' is the qualified name of a model of peer "
                              f"'{qualified[selector_id]}'", path)
        if not raw["targets"]:
            raise ConfigError("must list at least one target", f"{path}.targets")
        for index, target in enumerate(raw["targets"]):
            if target in raw_selectors:
                raise ConfigError(f"'{target}' is a selector; selectors cannot target selectors",
                                  f"{path}.targets[{index}]")
        selectors[selector_id] = SelectorConfig(
            id=selector_id,
            strategy=raw["strategy"],
            targets=tuple(raw["targets"]),
            spillover=raw.get("settings", {}).get("spillover", 1),
            name=raw.get("name", ""),
            description=raw.get("description", ""),
            unlisted=raw.get("unlisted", False),
            metadata=freeze(raw.get("metadata", {})),
        )
    return FrozenDict(selectors)


def build_profiles(raw_profiles: Mapping[str, Mapping[str, Any]]) -> FrozenDict:
    profiles = {}
    for name, raw in raw_profiles.items():
        path = f"profiles.{name}"
        if not name.strip():
            raise ConfigError("profile names must not be empty", "profiles")
        if not raw["pins"]:
            raise ConfigError("must contain at least one pin", f"{path}.pins")
        for pin in raw["pins"]:
            if not pin.strip():
                raise ConfigError("pin names must not be empty", f"{path}.pins")
        profiles[name] = ProfileConfig(
            name=name,
            pins=FrozenDict((pin, target or None) for pin, target in raw["pins"].items()),
            description=raw.get("description", ""),
        )
    return FrozenDict(profiles)


def unknown_targets(profiles: Mapping[str, ProfileConfig],
                    selectors: Mapping[str, SelectorConfig], known: frozenset[str]) -> list[str]:
    """Warnings for pins and selector targets that name no known id."""
    warnings = [f"profiles.{name}.pins.{pin}: '{target}' is not a known model, alias, "
                f"peer model or selector"
                for name, profile in profiles.items() for pin, target in profile.pins.items()
                if target is not None and target not in known]
    warnings += [f"selectors.{selector_id}.targets[{index}]: '{target}' is not a known model, "
                 f"alias or peer model"
                 for selector_id, selector in selectors.items()
                 for index, target in enumerate(selector.targets) if target not in known]
    return warnings


def check_pin_chains(profiles: Mapping[str, ProfileConfig], known: frozenset[str]) -> None:
    """Refuse a pin whose target names nothing but another pin (Go: "references unknown model")."""
    pinned = {pin: (name, target) for name, profile in profiles.items()
              for pin, target in profile.pins.items()}
    for name, profile in profiles.items():
        for pin, target in profile.pins.items():
            if target is None or target in known or target not in pinned:
                continue
            owner, final = pinned[target]
            instead = f'pin "{pin}" to "{final}" directly' if final else "pin it to a model"
            raise ConfigError(f'references unknown model "{target}": "{target}" is a pin of '
                              f'profile "{owner}", and pins do not chain; {instead}',
                              f"profiles.{name}.pins.{pin}")


def check_spillover(selectors: Mapping[str, SelectorConfig],
                    resolve: Callable[[str], str | None], routing: Routing) -> None:
    """Refuse a spillover selector whose local targets can never run side by side.

    Spillover starts the next target while the first is busy, so its local
    targets must be able to run together: one group with ``swap: false``, or
    one expanded matrix set. Peers' models and unknown names are not local.
    """
    for selector_id, selector in selectors.items():
        if selector.strategy != "spillover":
            continue
        key = f"selectors.{selector_id}.targets"
        local: list[str] = []
        for target in selector.targets:
            model_id = resolve(target)
            if model_id is None:
                continue
            if model_id in local:
                raise ConfigError(f'contains duplicate resolved model "{model_id}"', key)
            local.append(model_id)
        if len(local) > 1:
            _check_together(local, routing, key)


def _check_together(models: list[str], routing: Routing, key: str) -> None:
    listed = ", ".join(f"'{m}'" for m in models)
    if routing.use == "matrix":
        sets = routing.matrix.sets if routing.matrix else ()
        if not any(set(models) <= matrix_set.members for matrix_set in sets):
            raise ConfigError("must all appear together in one expanded matrix set; no set "
                              f"holds {listed}, so only one of them could ever run", key)
        return
    group_of = {member: group for group in routing.groups for member in group.members}
    first = group_of.get(models[0])
    if first is None or first.swap:
        where = (f"group '{first.name}', which swaps" if first else
                 "no group, so it swaps with every other ungrouped model")
        raise ConfigError(f"spillover targets must share a group with swap: false; "
                          f"'{models[0]}' is in {where}", key)
    for model_id in models[1:]:
        other = group_of.get(model_id)
        if other is not first:
            raise ConfigError("spillover targets must share one routing group; "
                              f"'{models[0]}' is in group '{first.name}' and '{model_id}' "
                              f"in {f'group {other.name!r}' if other else 'no group'}", key)
