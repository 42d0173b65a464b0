"""The version string printed by ``--version``."""

__version__ = "0.1.0"
