"""Captures: the request and response of an activity record, kept compressed within a byte budget.

``captureBuffer`` (MB; 0 disables) is the budget for all captures together,
counted in compressed bytes. A new capture evicts the oldest ones until it
fits; one larger than the whole budget is not kept. Records know nothing of
this: whether a record's capture is still here (``has``) is asked when the
record is read, since eviction can take it at any time.

Which parts are kept depends on the route (llama-swap's masks: an audio or
image body is not worth its bytes), and secrets never are: the credential
headers (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
``Set-Cookie``, ``x-api-key``: also every header a peer is sent its key in)
read ``[REDACTED]``, those the API-key check took out of the request
(``STRIPPED_CREDENTIALS``) included. A response's ``Content-Encoding`` is dropped: its body
is kept decoded. A failed request keeps its request parts only.

A capture is one ``zlib`` blob: a JSON head (id, path, headers) and the two
bodies, length-prefixed.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

from app.observe.redact import redacted_headers

MB = 1024 * 1024
COMPRESSION = 1  # zlib level: fast; captures are read rarely
RAW_LIMIT_FACTOR = 4  # bodies larger than this many budgets are not even compressed

REQ_HEADERS, REQ_BODY, RESP_HEADERS, RESP_BODY = 1, 2, 4, 8
ALL = REQ_HEADERS | REQ_BODY | RESP_HEADERS | RESP_BODY
MASKS = {
    "/v1/audio/speech": REQ_HEADERS | REQ_BODY | RESP_HEADERS,
    "/v1/audio/voices": REQ_HEADERS | RESP_HEADERS | RESP_BODY,
    "/v1/audio/transcriptions": REQ_HEADERS | RESP_HEADERS | RESP_BODY,
    "/v1/images/generations": REQ_HEADERS | REQ_BODY | RESP_HEADERS,
    "/v1/images/edits": REQ_HEADERS | RESP_HEADERS,
    "/sdapi/v1/txt2img": REQ_HEADERS | REQ_BODY | RESP_HEADERS,
    "/sdapi/v1/img2img": REQ_HEADERS | RESP_HEADERS,
}


def mask_for(route: str) -> int:
    """Which parts of an exchange on ``route`` (a model-dispatched path) are captured."""
    return MASKS.get(route, ALL)


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """First value of each header, credentials redacted, ``Content-Encoding`` left out."""
    return redacted_headers(headers, leave_out=frozenset({"content-encoding"}))


@dataclass(frozen=True)
class Capture:
    id: int
    req_path: str
    req_headers: dict[str, str] | None = None
    req_body: bytes | None = None
    resp_headers: dict[str, str] | None = None
    resp_body: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """``GET /api/captures/<id>``'s document: bodies in base64, absent parts null."""
        return {"id": self.id, "req_path": self.req_path, "req_headers": self.req_headers,
                "req_body": _b64(self.req_body), "resp_headers": self.resp_headers,
                "resp_body": _b64(self.resp_body)}


def _b64(body: bytes | None) -> str | None:
    return None if body is None else base64.b64encode(body).decode("ascii")


_LENGTHS = struct.Struct("!iii")  # head, request body, response body (-1: none)


def pack(capture: Capture) -> bytes:
    head = json.dumps({"id": capture.id, "req_path": capture.req_path, "req_headers": capture.req_headers,
                       "resp_headers": capture.resp_headers}, separators=(",", ":")).encode()
    req, resp = capture.req_body, capture.resp_body
    lengths = _LENGTHS.pack(len(head), -1 if req is None else len(req), -1 if resp is None else len(resp))
    return zlib.compress(b"".join((lengths, head, req or b"", resp or b"")), COMPRESSION)


def unpack(blob: bytes) -> Capture:
    raw = zlib.decompress(blob)
    head_len, req_len, resp_len = _LENGTHS.unpack_from(raw)
    at = _LENGTHS.size
    head = json.loads(raw[at:at + head_len])
    at += head_len
    req = None if req_len < 0 else raw[at:at + req_len]
    at += max(req_len, 0)
    resp = None if resp_len < 0 else raw[at:at + resp_len]
    return Capture(head["id"], head["req_path"], head["req_headers"], req, head["resp_headers"], resp)


class CaptureCache:
    """Compressed captures by activity id, oldest evicted first, within ``budget`` bytes (0: disabled)."""

    def __init__(self, budget: int = 5 * MB):
        self.budget = max(0, budget)
        self._blobs: OrderedDict[int, bytes] = OrderedDict()
        self._size = 0

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    @property
    def size(self) -> int:
        return self._size

    def add(self, capture: Capture) -> bool:
        """Keep ``capture`` (evicting the oldest to make room); False when disabled or it is too large."""
        if not self.enabled:
            return False
        raw = sum(len(part) for part in (capture.req_body, capture.resp_body) if part)
        if raw > RAW_LIMIT_FACTOR * self.budget:
            return False  # could not fit even compressed: not worth compressing (on the hub) to find out
        blob = pack(capture)
        if len(blob) > self.budget:
            return False
        self.discard(capture.id)
        while self._size + len(blob) > self.budget:
            _, oldest = self._blobs.popitem(last=False)
            self._size -= len(oldest)
        self._blobs[capture.id] = blob
        self._size += len(blob)
        return True

    def discard(self, id: int) -> None:
        blob = self._blobs.pop(id, None)
        if blob is not None:
            self._size -= len(blob)

    def has(self, id: int) -> bool:
        return id in self._blobs

    def get(self, id: int) -> Capture | None:
        blob = self._blobs.get(id)
        return None if blob is None else unpack(blob)
