"""The OpenAI-style model listing (``/v1/models``, ``/models``): one record per listed name.

Pure: config in, JSON-ready records out. A record is
``{"id", "object": "model", "created", "owned_by": "llama-swap"}`` plus, when
set, ``name``, ``description``, ``meta: {"llamaswap": <metadata>}`` (metadata
keeps the JSON types config gave it) and the fields rendered from
``capabilities``. Unlisted models are left out (they are still served). With
``includeAliasesInList`` every alias (``setParamsByID`` keys included, they
are aliases too) gets a copy of its model's record under its own id. Records
are sorted by id. Each peer model is listed as Go lists it: id
``<peer>/<model>`` (the name that always reaches it), ``name``
``"<peer>: <model>"``, ``meta: {"llamaswap": {"peerID": <peer>}}``.
Selectors not marked ``unlisted`` are listed with their own ``name``,
``description`` and ``metadata``, to which ``meta.llamaswap`` adds, as Go's
newest listing does (and over a metadata key of the same name), ``type:
"selector"``, ``strategy``, ``targets`` and, for ``spillover``, its
``spillover`` setting: what the UI's Models page shows of each selector.
While a profile is active, each of its pins to something is listed under the pinned name with its target's record (even
an unlisted target: the pin is what the profile offers); a pin to nothing is
not listed, and a pinned name that is already listed keeps its own record.
A pin's ``meta.llamaswap`` says ``type: "profile"``, as Go's does (so a pin
to a selector is not taken for one).

Capabilities follow llama-swap's rendering for OpenRouter, Hugging Face
chat-ui and Mistral clients (llama-swap v225, "Model capabilities #842"):
``architecture: {input_modalities, output_modalities, modality:
"text+image->text"}``, a ``capabilities`` object of flags, and the context
length as ``context_length`` (OpenRouter) and ``meta.n_ctx`` (llama.cpp's
router, llama-swap #984). The flag names for image, speech and reranker
models are Go's; the ones for vision, transcription, tools and chat follow the
same clients' vocabulary (the Go source for those was not available to us).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from app.config import Config, thaw
from app.config.model import ModelConfig, ProfileConfig, SelectorConfig
from app.naming import resolve
from scheduler.errors import ModelNotFound


def model_records(config: Config, created: int,
                  profile: ProfileConfig | None = None) -> list[dict[str, Any]]:
    records = []
    for model in config.models.values():
        if model.unlisted:
            continue
        records.append(model_record(model.id, model, created))
        if config.include_aliases_in_list:
            records.extend(model_record(alias, model, created)
                           for alias in model.aliases if alias.strip())
    records.extend(peer_model_record(peer.id, model, created)
                   for peer in config.peers.values() for model in peer.models)
    records.extend(selector_record(selector, created)
                   for selector in config.selectors.values() if not selector.unlisted)
    if profile is not None:
        records.extend(pin_records(config, profile, {r["id"] for r in records}, created))
    records.sort(key=lambda r: r["id"])
    return records


def pin_records(config: Config, profile: ProfileConfig, listed: set[str],
                created: int) -> list[dict[str, Any]]:
    """A record per pin to something whose name is not listed already: its target's, renamed."""
    records = []
    for pin, target in profile.pins.items():
        if target is None or pin in listed:
            continue
        record = target_record(config, target, created)
        record["id"] = pin
        meta = record.setdefault("meta", {})
        meta["llamaswap"] = {**meta.get("llamaswap", {}), "type": "profile"}  # Go's mark of a pin
        records.append(record)
    return records


def target_record(config: Config, target: str, created: int) -> dict[str, Any]:
    """The record ``target`` (model, alias, selector or peer model) would be listed with."""
    if target in config.selectors:
        return selector_record(config.selectors[target], created)
    try:
        destination = resolve.concrete(config, target)
    except ModelNotFound:  # listed by two peers: nothing to copy
        destination = None
    if isinstance(destination, resolve.Local):
        return model_record(target, config.models[destination.model], created)
    if destination is not None:
        return peer_model_record(destination.peer_id, destination.model, created)
    return {"id": target, "object": "model", "created": created, "owned_by": "llama-swap"}


