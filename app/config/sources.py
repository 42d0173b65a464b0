"""Which files make up a config: ``--config FILE``, ``--config-dir DIR``, or both, and reading them.

As Go's ``-config-dir`` (llama-swap #873): the directory contributes the
``*.yml`` and ``*.yaml`` files directly in it (not its subdirectories; a
hidden file counts; a symlink to a file counts), in sorted file-name order,
after the ``--config`` file. The ``--config`` file may not also be one of the
directory's files. Merging their contents is ``app.config.merge``'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from app.config.errors import ConfigError

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class ConfigSources:
    """The config file and the fragment directory the command line named; at least one is set."""

    file: str | None = None
    directory: str | None = None

    def __str__(self) -> str:
        return " + ".join(part for part in (self.file, self.directory) if part)


def yaml_files(directory: str) -> list[str]:
    """The ``*.yml`` / ``*.yaml`` files directly in ``directory``, sorted; OSError if it cannot be listed."""
    with os.scandir(directory) as entries:
        names = [entry.name for entry in entries
                 if entry.name.endswith(YAML_SUFFIXES) and not entry.is_dir(follow_symlinks=False)]
    return [os.path.join(directory, name) for name in sorted(names)]


def source_paths(sources: ConfigSources) -> list[str]:
    """The files to merge, in merge order; ConfigError with Go's message when there are none or they overlap."""
    paths = [sources.file] if sources.file else []
    if sources.directory:
        try:
            in_directory = yaml_files(sources.directory)
        except OSError as err:
            raise ConfigError(f"-config-dir {sources.directory}: "
                              f"{err.strerror or err}") from None
        if sources.file and os.path.abspath(sources.file) in map(os.path.abspath, in_directory):
            raise ConfigError(f"-config path {sources.file} is also present in -config-dir "
                              f"{sources.directory}; remove it from one")
        paths += in_directory
    if not paths:
        raise ConfigError(f"no configuration sources found (no *.yml or *.yaml files in "
                          f"{sources.directory})")
    return paths


def read_text(path: str) -> str:
    """The text of the config file at ``path``; ConfigError if it cannot be read as UTF-8."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 ({err.reason})") from None
