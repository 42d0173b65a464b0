"""Finding the model in a multipart upload read chunk by chunk (``app.relay.body``)."""

from __future__ import annotations

import io
import os

import pytest

from app.errors import BadRequest
from app.relay.body import MultipartUpload, SizedBody, is_model_field, model_from_json, model_from_query

BOUNDARY = "XyZ-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, str | None, bytes], preamble: bytes = b"") -> bytes:
    out = [preamble]
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


class Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int):
        self._data, self._pos, self._step = data, 0, step

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk


def sent(body) -> bytes:
    return b"".join(body)


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("model_first", [True, False])
def test_the_model_is_found_and_the_body_passes_through_unchanged(step, model_first):
    file_part = ("file", "a.wav", os.urandom(200_000) + f"\r\n--{BOUNDARY}x".encode())  # a near-delimiter inside
    parts = [("model", None, b"llama-3"), ("language", None, b"en"), file_part]
    data = form(*(parts if model_first else parts[::-1]), preamble=b"ignored preamble\r\n")
    upload = MultipartUpload.read(Trickle(data, step), CONTENT_TYPE, len(data))
    assert upload.model == "llama-3"
    body = upload.body()
    assert isinstance(body, SizedBody) and len(body) == len(data)
    assert sent(body) == data


def test_the_model_field_can_be_replaced_and_the_length_follows():
    data = form(("file", "a.wav", b"\x00" * 1000), ("model", None, b"alias"))
    body = MultipartUpload.read(io.BytesIO(data), CONTENT_TYPE, len(data)).body("org/real-model")
    expected = data.replace(b"\r\n\r\nalias\r\n", b"\r\n\r\norg/real-model\r\n")
    assert len(body) == len(expected) and sent(body) == expected


def test_a_chunked_upload_has_no_length_upstream_either():
    data = form(("model", None, b"m"), ("file", "a", b"abc"))
    body = MultipartUpload.read(io.BytesIO(data), CONTENT_TYPE, None).body()
    assert not isinstance(body, SizedBody) and sent(body) == data


def test_a_file_named_model_is_not_the_model_field():
    data = form(("model", "model.bin", b"weights"), ("model", None, b"real"))
    assert MultipartUpload.read(io.BytesIO(data), CONTENT_TYPE, len(data)).model == "real"


@pytest.mark.parametrize("data,content_type,message", [
    (form(("file", "a", b"x")), CONTENT_TYPE, "model"),
    (b"", CONTENT_TYPE, "model"),
    (b"{}", "application/json", "multipart/form-data"),
    (b"", "multipart/form-data", "boundary"),
])
def test_uploads_without_a_model_are_bad_requests(data, content_type, message):
    with pytest.raises(BadRequest, match=message):
        MultipartUpload.read(io.BytesIO(data), content_type, len(data))


def test_quoted_boundaries_and_part_headers():
    data = form(("model", None, b"m"))
    assert MultipartUpload.read(io.BytesIO(data), f'multipart/form-data; boundary="{BOUNDARY}"', None).model == "m"
    assert is_model_field(b'Content-Disposition: form-data; name="model"\r\nContent-Type: text/plain')
    assert not is_model_field(b'Content-Disposition: form-data; name="model_name"')
    assert not is_model_field(b'Content-Disposition: form-data; name="model"; filename="x"')


def test_json_and_query_models():
    assert model_from_json(b'{"model": "a", "x": 1}') == ("a", {"model": "a", "x": 1})
    for bad in (b"nope", b"[1]", b'{"model": 7}', b'{"model": ""}', b"{}"):
        with pytest.raises(BadRequest):
            model_from_json(bad)
    assert model_from_query({"model": "a"}) == "a"
    with pytest.raises(BadRequest):
        model_from_query({})
