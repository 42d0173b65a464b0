"""A client of ``/api/events`` for tests: reads the SSE stream in a thread, keeps every message decoded."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Callable

import requests

from tests.helpers.server import hang_up, wait_for


@dataclass(frozen=True)
class FeedMessage:
    id: str
    type: str
    data: Any  # the envelope's ``data``, JSON-decoded (llama-swap double-encodes it)


class EventsClient:
    """Connects on construction; ``close()`` hangs up. ``messages`` grows as they arrive."""

    def __init__(self, url: str, last_event_id: str | None = None, headers: dict[str, str] | None = None):
        headers = dict(headers or {})
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(url, headers=headers, stream=True, timeout=30)
        self.response.raise_for_status()
        self.messages: list[FeedMessage] = []
        self.comments: list[str] = []
        self._lines = self.response.iter_lines(decode_unicode=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self._lines:
                if line == "":
                    if "data" in fields:
                        envelope = json.loads(fields["data"])
                        self.messages.append(FeedMessage(fields.get("id", ""), envelope["type"],
                                                         json.loads(envelope["data"])))
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass  # closed under the reader

    def of_type(self, type_: str) -> list[FeedMessage]:
        return [m for m in self.messages if m.type == type_]

    def wait_for(self, predicate: Callable[[list[FeedMessage]], bool], what: str, timeout: float = 10) -> None:
        wait_for(lambda: predicate(list(self.messages)), timeout=timeout, what=what)

    @property
    def last_id(self) -> str:
        return self.messages[-1].id

    def close(self) -> None:
        hang_up(self.response)
        self._thread.join(timeout=5)

    def __enter__(self) -> "EventsClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
