"""Remote peers: servers whose models are proxied as ``<peer id>/<model>``.

Global macros are already expanded here (``app.config.expand``; a peer has
no ``${MODEL_ID}`` or ``${PORT}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.config.build import proxy_url, settable, strip_param_list, timeouts
from app.config.errors import ConfigError
from app.config.frozen import FrozenDict
from app.config.model import PeerConfig, PeerFilters, Timeouts

# Go's peer defaults (internal/config/peer.go): a model's, but 60 s for the
# response headers. config-schema.json says 0 there; the Go code and
# config.example.yaml ("defaults shown below") say 60, and Go is what runs.
PEER_TIMEOUTS = Timeouts(response_header=60.0)


def build_peers(raw_peers: Mapping[str, Mapping[str, Any]], warnings: list[str]) -> FrozenDict:
    """Every peer, in file order."""
    return FrozenDict((peer_id, _peer(peer_id, raw, warnings))
                      for peer_id, raw in raw_peers.items())


def _peer(peer_id: str, raw: Mapping[str, Any], warnings: list[str]) -> PeerConfig:
    path = f"peers.{peer_id}"
    if not raw["proxy"].strip():
        raise ConfigError("must not be empty", f"{path}.proxy")
    if not raw["models"]:
        raise ConfigError("must list at least one model", f"{path}.models")
    for index, model in enumerate(raw["models"]):
        if not model:
            raise ConfigError("must not be empty", f"{path}.models[{index}]")

    raw_filters = raw.get("filters", {})
    return PeerConfig(
        id=peer_id,
        proxy=proxy_url(raw["proxy"].strip(), f"{path}.proxy"),
        models=tuple(dict.fromkeys(raw["models"])),
        api_key=raw.get("apiKey", ""),
        filters=PeerFilters(
            strip_params=strip_param_list(raw_filters.get("stripParams", "")),
            set_params=settable(raw_filters.get("setParams", {}), f"{path}.filters.setParams",
                                warnings),
        ),
        timeouts=timeouts(raw.get("timeouts", {}), PEER_TIMEOUTS),
    )
