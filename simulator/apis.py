"""The simulated upstream's answers beyond completions: Anthropic, Responses, audio, images, rerank, SDAPI.

Stdlib only and free of the rest of the project, like ``simulator.server``
(which owns the HTTP side and calls in here). Each endpoint is a pure-ish
function of the request: ``(Ctx, FakeRequest) -> Reply``; a reply is either a
whole body or a stream of SSE events (written by the caller one chunk per
event). Every answer names the model the request carried (falling back to
``--model``), so tests can see what reached the upstream: ``useModelName``,
filters, which alias was used. Uploads are parsed and described (size,
SHA-256, form fields), so a test can prove a file arrived intact.

Generated text is the same deterministic ``tok0 tok1 ...`` as completions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

JSON_TYPE = "application/json; charset=utf-8"

# A 1x1 transparent PNG: what every "generated image" is.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


class BadRequest(Exception):
    """Answered 400 by the caller."""


@dataclass(frozen=True)
class Ctx:
    """What an endpoint may know about the server it runs in."""

    model: str  # --model: named when a request names none
    created: int
    default_tokens: int
    token_delay: float
    next_id: Callable[[], int]
    text: Callable[[int], str]  # token i's text


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    events: Iterator[bytes] | None = None  # an SSE stream instead of ``body``
    headers: dict[str, str] = field(default_factory=dict)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=dumps(obj))


def sse(event: str | None, obj: Any) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + dumps(obj) + b"\n\n"


def json_body(req: FakeRequest) -> dict[str, Any]:
    try:
        body = json.loads(req.body or b"{}")
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def model_of(ctx: Ctx, body: Mapping[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else ctx.model


def tokens_for(ctx: Ctx, body: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return ctx.default_tokens


def words(value: Any) -> int:
    """Crude token count: words in every string inside ``value``."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(words(v) for v in value)
    if isinstance(value, dict):
        return sum(words(v) for k, v in value.items() if k in ("content", "text", "input", "prompt"))
    return 0


def generate(ctx: Ctx, n: int) -> Iterator[str]:
    for i in range(n):
        if ctx.token_delay > 0:
            time.sleep(ctx.token_delay)
        yield ctx.text(i)


# --------------------------------------------------------------------------- Anthropic


