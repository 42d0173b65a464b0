"""The last config texts that loaded, kept where a worker gunicorn respawns can find them.

gunicorn respawns a worker that died (killed, out of memory); the new one
reads the config again. If the file is mid-edit then, the worker could not
boot and gunicorn's master would exit: the whole server gone for a typo. So
the texts of every config that loads (the master's at start, then each one
the worker serves) are written to ``$LLAMA_SWAP_LAST_GOOD`` (a file in a
directory the master made for this user alone, removed when it exits), and
a worker whose config does not load falls back to them, saying why
(``load_first``). With ``--watch-config`` the fixed file is applied as soon
as it is saved. Without that variable (the app built in-process, as tests and
``wsgi.py`` do) nothing is kept and a bad config fails as before.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from app import LAST_GOOD_ENV
from app.config import Config, ConfigError, ConfigSources, SourceTexts, load_texts, read_sources

log = logging.getLogger("llama-swap")


def remember(sources: ConfigSources, texts: SourceTexts) -> None:
    """Keep ``texts`` (a config of ``sources`` that loaded) for a respawned worker; never raises."""
    path = os.environ.get(LAST_GOOD_ENV)
    if not path:
        return
    record = {"sources": [sources.file, sources.directory], "texts": [list(pair) for pair in texts]}
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(path + ".tmp", path)  # a reader sees the old record or the new, never half of one
    except OSError as exc:
        log.warning("could not keep the config for a restarted worker in %s: %s", path, exc)


def recall(sources: ConfigSources) -> SourceTexts | None:
    """The texts ``remember`` kept for ``sources``; None when there are none."""
    path = os.environ.get(LAST_GOOD_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    if record.get("sources") != [sources.file, sources.directory]:
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
