"""simple-websocket's client, fixed for tests: a message that arrives together with the 101 is not left unread."""

from __future__ import annotations

import simple_websocket


class Client(simple_websocket.Client):
    def handshake(self) -> None:
        super().handshake()
        # The server may send right after accepting: those frames came in the
        # handshake's read, and the reader thread would only see them after
        # the next one.
        self.connected = self._handle_events()
