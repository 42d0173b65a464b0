"""The real server (``python -m app``'s gunicorn + one gevent worker) with cProfile switchable per request.

Diagnostics only (``bench.diagnose`` starts it in place of ``python -m app``,
same ``--config``/``--listen``). The app is wrapped in a tiny WSGI middleware:
a request carrying ``X-Bench-Profile: start`` turns the worker's profiler on,
``X-Bench-Profile: stop`` turns it off and dumps the stats to the file named
by ``$BENCH_PROFILE_OUT``. Everything between the two (gunicorn's parsing and
writing, Flask, the router greenlet, the upstream client) is profiled, since
all greenlets of the worker run on one thread.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from typing import Any, Callable, Iterable

from app.__main__ import LlamaSwapApplication, parse_listen
from app import CONFIG_ENV
from app.config import ConfigSources

PROFILE_HEADER = "HTTP_X_BENCH_PROFILE"
OUT_ENV = "BENCH_PROFILE_OUT"

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class ProfileSwitch:
    """WSGI middleware: start/stop a cProfile profiler on request, pass everything else through."""

    def __init__(self, app: WSGIApp, out_path: str) -> None:
        self.app = app
        self.out_path = out_path
        self.profiler = cProfile.Profile()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        command = environ.get(PROFILE_HEADER)
        if command is None:
            return self.app(environ, start_response)
        if command == "start":
            self.profiler = cProfile.Profile(time.process_time) if os.environ.get("BENCH_PROFILE_CPU") else cProfile.Profile()
            self.profiler.enable()
        elif command == "stop":
            self.profiler.disable()
            self.profiler.dump_stats(self.out_path)
        start_response("204 No Content", [])
        return []


class ProfiledApplication(LlamaSwapApplication):
    def load(self) -> WSGIApp:
        return ProfileSwitch(super().load(), os.environ[OUT_ENV])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiled_server")
    parser.add_argument("--config", required=True)
    parser.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    config_path = os.path.abspath(args.config)
    os.environ[CONFIG_ENV] = config_path
    ProfiledApplication(ConfigSources(file=config_path), {"bind": [parse_listen(args.listen)]}).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
