"""The listing's pure parts, as Go's listing renders them: capability flags, a selector's status, pin shadowing."""

from __future__ import annotations

import textwrap

import pytest

from app.config import load_config_text
from app.naming.listing import capability_fields, model_records

CONFIG = load_config_text(textwrap.dedent("""
    models:
      gpt:
        cmd: server --port ${PORT}
        aliases: [gpt-alias]
      hidden:
        cmd: server --port ${PORT}
        unlisted: true
    peers:
      box:
        proxy: http://127.0.0.1:9
        models: [remote, shared]
      other:
        proxy: http://127.0.0.1:10
        models: [shared]
    selectors:
      warm:
        strategy: warm
        targets: [gpt-alias, box/remote]
      secret:
        strategy: pin
        targets: [gpt]
        unlisted: true
    profiles:
      p:
        pins: {gpt-alias: hidden, hidden: gpt, box/remote: gpt, remote: gpt, shared: gpt, secret: gpt, fresh: gpt}
"""))


@pytest.mark.parametrize("caps,flags", [
    ({"in": ["text"], "out": ["text"]}, None),  # a plain chat model has no flag: "capabilities" is left out
    ({"in": ["text", "image"], "out": ["text"]}, {"vision": True}),
    ({"in": ["audio"], "out": ["text"]}, {"audio_transcriptions": True}),
    ({"in": ["text"], "out": ["audio"]}, {"audio_speech": True}),
    ({"in": ["text"], "out": ["image"]}, {"image_generation": True}),
    ({"in": ["image"], "out": ["image"]}, {"vision": True, "image_to_image": True}),
    ({"out": ["audio"]}, None),  # speech needs text in
    ({"tools": True}, {"function_calling": True}),
    ({"reranker": True}, {"reranker": True}),
])
def test_capability_flags_are_gos(caps, flags):
    assert capability_fields(caps).get("capabilities") == flags


def test_architecture_names_a_modality_only_with_both_sides():
    assert capability_fields({"in": ["text"]}) == {"architecture": {"input_modalities": ["text"]}}
    assert capability_fields({"context": 4096}) == {"context_length": 4096}


def test_a_selector_is_loaded_when_a_target_is_ready_or_starting_through_an_alias_too():
    def status(running):
        return {r["id"]: r["status"]["value"] for r in model_records(CONFIG, 0, running=running)}["warm"]

    assert status({}) == "unloaded"
    assert status({"gpt": "starting"}) == "loaded"
    assert status({"gpt": "ready"}) == "loaded"
    assert status({"gpt": "stopping"}) == "unloaded"


def test_a_pin_is_listed_only_under_a_name_nothing_else_has():
    ids = {r["id"] for r in model_records(CONFIG, 0, CONFIG.profiles["p"])}
    # aliases, unlisted models, qualified and (one peer's) bare peer names, unlisted selectors are taken;
    # "shared" reaches two peers, so no peer has it.
    assert {"fresh", "shared"} <= ids
    assert not ids & {"hidden", "secret", "remote"}