def selector_record(selector: SelectorConfig, created: int) -> dict[str, Any]:
    record: dict[str, Any] = {"id": selector.id, "object": "model", "created": created,
                              "owned_by": "llama-swap"}
    if selector.name.strip():
        record["name"] = selector.name.strip()
    if selector.description.strip():
        record["description"] = selector.description.strip()
    described: dict[str, Any] = {"type": "selector", "strategy": selector.strategy,
                                  "targets": list(selector.targets)}
    if selector.strategy == "spillover":
        described["spillover"] = selector.spillover
    record["meta"] = {"llamaswap": {**thaw(selector.metadata), **described}}
    return record


def model_record(record_id: str, model: ModelConfig, created: int) -> dict[str, Any]:
    record: dict[str, Any] = {"id": record_id.strip(), "object": "model", "created": created,
                              "owned_by": "llama-swap"}
    if model.name.strip():
        record["name"] = model.name.strip()
    if model.description.strip():
        record["description"] = model.description.strip()
    meta: dict[str, Any] = {}
    if model.metadata:
        meta["llamaswap"] = thaw(model.metadata)
    if model.capabilities:
        record.update(capability_fields(model.capabilities))
        if model.capabilities.get("context"):
            meta["n_ctx"] = model.capabilities["context"]
    if meta:
        record["meta"] = meta
    return record


def peer_model_record(peer: str, model: str, created: int) -> dict[str, Any]:
    return {"id": f"{peer}/{model}", "object": "model", "created": created, "owned_by": "llama-swap",
            "name": f"{peer}: {model}", "meta": {"llamaswap": {"peerID": peer}}}


def capability_fields(caps: Mapping[str, Any]) -> dict[str, Any]:
    """The record fields a model's ``capabilities`` block renders to."""
    inputs, outputs = list(caps.get("in", ())), list(caps.get("out", ()))
    fields: dict[str, Any] = {}
    if inputs or outputs:
        fields["architecture"] = {
            "input_modalities": inputs,
            "modality": "+".join(inputs) + "->" + "+".join(outputs),
            "output_modalities": outputs,
        }
    flags = {
        "completion_chat": "text" in inputs and "text" in outputs,
        "vision": "image" in inputs,
        "audio_transcriptions": "audio" in inputs and "text" in outputs,
        "image_generation": "image" in outputs,
        "audio_speech": "audio" in outputs,
        "function_calling": bool(caps.get("tools")),
        "reranker": bool(caps.get("reranker")),
    }
    if any(flags.values()):
        fields["capabilities"] = {name: True for name, on in flags.items() if on}
    if caps.get("tools"):
        fields["supported_parameters"] = ["tools", "tool_choice"]
    if caps.get("context"):
        fields["context_length"] = caps["context"]
    return fields


def status_records(config: Config, state_of: Callable[[str], str]) -> list[dict[str, Any]]:
    """llama-swap's ``ApiModel`` list (``/api/events`` ``modelStatus``): local models by id, then peers'.

    ``state_of(model)`` is the model's process state (``stopped`` when it has
    no live process); peer models have no state here ("").
    """
    records = []
    for model_id in sorted(config.models):
        model = config.models[model_id]
        record: dict[str, Any] = {"id": model_id, "name": model.name, "description": model.description,
                                  "state": state_of(model_id), "unlisted": model.unlisted, "peerID": ""}
        if model.aliases:
            record["aliases"] = list(model.aliases)
        if model.capabilities:
            fields = capability_fields(model.capabilities)
            if "capabilities" in fields:
                record["capabilities"] = fields["capabilities"]
            if "context_length" in fields:
                record["context_length"] = fields["context_length"]
        records.append(record)
    for peer in config.peers.values():
        records.extend({"id": f"{peer.id}/{model}", "name": "", "description": "", "state": "",
                        "unlisted": False, "peerID": peer.id} for model in peer.models)
    return records
