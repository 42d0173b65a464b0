"""gunicorn entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG)."""

from app.runtime.factory import create_app

app = create_app()
