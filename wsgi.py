"""The WSGI entry point for other hosts: ``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG).

The first thing a host imports of ours, so it first asks which host loaded
it (``app.runtime.hosts``): a gevent host that has not patched is patched
here, before anything else is imported; a host this server cannot serve
correctly is refused with a message naming it and how to run it instead.

Then the worker process claims the server (``app.runtime.single``): a host
running a second worker process on the same config refuses it, saying to run
one worker, instead of starting a second scheduler.
"""

import sys

from app.runtime import hosts

try:
    HOST = hosts.prepare()
except hosts.HostRefused as refused:
    print(refused, file=sys.stderr, flush=True)
    hosts.stop_the_host()
    raise SystemExit(hosts.REFUSED_EXIT) from None

from app.runtime.single import SecondWorker, claim, config_key  # noqa: E402 - after the patching

try:
    claim(config_key())
except SecondWorker as refused:
    print(f"llama-swap: {refused}", file=sys.stderr, flush=True)
    hosts.stop_the_host()
    raise SystemExit(hosts.REFUSED_EXIT) from None

from app.runtime.factory import create_app  # noqa: E402 - after the claim: a refused worker builds nothing

app = create_app()
