"""The official SDKs against the real server: what a user of ``openai`` or ``anthropic`` sees.

The SDKs are pointed at llama-swap exactly as a user would (``base_url``,
any key); the simulated upstreams answer. Each test asserts what the SDK hands
back: text, the model, the streamed events.
"""

from __future__ import annotations

import base64
import hashlib
import os

import anthropic
import openai
import pytest

from tests.helpers.upstream import free_port_block
from tests.helpers.server import fake_cmd, module_server

TOKENS = "tok0 tok1 tok2 tok3 "


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sdk")
    config = f"""
healthCheckTimeout: 15
startPort: {free_port_block(3)}
models:
  qwen:
    cmd: {fake_cmd("qwen", workdir, "--tokens 4")}
    aliases: [gpt-4o-mini, claude-3-5-haiku]
  whisper:
    cmd: {fake_cmd("whisper", workdir)}
    useModelName: "whisper-large-v3"
  sd:
    cmd: {fake_cmd("sd", workdir)}
groups:
  all: {{swap: false, exclusive: false, members: [qwen, whisper, sd]}}
"""
    yield from module_server(workdir, config)


@pytest.fixture
def oai(server):
    with openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture
def claude(server):
    with anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=30) as client:
        yield client


def test_openai_chat(oai):
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "qwen"
    assert completion.choices[0].message.content == TOKENS
    assert completion.usage.completion_tokens == 4


def test_openai_chat_streamed(oai):
    stream = oai.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}],
                                         stream=True, stream_options={"include_usage": True})
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert pieces == [f"tok{i} " for i in range(4)]


def test_openai_embeddings(oai):
    result = oai.embeddings.create(model="qwen", input=["one", "two"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)


def test_openai_transcription_upload(oai):
    audio = os.urandom(300 * 1024)
    transcription = oai.audio.transcriptions.create(model="whisper", file=("a.wav", audio))
    # The upstream saw the model under its useModelName and every byte of the file.
    assert transcription.text == f"transcribed {len(audio)} bytes of a.wav with whisper-large-v3"
    assert transcription.model_extra["file"]["sha256"] == hashlib.sha256(audio).hexdigest()


def test_openai_image_generation(oai):
    images = oai.images.generate(model="sd", prompt="a lighthouse")
    assert len(images.data) == 1
    assert base64.b64decode(images.data[0].b64_json).startswith(b"\x89PNG")


def test_anthropic_message(claude):
    message = claude.messages.create(model="claude-3-5-haiku", max_tokens=3,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.model == "claude-3-5-haiku"
    assert [block.text for block in message.content] == ["tok0 tok1 tok2 "]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_anthropic_message_streamed(claude):
    with claude.messages.stream(model="qwen", max_tokens=5,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events if event.type != "text"]  # "text": the SDK's own per-delta event
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 5,
                     "content_block_stop", "message_delta", "message_stop"]
    assert [event.text for event in events if event.type == "text"] == [f"tok{i} " for i in range(5)]
    assert final.content[0].text == "tok0 tok1 tok2 tok3 tok4 " and final.model == "qwen"
    assert final.stop_reason == "max_tokens"


def test_anthropic_errors_reach_the_sdk_as_its_own_exceptions(claude):
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude.messages.create(model="nope", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["error"]["type"] == "not_found_error"
