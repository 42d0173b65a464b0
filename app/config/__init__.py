"""llama-swap's YAML config, loaded once into frozen dataclasses.

``load_config(path)`` / ``load_config_text(text)`` / ``load_sources(ConfigSources(file,
directory))`` (``--config`` and ``--config-dir``; or in two steps, ``read_sources``
then ``load_texts``, when the texts matter too) return a ``Config`` or
raise ``ConfigError`` naming the key path (or file line) at fault. Nothing
outside this package reads the YAML. Module map: ``yamlio`` parses (and
replaces ``${env.X}``), ``expand`` expands macros in every value and assigns
ports, ``schema`` + ``fields`` check shapes and types, ``macros`` owns the
``${...}`` language, ``command`` splits cmd strings,
``build`` makes ModelConfigs, ``aliases``, ``routing`` (with
``matrix``, the set language), ``peers``
and ``virtual`` (profiles, selectors) the rest, ``sources`` lists the files of
``--config-dir`` and ``merge`` merges them, ``loader`` runs it all,
``model`` holds the dataclasses.
"""

from app.config.errors import ConfigError
from app.config.frozen import FrozenDict, thaw
from app.config.loader import SourceTexts, load_config, load_config_text, load_sources, load_texts, read_sources
from app.config.matrix import MatrixConfig, MatrixError, MatrixSet, expand_sets
from app.config.model import (
    Config, GroupConfig, ModelConfig, ModelFilters, PeerConfig, PeerFilters, Performance,
    ProfileConfig, SelectorConfig, Timeouts,
)
from app.config.sources import ConfigSources

__all__ = [
    "Config", "ConfigError", "ConfigSources", "FrozenDict", "GroupConfig", "MatrixConfig",
    "MatrixError", "MatrixSet", "ModelConfig", "ModelFilters", "PeerConfig", "PeerFilters", "Performance",
    "ProfileConfig", "SelectorConfig", "SourceTexts", "Timeouts", "expand_sets", "load_config",
    "load_config_text", "load_sources", "load_texts", "read_sources", "thaw",
]
