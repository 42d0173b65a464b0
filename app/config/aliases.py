"""The alias table: every other name a model answers to, each owned by exactly one model.

A model's names are its ``aliases`` and the keys of its
``filters.setParamsByID`` (Go registers those as aliases too, so a client can
ask for ``llama:high``). A name may belong to one model only and may not be
another model's id; the error names both models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from app.config.errors import ConfigError
from app.config.frozen import FrozenDict
from app.config.model import ModelConfig


def with_aliases(models: Mapping[str, ModelConfig]) -> tuple[dict[str, ModelConfig], FrozenDict]:
    """``models`` with their full alias tuples, and the alias → model id table."""
    owner: dict[str, str] = {}
    names: dict[str, list[str]] = {model_id: [] for model_id in models}

    def claim(alias: str, model_id: str, key: str) -> None:
        if alias == model_id or owner.get(alias) == model_id:
            return
        if alias in models:
            raise ConfigError(f"alias '{alias}' of model '{model_id}' is the id of model "
                              f"'{alias}'", key)
        if alias in owner:
            raise ConfigError(f"alias '{alias}' is used by both model '{owner[alias]}' and "
                              f"model '{model_id}'", key)
        owner[alias] = model_id
        names[model_id].append(alias)

    # explicit aliases first, as Go does, so a clash names the explicit owner first
    for model_id, model in models.items():
        for index, alias in enumerate(model.aliases):
            if not alias:
                raise ConfigError("must not be empty", f"models.{model_id}.aliases[{index}]")
            claim(alias, model_id, f"models.{model_id}.aliases[{index}]")
    for model_id, model in models.items():
        for alias in model.filters.set_params_by_id:
            claim(alias, model_id, f"models.{model_id}.filters.setParamsByID.{alias}")

    updated = {model_id: replace(model, aliases=tuple(names[model_id]))
               for model_id, model in models.items()}
    return updated, FrozenDict(owner)
