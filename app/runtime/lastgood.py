"""The last config texts that loaded, kept where a worker gunicorn respawns can find them.

gunicorn respawns a worker that died (killed, out of memory); the new one
reads the config again. If the file is mid-edit then, the worker could not
boot and gunicorn's master would exit: the whole server gone for a typo. So
the texts of every config that loads (the master's at start, then each one
the worker serves) are kept, and a worker whose config does not load falls
back to them, saying why (``load_first``). With ``--watch-config`` the fixed
file is applied as soon as it is saved.

Where: a file the master opened and unlinked at once (so nothing is left
behind however the processes end), its descriptor named by
``$LLAMA_SWAP_LAST_GOOD`` and inherited by every worker it forks. The file
holds a 16-byte header (offset and length of the record in force) and
records (JSON): a new record is written where it overlaps nothing of the one
in force, and only then does the header point to it, so a worker killed
mid-write leaves the previous record in force. Without that variable (the
app built in-process, as tests and ``wsgi.py`` do) nothing is kept and a bad
config fails as before.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass

from app import LAST_GOOD_ENV
from app.config import Config, ConfigError, ConfigSources, SourceTexts, load_texts, read_sources

log = logging.getLogger("llama-swap")

HEADER = struct.Struct("<QQ")  # offset, length of the record in force (0, 0: none yet)


def _store() -> int | None:
    value = os.environ.get(LAST_GOOD_ENV, "")
    return int(value) if value.isdigit() else None


def _in_force(fd: int) -> tuple[int, int]:
    header = os.pread(fd, HEADER.size, 0)
    return HEADER.unpack(header) if len(header) == HEADER.size else (0, 0)


def remember(sources: ConfigSources, texts: SourceTexts) -> None:
    """Keep ``texts`` (a config of ``sources`` that loaded) for a respawned worker; never raises."""
    fd = _store()
    if fd is None:
        return
    record = json.dumps({"sources": [sources.file, sources.directory],
                         "texts": [list(pair) for pair in texts]}).encode()
    try:
        offset, length = _in_force(fd)
        fits_before = length == 0 or HEADER.size + len(record) <= offset
        start = HEADER.size if fits_before else offset + length
        os.pwrite(fd, record, start)
        os.pwrite(fd, HEADER.pack(start, len(record)), 0)  # the switch: one small write
        os.ftruncate(fd, start + len(record))  # whatever lies beyond is no record any more
    except OSError as exc:
        log.warning("could not keep the config for a restarted worker: %s", exc)


def recall(sources: ConfigSources) -> SourceTexts | None:
    """The texts ``remember`` kept for ``sources``; None when there are none."""
    fd = _store()
    if fd is None:
        return None
    try:
        offset, length = _in_force(fd)
        record = json.loads(os.pread(fd, length, offset)) if length else None
    except (OSError, ValueError):
        return None
    if not record or record.get("sources") != [sources.file, sources.directory]:
        return None
    return tuple((path, text) for path, text in record["texts"])


@dataclass(frozen=True)
class Loaded:
    """A config, the texts it came from, and why they are the last good ones rather than the files' (if so)."""

    config: Config
    texts: SourceTexts
    fallback_reason: str | None = None


def load_first(sources: ConfigSources) -> Loaded:
    """The config to start with: the files', else the last one that loaded; ConfigError when neither."""
    try:
        texts = read_sources(sources)
        config = load_texts(sources, texts)
    except ConfigError as exc:
        kept = recall(sources)
        if kept is None:
            raise
        return Loaded(load_texts(sources, kept), kept, str(exc))
    remember(sources, texts)
    return Loaded(config, texts)
