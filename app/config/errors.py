"""The one exception config loading raises, and how it names what is wrong."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be loaded.

    The message starts with the key path of the offending value when there is
    one (``models.llama.ttl: must be >= 0``), or with the file name and line
    for problems of the file itself (missing file, YAML syntax). ``key`` holds
    that path alone ("" when the problem has none).
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
