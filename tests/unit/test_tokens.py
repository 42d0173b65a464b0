"""Token metrics from JSON answers and SSE streams, and the bounded sample they are read from."""

from __future__ import annotations

import gzip
import json

from app.observe import tokens
from app.observe.tokens import BodySample, read_json, read_sse


def sse(*events: dict, name: str | None = None) -> bytes:
    out = b""
    for event in events:
        if name:
            out += f"event: {name}\n".encode()
        out += b"data: " + json.dumps(event).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_openai_usage_in_a_json_answer_with_unknown_rates_and_cache():
    reading = read_json(json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 34}}).encode())
    t = reading.tokens
    assert (t.input_tokens, t.output_tokens, t.cache_tokens) == (12, 34, -1)
    assert (t.prompt_per_second, t.tokens_per_second, t.draft_tokens, t.draft_acc_tokens) == (-1, -1, -1, -1)
    assert reading.upstream_ms is None


def test_llama_cpp_timings_override_usage_and_give_rates_cache_drafts_and_duration():
    body = {"usage": {"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 3}},
            "timings": {"prompt_n": 20, "predicted_n": 40, "prompt_per_second": 500.0,
                        "predicted_per_second": 50.5, "prompt_ms": 40.0, "predicted_ms": 792.4, "cache_n": 7,
                        "draft_n": 10, "draft_n_accepted": 8}}
    reading = read_json(json.dumps(body).encode())
    assert reading.tokens == tokens.TokenMetrics(7, 20, 40, 500.0, 50.5, 10, 8)
    assert reading.upstream_ms == 832


def test_infill_takes_the_timings_of_the_arrays_last_element():
    body = [{"content": "a", "timings": {"prompt_n": 1, "predicted_n": 1}},
            {"content": "b", "timings": {"prompt_n": 5, "predicted_n": 9, "prompt_per_second": 1.0,
                                         "predicted_per_second": 2.0}}]
    reading = read_json(json.dumps(body).encode(), infill=True)
    assert (reading.tokens.input_tokens, reading.tokens.output_tokens) == (5, 9)
    assert read_json(json.dumps(body).encode(), infill=False) is None


def test_vllm_metrics_give_rates_from_ttft_and_itl_and_drafts_when_both_are_reported():
    body = {"usage": {"prompt_tokens": 110, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 10}},
            "metrics": {"time_to_first_token_ms": 200.0, "mean_itl_ms": 20.0,
                        "speculative_decoding": {"num_draft_tokens": 30, "num_accepted_draft_tokens": 21}}}
    t = read_json(json.dumps(body).encode()).tokens
    assert t.prompt_per_second == 500.0  # (110 - 10) / 0.2 s
    assert t.tokens_per_second == 50.0
    assert (t.draft_tokens, t.draft_acc_tokens, t.cache_tokens) == (30, 21, 10)
    half = {"usage": body["usage"], "metrics": {"speculative_decoding": {"num_draft_tokens": 30}}}
    assert read_json(json.dumps(half).encode()).tokens.draft_tokens == -1


def test_an_answer_without_usage_or_not_json_reads_nothing():
    assert read_json(b'{"data": []}') is None
    assert read_json(b"not json") is None
    assert read_sse(b"data: {\"choices\": []}\n\ndata: [DONE]\n\n") is None


def test_openai_stream_usage_and_timings_in_the_last_chunk():
    body = sse({"choices": [{"delta": {"content": "hi"}}]},
               {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 16},
                "timings": {"prompt_n": 3, "predicted_n": 16, "prompt_per_second": 2000.0,
                            "predicted_per_second": 1000.0, "prompt_ms": 1.5, "predicted_ms": 16.0, "cache_n": 0}})
    t = read_sse(body).tokens
    assert (t.input_tokens, t.output_tokens, t.cache_tokens, t.tokens_per_second) == (3, 16, 0, 1000.0)


def test_anthropic_stream_input_from_message_start_output_from_message_delta():
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1,
                                                            "cache_read_input_tokens": 5}}}
    deltas = [{"type": "content_block_delta", "delta": {"text": f"t{i}"}} for i in range(3)]
    end = {"type": "message_delta", "usage": {"output_tokens": 42}}
    t = read_sse(sse(start, *deltas, end, name="x")).tokens
    assert (t.input_tokens, t.output_tokens, t.cache_tokens) == (25, 42, 5)


def test_responses_stream_usage_at_response_usage():
    done = {"type": "response.completed", "response": {"usage": {
        "input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}}}}
    t = read_sse(sse({"type": "response.created", "response": {}}, done)).tokens
    assert (t.input_tokens, t.output_tokens, t.cache_tokens) == (9, 4, 2)


def test_sample_of_a_short_body_is_the_whole_body():
    sample = BodySample(8, 16)
    for part in (b"abc", b"defgh", b"ijk", b"lmnop"):
        sample.add(part)
    assert sample.body() == b"abcdefghijklmnop" and not sample.gap


def test_sample_keeps_a_bounded_head_and_tail_of_a_long_stream():
    head_events = sse({"type": "message_start", "message": {"usage": {"input_tokens": 25}}})
    middle = [b"data: " + json.dumps({"delta": "x" * 50, "n": i}).encode() + b"\n\n" for i in range(5000)]
    tail_events = sse({"type": "message_delta", "usage": {"output_tokens": 5000}})
    sample = tokens.stream_sample()
    for chunk in [head_events, *middle, tail_events]:
        sample.add(chunk)
    body = sample.body()
    assert sample.gap
    assert len(body) <= tokens.STREAM_HEAD + tokens.STREAM_TAIL + 200  # the last chunk kept may overhang
    t = read_sse(body).tokens
    assert (t.input_tokens, t.output_tokens) == (25, 5000)


def test_a_json_body_over_the_bound_is_marked_as_cut():
    sample = BodySample(10, 0)
    sample.add(b'{"usage": ')
    sample.add(b'{"prompt_tokens": 1}}')
    assert sample.gap and sample.body().startswith(b'{"usage": ')


def test_decoded_undoes_gzip_and_deflate_and_refuses_garbage():
    assert tokens.decoded(gzip.compress(b"hello"), "gzip") == b"hello"
    import zlib
    assert tokens.decoded(zlib.compress(b"hello"), "deflate") == b"hello"
    assert tokens.decoded(b"hello", "") == b"hello"
    assert tokens.decoded(b"hello", "gzip") is None
