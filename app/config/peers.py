"""Remote peers: servers whose models are proxied as ``<peer id>/<model>``.

Only the global macros apply here (there is no ``${MODEL_ID}`` or ``${PORT}``
for a peer), in ``apiKey``, ``filters.stripParams`` and ``filters.setParams``,
as in Go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.config.build import expanded, proxy_url, settable, strip_param_list, timeouts
from app.config.errors import ConfigError
from app.config.frozen import FrozenDict
from app.config.macros import MacroList, expand_text, expand_value, leftover_problem, leftover_refs
from app.config.model import PeerConfig, PeerFilters, Timeouts

# Go's peer defaults (internal/config/peer.go): a model's, but 60 s for the
# response headers. config-schema.json says 0 there; the Go code and
# config.example.yaml ("defaults shown below") say 60, and Go is what runs.
PEER_TIMEOUTS = Timeouts(response_header=60.0)


def build_peers(raw_peers: Mapping[str, Mapping[str, Any]], macros: MacroList,
                warnings: list[str]) -> FrozenDict:
    """Every peer, in file order."""
    return FrozenDict((peer_id, _peer(peer_id, raw, macros, warnings))
                      for peer_id, raw in raw_peers.items())


def _peer(peer_id: str, raw: Mapping[str, Any], macros: MacroList,
          warnings: list[str]) -> PeerConfig:
    path = f"peers.{peer_id}"
    if not raw["proxy"].strip():
        raise ConfigError("must not be empty", f"{path}.proxy")
    if not raw["models"]:
        raise ConfigError("must list at least one model", f"{path}.models")
    for index, model in enumerate(raw["models"]):
        if not model:
            raise ConfigError("must not be empty", f"{path}.models[{index}]")

    raw_filters = raw.get("filters", {})
    api_key = expanded(f"{path}.apiKey", expand_text, raw.get("apiKey", ""), macros)
    strip = expanded(f"{path}.filters.stripParams", expand_text,
                     raw_filters.get("stripParams", ""), macros)
    set_params = expanded(f"{path}.filters.setParams", expand_value,
                          raw_filters.get("setParams", {}), macros)
    leftovers = [*leftover_refs(api_key, f"{path}.apiKey"),
                 *leftover_refs(strip, f"{path}.filters.stripParams"),
                 *leftover_refs(set_params, f"{path}.filters.setParams")]
    if leftovers:
        key, name = leftovers[0]
        raise ConfigError(leftover_problem(name, macros), key)

    return PeerConfig(
        id=peer_id,
        proxy=proxy_url(raw["proxy"].strip(), f"{path}.proxy"),
        models=tuple(dict.fromkeys(raw["models"])),
        api_key=api_key,
        filters=PeerFilters(
            strip_params=strip_param_list(strip),
            set_params=settable(set_params, f"{path}.filters.setParams", warnings),
        ),
        timeouts=timeouts(raw.get("timeouts", {}), PEER_TIMEOUTS),
    )
