"""Finding the model in a multipart upload read chunk by chunk, and reading a JSON body whole (``app.relay.body``)."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
import tracemalloc

import gevent
import pytest

from app.errors import BadRequest, RequestTooLarge
from app.relay import body as body_module
from app.relay.body import (
    ClientStream, MultipartUpload, SizedBody, is_model_field, model_from_json, model_from_query, read_whole,
)

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


# --------------------------------------------------------------------------- a body read whole


class FakeRequest:
    """What ``read_whole`` reads of a Flask request: its stream, its Content-Length, no client socket."""

    def __init__(self, stream, content_length: int | None):
        self.stream, self.content_length = stream, content_length
        self.environ: dict = {}


class EndlessStream(io.RawIOBase):
    """A chunked upload that never ends; counts what was read of it."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        self.read_bytes += size
        return b"x" * size


class BadChunk(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise ValueError("Invalid chunk size: b'zz'")  # as gunicorn's ParseException would


def test_a_body_without_a_length_is_read_only_up_to_the_limit(monkeypatch):
    monkeypatch.setattr(body_module, "MAX_BUFFERED", 1 << 20)
    stream = EndlessStream()
    with pytest.raises(RequestTooLarge):
        read_whole(FakeRequest(stream, None))
    assert stream.read_bytes <= (1 << 20) + body_module.CHUNK


def test_a_told_length_over_the_limit_is_refused_before_reading(monkeypatch):
    monkeypatch.setattr(body_module, "MAX_BUFFERED", 1 << 20)
    stream = EndlessStream()
    with pytest.raises(RequestTooLarge):
        read_whole(FakeRequest(stream, (1 << 20) + 1))
    assert stream.read_bytes == 0


class FreshChunks(io.RawIOBase):
    """A body of ``size`` bytes whose every read is a new object, as a socket's are."""

    def __init__(self, size: int):
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = min(size, self.left)
        self.left -= size
        return bytes(size)


def test_a_body_read_whole_takes_its_size_in_memory_once():
    size = 32 << 20
    stream = FreshChunks(size)
    tracemalloc.start()
    try:
        body = read_whole(FakeRequest(stream, None))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(body) == size
    assert peak < 1.3 * size, f"reading {size >> 20} MB took {peak >> 20} MB at its peak"


def test_a_body_shorter_than_its_length_or_unreadable_is_a_bad_request():
    with pytest.raises(BadRequest, match="ended after 2 of its 10 bytes"):
        read_whole(FakeRequest(io.BytesIO(b"{}"), 10))
    with pytest.raises(BadRequest, match="could not be read: Invalid chunk size"):
        read_whole(FakeRequest(BadChunk(), None))
    assert read_whole(FakeRequest(Trickle(b'{"model": "m"}', 3), 14)) == b'{"model": "m"}'


def test_json_nested_too_deeply_is_a_bad_request():
    with pytest.raises(BadRequest, match="nested too deeply"):
        model_from_json(b"[" * 100_000 + b"]" * 100_000)



class SilentClient:
    """A request whose client sent part of its body and then nothing, over a real socket."""

    def __init__(self, first: bytes, length: int | None = 100):
        self.ours, self.client = socket.socketpair()
        self.client.sendall(first)
        self.stream = self.ours.makefile("rb")
        self.environ = {"gunicorn.socket": self.ours}
        self.content_length = length

    def close(self) -> None:
        self.stream.close()
        self.ours.close()
        self.client.close()


@pytest.mark.parametrize("read", [
    read_whole,
    lambda req: MultipartUpload.read(ClientStream(req), CONTENT_TYPE, None),
], ids=["json", "upload"])
def test_a_body_silent_for_the_idle_timeout_is_a_408_and_the_socket_keeps_its_own_timeout(monkeypatch, read):
    monkeypatch.setattr(body_module, "BODY_IDLE_TIMEOUT", 0.05)
    req = SilentClient(b'{"model": "A"')
    try:
        with pytest.raises(body_module.BodyTimeout) as refused:
            read(req)
        assert refused.value.status == 408
        assert "nothing received for 0.05s" in str(refused.value)
        assert req.ours.gettimeout() is None  # the hang-up watch's later wait is not bounded by it
    finally:
        req.close()


class SlowDisk:
    """A temporary file whose every write blocks its thread for ``delay`` seconds, as a busy disk does."""

    def __init__(self, real_file, delay: float):
        self._file, self._delay = real_file, delay

    def write(self, data: bytes) -> int:
        time.sleep(self._delay)  # blocks the OS thread, as a real write does (no greenlet switch)
        return self._file.write(data)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._file, name)


def test_spooling_a_big_upload_to_disk_leaves_the_hub_free_and_the_body_intact(monkeypatch):
    real_temporary_file = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: SlowDisk(real_temporary_file(*a, **k), 0.05))
    content = os.urandom(3 << 20)  # 3 MB before the model field: 2 MB of it on disk
    data = form(("file", "big.bin", content), ("model", None, b"alias"))
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    def upload_and_send() -> bytes:
        return sent(MultipartUpload.read(io.BytesIO(data), CONTENT_TYPE, len(data)).body("org/real"))

    watch = gevent.spawn(ticker)
    gevent.sleep(0)
    began = time.monotonic()
    got = gevent.spawn(upload_and_send).get(timeout=30)
    ended = time.monotonic()
    watch.kill()
    assert got == data.replace(b"\r\n\r\nalias\r\n", b"\r\n\r\norg/real\r\n")
    marks = [began] + [t for t in ticks if began < t < ended] + [ended]
    longest = max(b - a for a, b in zip(marks, marks[1:]))
    assert longest < 0.5, f"the hub was held {longest:.2f}s at once by disk writes"
