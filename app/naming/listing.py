"""The OpenAI-style model listing (``/v1/models``, ``/models``): one record per listed name, as Go lists it.

Pure: config and the running processes in, JSON-ready records out. Every
record is ``{"id", "object": "model", "created", "owned_by": "llama-swap",
"status": {"value": "loaded" | "unloaded"}}`` (``status`` as llama.cpp's
router lists models, llama-swap #901) plus, when non-empty, ``name``,
``description``, the fields rendered from ``capabilities`` and ``meta``.
``meta.llamaswap`` is the name's own ``metadata`` (JSON types kept) with what
the listing says of it laid over it: ``type`` (``model``, ``alias``,
``peer``, ``selector``, ``profile``) and, by type, ``aliases`` (a model's,
``setParamsByID`` keys included), ``modelID`` (an alias's model),
``peerID``, ``strategy``/``targets``/``spillover`` (a selector's).

Which names, and their status, follow llama-swap's listing:

* a model not ``unlisted``: ``loaded`` while its process is anywhere but
  stopped (starting and stopping count); with ``includeAliasesInList`` each
  non-blank alias is listed too, with its model's fields and status;
* each peer's models as ``<peer>/<model>``, named ``"<peer>: <model>"``,
  always ``unloaded`` (their state is the peer's);
* each selector not ``unlisted``: ``loaded`` when a local target is ready or
  starting (a ``pin`` selector looks at its first target only);
* the active profile's pins to something, unless the pin's name is already a
  model, alias, peer model or selector name (listed or not): a bare record,
  ``type: "profile"``, always ``unloaded``.

Capabilities render as llama-swap renders them for OpenRouter, Hugging Face
chat-ui and Mistral clients: ``architecture`` (``input_modalities``,
``output_modalities``, and ``modality`` "text+image->text" when both are
set), a ``capabilities`` map of flags, ``supported_parameters: ["tools",
"tool_choice"]`` for ``tools``, and ``context`` as ``context_length`` and
``meta.n_ctx`` (llama.cpp's router's field, llama-swap #984). A model with
capabilities loses the ``metadata`` keys those fields would shadow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from app.config import Config, thaw
from app.config.model import ProfileConfig, SelectorConfig
from app.naming import peers
from scheduler.errors import ModelNotFound

LOADED, UNLOADED = "loaded", "unloaded"
# Process states (``ProcessState`` values) in which a selector counts its target as loaded.
_SELECTOR_WARM = frozenset({"ready", "starting"})
# Top-level fields the capabilities render to: a model with capabilities drops these metadata keys.
_CAPABILITY_FIELDS = frozenset({"architecture", "capabilities", "supported_parameters", "context_length"})


def model_records(config: Config, created: int, profile: ProfileConfig | None = None,
                  running: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The listing's records, sorted by id.

    ``running`` maps each model whose process is not stopped (nor shut down)
    to its state (``"starting"``, ``"ready"``, ``"stopping"``).
    """
    running = running or {}
    records = []
    for model_id, model in config.models.items():
        if model.unlisted:
            continue
        status = LOADED if model_id in running else UNLOADED
        described: dict[str, Any] = {"type": "model"}
        if model.aliases:
            described["aliases"] = list(model.aliases)
        fields = (model.name, model.description, model.metadata, model.capabilities, status)
        records.append(record(model_id, created, *fields, described))
        if config.include_aliases_in_list:
            records.extend(record(alias.strip(), created, *fields, {"type": "alias", "modelID": model_id})
                           for alias in model.aliases if alias.strip())
    for peer in config.peers.values():
        records.extend(record(f"{peer.id}/{model}", created, f"{peer.id}: {model}", "", None, None, UNLOADED,
                              {"type": "peer", "peerID": peer.id}) for model in peer.models)
    for selector in config.selectors.values():
        if not selector.unlisted:
            records.append(record(selector.id, created, selector.name, selector.description, selector.metadata,
                                  None, selector_status(config, selector, running), selector_described(selector)))
    if profile is not None:
        taken = taken_names(config)
        records.extend(record(pin, created, "", "", None, None, UNLOADED, {"type": "profile"})
                       for pin, target in profile.pins.items() if target and pin not in taken)
    records.sort(key=lambda r: r["id"])
    return records


def record(record_id: str, created: int, name: str, description: str, metadata: Mapping[str, Any] | None,
           capabilities: Mapping[str, Any] | None, status: str, described: Mapping[str, Any]) -> dict[str, Any]:
    """One listing record; ``described`` (what the listing says of the name) wins over ``metadata``."""
    out: dict[str, Any] = {"id": record_id, "object": "model", "created": created, "owned_by": "llama-swap"}
    if name.strip():
        out["name"] = name.strip()
    if description.strip():
        out["description"] = description.strip()
    own = thaw(metadata) if metadata else {}
    if capabilities:
        out.update(capability_fields(capabilities))
        own = {key: value for key, value in own.items() if key not in _CAPABILITY_FIELDS}
    meta: dict[str, Any] = {}
    if own or described:
        meta["llamaswap"] = {**own, **described}
    if "context_length" in out:
        meta["n_ctx"] = out["context_length"]
    if meta:
        out["meta"] = meta
    out["status"] = {"value": status}
    return out


def selector_described(selector: SelectorConfig) -> dict[str, Any]:
    described: dict[str, Any] = {"type": "selector", "strategy": selector.strategy,
                                 "targets": list(selector.targets)}
    if selector.strategy == "spillover":
        described["spillover"] = selector.spillover
    return described


def selector_status(config: Config, selector: SelectorConfig, running: Mapping[str, str]) -> str:
    """``loaded`` when a local target (the first only, for ``pin``) is ready or starting."""
    targets = selector.targets[:1] if selector.strategy == "pin" else selector.targets
    for target in targets:
        model = config.resolve(target)
        if model is not None and running.get(model) in _SELECTOR_WARM:
            return LOADED
    return UNLOADED


def taken_names(config: Config) -> set[str]:
    """Every name a pin may not be listed under: models, aliases, peer models and selectors, listed or not."""
    taken = set(config.models) | set(config.aliases) | set(config.selectors)
    for peer in config.peers.values():
        for model in peer.models:
            taken.add(f"{peer.id}/{model}")
            try:
                target = peers.lookup(config, model)
            except ModelNotFound:  # listed by two peers: the bare name reaches neither
                continue
            if target is not None and target.peer_id == peer.id:
                taken.add(model)
    return taken


def capability_fields(caps: Mapping[str, Any]) -> dict[str, Any]:
    """The record fields a model's ``capabilities`` block renders to (only the non-empty ones)."""
    inputs, outputs = list(caps.get("in", ())), list(caps.get("out", ()))
    fields: dict[str, Any] = {}
    architecture: dict[str, Any] = {}
    if inputs:
        architecture["input_modalities"] = inputs
    if outputs:
        architecture["output_modalities"] = outputs
    if inputs and outputs:
        architecture["modality"] = "+".join(inputs) + "->" + "+".join(outputs)
    if architecture:
        fields["architecture"] = architecture
    flags = {
        "vision": "image" in inputs,
        "audio_transcriptions": "audio" in inputs and "text" in outputs,
        "audio_speech": "text" in inputs and "audio" in outputs,
        "image_generation": "text" in inputs and "image" in outputs,
        "image_to_image": "image" in inputs and "image" in outputs,
        "function_calling": bool(caps.get("tools")),
        "reranker": bool(caps.get("reranker")),
    }
    if any(flags.values()):
        fields["capabilities"] = {flag: True for flag, on in flags.items() if on}
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
