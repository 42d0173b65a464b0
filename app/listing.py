"""The OpenAI-style model listing (``/v1/models``, ``/models``): one record per listed name.

Pure: config in, JSON-ready records out. A record is
``{"id", "object": "model", "created", "owned_by": "llama-swap"}`` plus, when
set, ``name``, ``description``, ``meta: {"llamaswap": <metadata>}`` (metadata
keeps the JSON types config gave it) and the fields rendered from
``capabilities``. Unlisted models are left out (they are still served). With
``includeAliasesInList`` every alias (``setParamsByID`` keys included, they
are aliases too) gets a copy of its model's record under its own id. Records
are sorted by id.

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
from typing import Any

from app.config import Config
from app.config.model import ModelConfig
from app.filters import thaw


def model_records(config: Config, created: int) -> list[dict[str, Any]]:
    records = []
    for model in config.models.values():
        if model.unlisted:
            continue
        records.append(model_record(model.id, model, created))
        if config.include_aliases_in_list:
            records.extend(model_record(alias, model, created)
                           for alias in model.aliases if alias.strip())
    records.sort(key=lambda r: r["id"])
    return records


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