def messages(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    n = tokens_for(ctx, body, "max_tokens")
    msg_id, model, prompt_n = f"msg_{ctx.next_id()}", model_of(ctx, body), words(body.get("messages"))
    stop = "max_tokens" if n == body.get("max_tokens") else "end_turn"
    if body.get("stream"):
        return Reply(content_type="text/event-stream", events=_message_events(ctx, msg_id, model, prompt_n, n, stop))
    text = "".join(generate(ctx, n))
    return json_reply({
        "id": msg_id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": prompt_n, "output_tokens": n}})


def _message_events(ctx: Ctx, msg_id: str, model: str, prompt_n: int, n: int, stop: str) -> Iterator[bytes]:
    yield sse("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": prompt_n, "output_tokens": 0}}})
    yield sse("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
    for text in generate(ctx, n):
        yield sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": text}})
    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": n}})
    yield sse("message_stop", {"type": "message_stop"})


def count_tokens(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    return json_reply({"input_tokens": words(body.get("messages")) + words(body.get("system")),
                       "model": model_of(ctx, body)})


# --------------------------------------------------------------------------- OpenAI Responses


def responses(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    n = tokens_for(ctx, body, "max_output_tokens")
    resp_id, model, prompt_n = f"resp_{ctx.next_id()}", model_of(ctx, body), words(body.get("input"))

    def response(text: str, status: str) -> dict[str, Any]:
        output = [{"type": "message", "id": f"msg_{resp_id}", "status": status, "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}] if text else []
        return {"id": resp_id, "object": "response", "created_at": ctx.created, "status": status,
                "model": model, "output": output,
                "usage": {"input_tokens": prompt_n, "output_tokens": n if text else 0,
                          "total_tokens": prompt_n + (n if text else 0)}}

    if not body.get("stream"):
        return json_reply(response("".join(generate(ctx, n)), "completed"))

    def events() -> Iterator[bytes]:
        yield sse("response.created", {"type": "response.created", "response": response("", "in_progress")})
        parts = []
        for text in generate(ctx, n):
            parts.append(text)
            yield sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                     "item_id": f"msg_{resp_id}", "output_index": 0,
                                                     "content_index": 0, "delta": text})
        yield sse("response.completed", {"type": "response.completed",
                                          "response": response("".join(parts), "completed")})

    return Reply(content_type="text/event-stream", events=events())


# --------------------------------------------------------------------------- audio


def speech(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    text = str(body.get("input", ""))
    # An MP3-looking blob: an ID3 tag then bytes derived from the text.
    audio = b"ID3\x04\x00\x00\x00\x00\x00\x00" + hashlib.sha256(text.encode()).digest() * 32
    return Reply(body=audio, content_type="audio/mpeg", headers={"X-Received-Model": model_of(ctx, body)})


def voices(ctx: Ctx, req: FakeRequest) -> Reply:
    model = req.query.get("model") or model_of(ctx, json_body(req) if req.body else {})
    return json_reply({"model": model, "voices": [{"id": "alloy", "name": "Alloy"}, {"id": "echo", "name": "Echo"}]})


def transcriptions(ctx: Ctx, req: FakeRequest) -> Reply:
    fields, files = parse_multipart(req.content_type, req.body)
    model = fields.get("model") or ctx.model
    upload = describe_upload(files.get("file"))
    return json_reply({"text": f"transcribed {upload['size']} bytes of {upload['filename']} with {model}",
                       "model": model, "file": upload, "fields": fields})


def tasks_run(ctx: Ctx, req: FakeRequest) -> Reply:
    """audio.cpp's ``/v1/tasks/run``: echo the task (parsed and as the bytes received) with an output path."""
    body = json_body(req)
    return json_reply({"model": model_of(ctx, body), "path": req.path, "task": body.get("task"),
                       "status": "done", "output": f"/tmp/task-{ctx.next_id()}.wav", "received": body,
                       "raw": req.body.decode("utf-8", errors="replace")})


# --------------------------------------------------------------------------- images


def image_generations(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    n = body.get("n") if isinstance(body.get("n"), int) else 1
    return json_reply({"created": ctx.created, "model": model_of(ctx, body),
                       "data": [{"b64_json": base64.b64encode(PIXEL_PNG).decode(),
                                 "revised_prompt": body.get("prompt", "")} for _ in range(n)]})


def image_edits(ctx: Ctx, req: FakeRequest) -> Reply:
    fields, files = parse_multipart(req.content_type, req.body)
    return json_reply({"created": ctx.created, "model": fields.get("model") or ctx.model,
                       "data": [{"b64_json": base64.b64encode(PIXEL_PNG).decode()}],
                       "image": describe_upload(files.get("image") or files.get("image[]")),
                       "fields": fields})


def sd_generate(ctx: Ctx, req: FakeRequest) -> Reply:
    """sd.cpp's ``/sdapi/v1/txt2img`` and ``img2img``: base64 images, the parameters back."""
    body = json_body(req)
    count = body.get("batch_size") if isinstance(body.get("batch_size"), int) else 1
    info = {"model": model_of(ctx, body), "seed": body.get("seed", -1), "prompt": body.get("prompt", "")}
    return json_reply({"images": [base64.b64encode(PIXEL_PNG).decode()] * count,
                       "parameters": body, "info": json.dumps(info)})


def sd_loras(ctx: Ctx, req: FakeRequest) -> Reply:
    model = req.query.get("model") or ctx.model
    return json_reply([{"name": "detail-tweaker", "path": "/loras/detail-tweaker.safetensors", "model": model}])


# --------------------------------------------------------------------------- rerank


def rerank(ctx: Ctx, req: FakeRequest) -> Reply:
    body = json_body(req)
    query, documents = str(body.get("query", "")), body.get("documents")
    if not isinstance(documents, list):
        raise BadRequest("'documents' must be a list")
    query_words = set(query.lower().split())

    def score(doc: Any) -> float:
        doc_words = set(str(doc).lower().split())
        return round(len(query_words & doc_words) / (len(doc_words) or 1), 6)

    results = sorted(({"index": i, "relevance_score": score(d)} for i, d in enumerate(documents)),
                     key=lambda r: -r["relevance_score"])
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n >= 0:
        results = results[:top_n]
    n = len(query.split()) + sum(len(str(d).split()) for d in documents)
    return json_reply({"model": model_of(ctx, body), "object": "list", "results": results,
                       "usage": {"prompt_tokens": n, "total_tokens": n}})


# --------------------------------------------------------------------------- multipart


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Form fields and files (``name -> (filename, bytes)``) of a multipart/form-data body."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type or "")
    if match is None:
        raise BadRequest("expected multipart/form-data with a boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        part = part.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = _disposition(head.decode("latin-1"))
        name = disposition.get("name")
        if name is None:
            continue
        if "filename" in disposition:
            files.setdefault(name, (disposition["filename"], content))
        else:
            fields.setdefault(name, content.decode("utf-8", errors="replace"))
    return fields, files


def _disposition(head: str) -> dict[str, str]:
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            return {k.lower(): v.strip().strip('"')
                    for k, v in re.findall(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', value)}
    return {}


def describe_upload(upload: tuple[str, bytes] | None) -> dict[str, Any]:
    if upload is None:
        raise BadRequest("no file in the form")
    filename, content = upload
    return {"filename": filename, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}


# --------------------------------------------------------------------------- routing table

Endpoint = Callable[[Ctx, FakeRequest], Reply]

ROUTES: dict[str, dict[str, Endpoint]] = {
    "/v1/messages": {"POST": messages},
    "/v1/messages/count_tokens": {"POST": count_tokens},
    "/v1/responses": {"POST": responses},
    "/v1/audio/speech": {"POST": speech},
    "/v1/audio/voices": {"GET": voices, "POST": voices},
    "/v1/audio/transcriptions": {"POST": transcriptions},
    "/v1/images/generations": {"POST": image_generations},
    "/v1/images/edits": {"POST": image_edits},
    "/v1/rerank": {"POST": rerank},
    "/v1/reranking": {"POST": rerank},
    "/rerank": {"POST": rerank},
    "/reranking": {"POST": rerank},
    "/sdapi/v1/txt2img": {"POST": sd_generate},
    "/sdapi/v1/img2img": {"POST": sd_generate},
    "/sdapi/v1/loras": {"GET": sd_loras},
    "/v1/tasks/run": {"POST": tasks_run},
}
