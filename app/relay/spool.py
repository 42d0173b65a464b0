"""An upload's buffered prefix: in memory up to a bound, on disk beyond, the disk touched only off the hub.

``MultipartUpload`` (``app.relay.body``) keeps what it read before the
``model`` field, up to 250 MB. A write to a file blocks the thread that
makes it (for as long as the disk takes, and much longer on a busy or
network disk); made on the gevent hub, it would stall every request. So
``Spool`` gathers writes in memory and, once more than ``max_in_memory``
bytes are waiting, hands them to a thread (``app.offload``) in one write;
creating the file, every read back and closing it go the same way. Memory
stays under ``max_in_memory`` plus one write.

Append-only: ``write`` adds at the end, ``seek`` / ``read`` read back.
"""

from __future__ import annotations

import tempfile
from typing import IO, Callable, TypeVar

from app.offload import in_threadpool

T = TypeVar("T")
SPOOL_IN_MEMORY = 1024 * 1024  # bytes kept in RAM before they go to disk


class Spool:
    """Bytes written once, then read back from any offset; a disk file only past ``max_in_memory``."""

    def __init__(self, max_in_memory: int = SPOOL_IN_MEMORY,
                 offload: Callable[[Callable[[], T]], T] = in_threadpool):
        self._max_in_memory = max_in_memory
        self._offload = offload
        self._buffer = bytearray()  # written and not yet on disk (everything, while there is no file)
        self._file: IO[bytes] | None = None
        self._position = 0

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._max_in_memory:
            self._spill()

    def seek(self, position: int) -> None:
        if self._file is not None and self._buffer:
            self._spill()  # once there is a file, everything is read from it
        self._position = position

    def read(self, size: int) -> bytes:
        if self._file is None:
            data = bytes(self._buffer[self._position:self._position + size])
        else:
            data = self._offload(lambda: self._read_file(self._position, size))
        self._position += len(data)
        return data

    def close(self) -> None:
        file, self._file, self._buffer = self._file, None, bytearray()
        if file is not None:
            self._offload(file.close)

    def _spill(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        self._offload(lambda: self._append_to_file(data))

    def _append_to_file(self, data: bytes) -> None:  # on a thread
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        self._file.seek(0, 2)
        self._file.write(data)

    def _read_file(self, position: int, size: int) -> bytes:  # on a thread
        self._file.seek(position)
        return self._file.read(size)
