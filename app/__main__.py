"""The command line: ``python -m app --config FILE --listen HOST:PORT`` with llama-swap's flags.

``--config-dir DIR`` adds the YAML fragments in DIR (alone or with
``--config``, as Go's ``-config-dir``); with neither flag the config is
``config.yaml``.

This process becomes the gunicorn master; the one gevent worker it forks
builds the app. The config is loaded here first so that a bad file fails at
start, naming the key, before anything is forked; its texts are kept for a
worker gunicorn respawns while the file is mid-edit (``app.runtime.lastgood``).
"""

from __future__ import annotations

import argparse
import math
import os
import runpy
import sys
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication

from app.arbiter import Arbiter
from app.config import Config, ConfigError, ConfigSources, load_texts, read_sources
from app import BODY_TIMEOUT_ENV, CONFIG_DIR_ENV, CONFIG_ENV, LAST_GOOD_ENV, WATCH_ENV, seconds_from_env, shutdown_grace
from app.runtime.lastgood import remember
from app.version import __version__

ROOT = Path(__file__).resolve().parent.parent


def parse_listen(listen: str) -> str:
    """llama-swap's ``--listen`` (``:8080``, ``host:port``, ``[::1]:port``) as a gunicorn bind."""
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT or :PORT")
    if int(port) > 65535:
        raise ValueError(f"--listen {listen!r}: the port must be from 0 to 65535")
    return f"{host or '0.0.0.0'}:{port}"


def graceful_timeout(config: Config) -> int:
    """How long gunicorn's master waits for its worker after SIGTERM before SIGKILL, in whole seconds: the
    shutdown grace, the slowest model's ``unloadTimeout`` (models stop side by side), and a margin."""
    return math.ceil(shutdown_grace() + config.slowest_unload() + 5.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llama-swap", description="Model swapping proxy for local inference servers.")
    # Go's flag package takes -flag and --flag alike; accept both.
    parser.add_argument("--config", "-config", default=None,
                        help="config file (default config.yaml, unless --config-dir is given)")
    parser.add_argument("--config-dir", "-config-dir", default=None,
                        help="directory of *.yml/*.yaml config files (additive to --config)")
    parser.add_argument("--listen", "-listen", default=":8080", help="listen address (default :8080)")
    parser.add_argument("--watch-config", "-watch-config", action="store_true",
                        help="restart the server when the config file (or directory) changes")
    parser.add_argument("--tls-cert-file", "-tls-cert-file", default="", help="TLS certificate file")
    parser.add_argument("--tls-key-file", "-tls-key-file", default="", help="TLS key file")
    parser.add_argument("--version", "-version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


def config_sources(config: str | None, config_dir: str | None) -> ConfigSources:
    """The flags' files as absolute paths (the worker may run elsewhere); ``config.yaml`` if neither is given."""
    if not config and not config_dir:
        config = "config.yaml"
    return ConfigSources(file=os.path.abspath(config) if config else None,
                         directory=os.path.abspath(config_dir) if config_dir else None)


class LlamaSwapApplication(BaseApplication):
    """gunicorn with our gunicorn.conf.py and the CLI's bind, loading the app in the worker."""

    def __init__(self, sources: ConfigSources, options: dict):
        self._sources = sources
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
        settings.update(self._options)
        for key, value in settings.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from app.runtime.factory import create_app  # in the worker, after gevent patched it

        return create_app(self._sources.file, config_dir=self._sources.directory)

    def run(self) -> None:
        try:
            Arbiter(self).run()  # ours: stops as soon as the worker has
        except RuntimeError as exc:  # as gunicorn's own run reports a master that cannot start
            print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
            sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"llama-swap (python) version {__version__}")
        return 0
    try:
        bind = parse_listen(args.listen)
        sources = config_sources(args.config, args.config_dir)
        texts = read_sources(sources)
        config = load_texts(sources, texts)
        seconds_from_env(BODY_TIMEOUT_ENV, 0.0)  # read in the worker: refused here, before it forks
        options = {"bind": [bind], "graceful_timeout": graceful_timeout(config)}
    except (ConfigError, ValueError) as exc:
        print(f"llama-swap: {exc}", file=sys.stderr)
        return 1
    # Unlinked at once: the kernel frees it when the last process holding it ends, however that ends.
    last_good = tempfile.TemporaryFile()
    os.environ[LAST_GOOD_ENV] = str(last_good.fileno())  # every worker forked from here inherits the fd
    remember(sources, texts)  # a worker respawned while the file is mid-edit starts from this
    os.environ[CONFIG_ENV] = sources.file or ""
    os.environ[CONFIG_DIR_ENV] = sources.directory or ""
    if args.tls_cert_file or args.tls_key_file:
        options.update(certfile=args.tls_cert_file, keyfile=args.tls_key_file)
    if args.watch_config:
        os.environ[WATCH_ENV] = "1"
    LlamaSwapApplication(sources, options).run()
    last_good.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
