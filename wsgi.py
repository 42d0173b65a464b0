"""gunicorn entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG)."""

from app import create_app

app = create_app()
