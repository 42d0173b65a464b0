"""HTTP in and out: the Flask app, its blueprints, config loading and the CLI.

``create_app`` is imported lazily so that importing a submodule (``app.config``
in a unit test) does not pay for Flask's import.
"""

from __future__ import annotations

from typing import Any

# The config path handed from the CLI (gunicorn master) to the worker.
CONFIG_ENV = "LLAMA_SWAP_CONFIG"
WATCH_ENV = "LLAMA_SWAP_WATCH_CONFIG"


def create_app(*args: Any, **kwargs: Any):  # noqa: ANN201 - returns a Flask app
    from app.factory import create_app as _create_app

    return _create_app(*args, **kwargs)
