"""The lifecycle states of one upstream process, shared by every scheduler module."""

from __future__ import annotations

from enum import Enum


class ProcessState(str, Enum):
    """Where an upstream process is in its life; ``SHUTDOWN`` is terminal."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"

    def __str__(self) -> str:
        return self.value
