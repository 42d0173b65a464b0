"""Chunks that pile up are sent together; chunks that trickle in go out alone, unchanged."""

from __future__ import annotations

import json

import requests

from app.relay.batching import batched_chunks
from tests.helpers.upstream import running_fake_upstream


def stream(up, tokens: int) -> requests.Response:
    body = {"model": "m", "stream": True, "max_tokens": tokens, "messages": []}
    return requests.post(up.url("/v1/chat/completions"), data=json.dumps(body), stream=True, timeout=30)


def test_a_backlog_is_sent_in_fewer_writes_with_the_same_bytes():
    with running_fake_upstream("--model", "m") as up:
        expected = stream(up, 3000).content
        with stream(up, 3000) as response:
            pieces = list(batched_chunks(response))
    assert b"".join(pieces).replace(b"chatcmpl-2", b"chatcmpl-1") == expected
    assert expected.count(b"data: ") == 3003
    assert len(pieces) < 3003  # many events per write once they pile up


def test_tokens_that_trickle_in_are_each_sent_at_once():
    with running_fake_upstream("--model", "m", "--token-delay", "0.02") as up:
        with stream(up, 10) as response:
            pieces = list(batched_chunks(response))
    # Each token is written on its own; only the closing events, sent by the
    # upstream right after the last token, may share its write.
    assert [p.count(b'"content":"tok') for p in pieces if b'"content":"tok' in p] == [1] * 10
    assert all(p.count(b"data: ") == 1 for p in pieces[:9])


def test_the_first_event_goes_alone_even_with_a_backlog_behind_it():
    # A fast stream's first event must not wait while what follows it is read:
    # it is handed over alone, before the backlog is batched.
    with running_fake_upstream("--model", "m", "--prompt-delay", "0.05") as up:
        with stream(up, 3000) as response:
            pieces = batched_chunks(response)
            first = next(pieces)
            rest = list(pieces)
    assert first.count(b"data: ") == 1 and b'"role":"assistant"' in first
    assert len(rest) < 3002, "the backlog behind it is still batched"
