"""A request's body: where it names its model, its size limits, and the body sent upstream.

Readers return the model name exactly as the client sent it (a JSON body's
``model``, a multipart form field, the query; resolving it is
``app.naming``'s job). ``Incoming`` holds that name with what was read, and
builds the body a model's (or a peer's) upstream receives: the ``model``
rewritten and the filters applied (``app.relay.filters``), re-serialised
only when something changed.

Multipart uploads are never held in memory whole. ``MultipartUpload.read``
reads the request stream only until the ``model`` field has been seen, keeping
what it read in a spool (``app.relay.spool``: memory up to 1 MB, disk beyond,
the disk written and read off the hub); the upstream then gets those bytes followed by the rest of the
client's stream, read as it is sent. Clients that put ``model`` before the file
(the OpenAI SDKs, curl ``-F model=... -F file=@...`` in that order) are
streamed straight through; a ``model`` after the file costs a pass through the
spool, bounded by ``MAX_BUFFERED`` (Go's llama-swap parses the whole form,
with 32 MB in memory and the rest on disk, and caps bodies at 250 MB).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Protocol

import gevent
from flask import Request
from gevent.exceptions import ConcurrentObjectUseError

from app import BODY_TIMEOUT_ENV, seconds_from_env
from app.config.model import ModelConfig, ModelFilters
from app.errors import ApiError, BadRequest, RequestTooLarge
from app.relay import filters
from app.relay.spool import Spool

CHUNK = 64 * 1024
MAX_BUFFERED = 250 * 1024 * 1024  # Go's MaxRequestBodySize
MAX_PART_HEADERS = 16 * 1024
MAX_MODEL_FIELD = 4 * 1024
# Seconds a request body may go without a byte before it is refused (408), as nginx's
# client_body_timeout: a client that stalls mid-body must not hold its connection for ever.
BODY_IDLE_TIMEOUT = seconds_from_env(BODY_TIMEOUT_ENV, 60.0)
WATCH_BACKOFF = 0.01  # seconds between looks at a socket the hang-up watch is peeking at


# --------------------------------------------------------------------------- JSON and query


def read_whole(req: Request) -> bytes:
    """A body that is read whole (a JSON one): at most ``MAX_BUFFERED`` bytes, framed as it says.

    The limit holds whether the client told the length or sent it chunked
    (read up to the limit, never past it). A body the server's reader
    cannot parse (a malformed chunk) or one that ends before its
    ``Content-Length`` is a 400.
    """
    length = req.content_length
    if length is not None and length > MAX_BUFFERED:
        raise RequestTooLarge(f"request body exceeds the {MAX_BUFFERED >> 20} MB limit")
    # One buffer grown in place (realloc remaps a big block rather than copy it) and handed out without a
    # copy (getvalue shares it): a body takes its size once, where a list of chunks joined took it twice.
    stream, body = ClientStream(req), io.BytesIO()
    try:
        while chunk := read_body(stream, CHUNK):
            if body.tell() + len(chunk) > MAX_BUFFERED:
                raise RequestTooLarge(f"request body exceeds the {MAX_BUFFERED >> 20} MB limit")
            body.write(chunk)
    except OSError as exc:  # the client went away mid-body
        raise BadRequest(f"request body could not be read: {exc}") from None
    size = body.tell()
    if length is not None and size < length:
        raise BadRequest(f"request body ended after {size} of its {length} bytes (Content-Length)")
    return body.getvalue()


class BodyTimeout(ApiError):
    status = 408


class Readable(Protocol):
    """What a body is read from: the client's stream (``ClientStream``) or a spool file."""

    def read(self, size: int) -> bytes: ...


class ClientStream:
    """A request's body as the client sends it, each read waiting at most ``BODY_IDLE_TIMEOUT`` for a byte.

    The limit is the client socket's own timeout (gunicorn's gevent worker
    exposes it as ``environ["gunicorn.socket"]``), set for the read and put
    back after it: the same socket's later waits (the hang-up watch, the
    next keep-alive request) keep theirs. Setting it costs well under a
    microsecond, where a timer per read cost ten.
    """

    __slots__ = ("_stream", "_sock")

    def __init__(self, req: Request):
        self._stream = req.stream
        self._sock = req.environ.get("gunicorn.socket")

    def read(self, size: int) -> bytes:
        sock = self._sock
        if sock is None:
            return self._stream.read(size)
        previous = sock.gettimeout()
        sock.settimeout(BODY_IDLE_TIMEOUT)
        try:
            return self._read(size)
        finally:
            sock.settimeout(previous)

    def _read(self, size: int) -> bytes:
        waited_until = time.monotonic() + BODY_IDLE_TIMEOUT
        while True:
            try:
                return self._stream.read(size)
            except ConcurrentObjectUseError:
                # The hang-up watch is peeking at this socket for a client that has sent nothing more
                # (gevent lets one greenlet wait on it); the watch ends at the next byte, so look again.
                if time.monotonic() >= waited_until:
                    raise TimeoutError from None
                gevent.sleep(WATCH_BACKOFF)


