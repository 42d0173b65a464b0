"""The WSGI entry point for other hosts: ``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG).

The worker process that loads this claims the server (``app.runtime.single``):
a host running a second worker process on the same config refuses it,
saying to run one worker, instead of starting a second scheduler.
"""

import os

from app import CONFIG_DIR_ENV, CONFIG_ENV
from app.runtime.single import claim

claim(f"{os.environ.get(CONFIG_ENV, '')}|{os.environ.get(CONFIG_DIR_ENV, '')}")

from app.runtime.factory import create_app  # noqa: E402 - after the claim: a refused worker builds nothing

app = create_app()