def read_body(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes of a request body; a body the server cannot parse (a malformed chunk) is a 400,
    one that sends nothing for ``BODY_IDLE_TIMEOUT`` seconds (a ``ClientStream``) a 408.

    The WSGI server's reader raises its own types for that (gunicorn's
    ``ParseException``s); an ``OSError`` (the client gone) passes as it is.
    """
    try:
        return stream.read(size)
    except TimeoutError:
        raise BodyTimeout(f"request body: nothing received for {BODY_IDLE_TIMEOUT:g}s") from None
    except OSError:
        raise
    except Exception as exc:
        raise BadRequest(f"request body could not be read: {exc}") from None


def model_from_json(body: bytes) -> tuple[str, dict[str, Any]]:
    """The model name and the parsed object of a JSON request body."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise BadRequest("request body is JSON nested too deeply") from None
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    name = payload.get("model")
    if not isinstance(name, str) or not name:
        raise BadRequest("missing or invalid 'model' key in request body")
    return name, payload


def model_from_query(args: Mapping[str, str]) -> str:
    name = args.get("model", "")
    if not name:
        raise BadRequest("missing required 'model' query parameter")
    return name


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON, key order kept, non-ASCII as UTF-8 (as Go's sjson leaves it)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- multipart


def multipart_boundary(content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("this endpoint expects multipart/form-data, Content-Type is "
                         f"{content_type or 'not set'}")
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if match is None:
        raise BadRequest("multipart/form-data without a boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


_PARAM = re.compile(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def is_model_field(headers: bytes) -> bool:
    """True for the part headers of a plain (not file) form field named ``model``."""
    for line in headers.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "content-disposition":
            continue
        params = {k.lower(): v.strip().strip('"') for k, v in _PARAM.findall(value)}
        return params.get("name") == "model" and "filename" not in params and "filename*" not in params
    return False


@dataclass
class _Scanner:
    """Finds the first ``model`` field in a multipart body fed to it chunk by chunk.

    Holds only what it still has to look at: part headers, and the last few
    bytes of a part's content (a delimiter may straddle two chunks), never
    the content of a file. Offsets are absolute positions in the body.
    """

    boundary: bytes
    state: str = "preamble"  # preamble | after_delimiter | headers | content
    buf: bytearray = field(default_factory=bytearray)
    offset: int = 0  # body offset of buf[0]
    in_model_field: bool = False
    found: tuple[int, int, bytes] | None = None  # (start, end, value) of the model field
    ended: bool = False

    @property
    def delimiter(self) -> bytes:
        return b"--" + self.boundary

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the model is found or the body has ended."""
        self.buf += data
        steps = {"preamble": self._preamble, "after_delimiter": self._after_delimiter,
                 "headers": self._headers, "content": self._content}
        while self.found is None and not self.ended:
            if not steps[self.state]():  # False: needs more bytes
                return False
        return True

    def _drop(self, count: int) -> None:
        if count > 0:
            del self.buf[:count]
            self.offset += count

    def _preamble(self) -> bool:
        index = self.buf.find(self.delimiter)
        if index < 0:
            self._drop(len(self.buf) - len(self.delimiter))
            return False
        self._drop(index + len(self.delimiter))
        self.state = "after_delimiter"
        return True

    def _after_delimiter(self) -> bool:
        if len(self.buf) < 2:
            return False
        if self.buf.startswith(b"--"):
            self.ended = True  # the closing delimiter: no model field
            return True
        end = self.buf.find(b"\r\n")
        if end < 0:
            if len(self.buf) > MAX_PART_HEADERS:
                raise BadRequest("malformed multipart body")
            return False
        self._drop(end + 2)
        self.state = "headers"
        return True

    def _headers(self) -> bool:
        if self.buf.startswith(b"\r\n"):
            end, skip = 0, 2  # a part without headers
        else:
            end, skip = self.buf.find(b"\r\n\r\n"), 4
        if end < 0:
            if len(self.buf) > MAX_PART_HEADERS:
                raise BadRequest("multipart part headers too long")
            return False
        self.in_model_field = is_model_field(bytes(self.buf[:end]))
        self._drop(end + skip)
        self.state = "content"
        return True

    def _content(self) -> bool:
        end = self.buf.find(b"\r\n" + self.delimiter)
        if end < 0:
            if self.in_model_field:
                if len(self.buf) > MAX_MODEL_FIELD:
                    raise BadRequest("the 'model' form field is too long")
            else:  # keep just enough to see a delimiter that straddles chunks
                self._drop(len(self.buf) - len(self.delimiter) - 2)
            return False
        if self.in_model_field:
            self.found = (self.offset, self.offset + end, bytes(self.buf[:end]))
            return True
        self._drop(end + 2 + len(self.delimiter))
        self.state = "after_delimiter"
        return True


class SizedBody:
    """An iterable request body of known length (requests then sends Content-Length, not chunked).

    gunicorn's request stream ends quietly when the client goes away; sending
    the upstream fewer bytes than announced would leave it (and the lease)
    waiting for the rest, so a short body raises instead.
    """

    def __init__(self, chunks: Iterable[bytes], length: int):
        self._chunks = chunks
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._chunks:
            sent += len(chunk)
            yield chunk
        if sent < self._length:
            raise OSError(f"client closed its request body with {self._length - sent} of "
                          f"{self._length} bytes unsent")

    def __len__(self) -> int:
        return self._length


def passthrough_body(stream: Readable, content_length: int | None,
                     chunked: bool) -> bytes | Iterable[bytes] | None:
    """A body sent upstream unread: sized when the client said its length, else chunked or none."""
    if content_length:
        return SizedBody(read_chunks(stream, content_length), content_length)
    if chunked:
        return read_chunks(stream, None)
    return b"" if content_length == 0 else None


def request_body(req: Request) -> bytes | Iterable[bytes] | None:
    """The body of a Flask request, to be relayed unread as the client framed it."""
    chunked = "chunked" in req.environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return passthrough_body(ClientStream(req), req.content_length, chunked)


class MultipartUpload:
    """A multipart request read up to its ``model`` field; the rest is still on the wire."""

    def __init__(self, stream: Readable, spool: Spool, found: tuple[int, int, bytes],
                 content_length: int | None):
        self._stream = stream
        self._spool = spool
        self._start, self._end, raw = found
        self.model = raw.decode("utf-8", errors="replace")
        self._content_length = content_length

    @classmethod
    def read(cls, stream: Readable, content_type: str, content_length: int | None) -> "MultipartUpload":
        scanner = _Scanner(multipart_boundary(content_type))
        spool = Spool()
        buffered = 0
        try:
            while scanner.found is None:
                chunk = read_body(stream, CHUNK)
                if not chunk:
                    break
                spool.write(chunk)
                buffered += len(chunk)
                if buffered > MAX_BUFFERED:
                    raise RequestTooLarge(f"the 'model' form field was not in the first "
                                          f"{MAX_BUFFERED >> 20} MB of the upload")
                if scanner.feed(chunk):
                    break
        except BaseException:
            spool.close()
            raise
        if scanner.found is None:
            spool.close()
            raise BadRequest("missing or invalid 'model' parameter in form data")
        return cls(stream, spool, scanner.found, content_length)

    def body(self, model: str | None = None) -> Iterable[bytes]:
        """The upload as it came, or with the ``model`` field's value replaced by ``model``."""
        value = None if model is None or model == self.model else model.encode("utf-8")
        chunks = self._chunks(value)
        if self._content_length is None:
            return chunks
        delta = 0 if value is None else len(value) - (self._end - self._start)
        return SizedBody(chunks, self._content_length + delta)

    def _chunks(self, value: bytes | None) -> Iterator[bytes]:
        try:
            self._spool.seek(0)
            if value is not None:
                yield from read_chunks(self._spool, self._start)
                yield value
                self._spool.seek(self._end)
            yield from read_chunks(self._spool, None)
            yield from read_chunks(self._stream, None)
        finally:
            self._spool.close()


def read_chunks(source: Readable, limit: int | None) -> Iterator[bytes]:
    """``source`` in chunks, up to ``limit`` bytes (None: to the end)."""
    left = limit
    while left is None or left > 0:
        chunk = read_body(source, CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


# --------------------------------------------------------------------------- what was read


@dataclass
class Incoming:
    """A request's model name as the client wrote it, and how to build the body to send."""

    name: str
    payload: dict[str, Any] | None = None  # a JSON body, parsed
    raw: bytes | None = None  # the JSON body as received
    upload: MultipartUpload | None = None  # a multipart body, read up to its model field
    unread: bytes | Iterable[bytes] | None = None  # any other body, streamed through as sent

    def upstream_body(self, model: ModelConfig, name: str) -> bytes | Iterable[bytes] | None:
        """The body for a local model's upstream.

        ``name`` is what the request resolved to (``app.naming``): when a pin
        or a selector replaced the client's name, the upstream sees the
        replacement, as if the client had asked for it (``useModelName``
        still wins).
        """
        sent_name = model.use_model_name or (name if name != self.name else "")
        return self.body(sent_name, name, model.filters)

    def body(self, sent_name: str, name: str, model_filters: ModelFilters) -> bytes | Iterable[bytes] | None:
        """The body to send, re-serialised only if a rewrite changed it.

        ``sent_name`` replaces the ``model`` value ("" leaves it; in an upload
        only the ``model`` field changes), ``model_filters`` apply to a JSON
        body, with the ``setParamsByID`` entry of ``name``.
        """
        if self.upload is not None:
            return self.upload.body(sent_name or None)
        if self.payload is None:
            return self.unread
        rewritten = filters.rewrite(self.payload, name, sent_name, model_filters)
        return self.raw if rewritten is None else encode_json(rewritten)
