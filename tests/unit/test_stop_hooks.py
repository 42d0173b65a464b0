"""How the app hooks its stop into hosts without a stop hook of ours (app.runtime.shutdown): SIGTERM left at
its default (in Python's view and the kernel's), and uWSGI's own exit hook, chained."""

from __future__ import annotations

import atexit
import signal
import subprocess
import sys
from types import SimpleNamespace

from flask import Flask

from app.runtime.server import EXTENSION
from app.runtime.shutdown import caught_or_ignored, close_app, stop_at_exit
from tests.helpers.upstream import REPO_ROOT

STATUS = "Name:\tpython\nSigBlk:\t0000000000000000\nSigIgn:\t{ign:016x}\nSigCgt:\t{cgt:016x}\n"
TERM = 1 << (signal.SIGTERM - 1)


def test_sigterm_caught_or_ignored_is_read_from_the_kernels_masks_and_other_signals_do_not_count():
    assert not caught_or_ignored(STATUS.format(ign=0, cgt=1 << (signal.SIGINT - 1)), signal.SIGTERM)
    assert caught_or_ignored(STATUS.format(ign=0, cgt=TERM), signal.SIGTERM)
    assert caught_or_ignored(STATUS.format(ign=TERM, cgt=0), signal.SIGTERM)


def test_a_gevent_signal_handler_is_seen_though_pythons_signal_module_still_says_default():
    """What a gevent host (uWSGI's gevent loop, a user's script) installs is invisible to signal.getsignal."""
    code = ("import gevent, signal\nfrom app.runtime.shutdown import sigterm_at_default\n"
            "before = sigterm_at_default()\ngevent.signal_handler(signal.SIGTERM, print)\n"
            "print(before, sigterm_at_default(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False", "True"], out.stderr


def test_under_uwsgi_its_exit_hook_stops_the_server_then_runs_the_hook_that_was_there(monkeypatch):
    """uWSGI's gevent loop calls uwsgi.atexit and skips Python's atexit: the server must stop from there."""
    calls = []
    observatory = SimpleNamespace(close=lambda: calls.append("feeds"), flush=lambda: calls.append("flush"))
    app = Flask(__name__)
    app.extensions[EXTENSION] = SimpleNamespace(observatory=observatory,
                                                close=lambda grace, hurry: calls.append("upstreams"))
    uwsgi = SimpleNamespace(atexit=lambda: calls.append("the host's own hook"))
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    try:
        stop_at_exit(app)
    finally:
        atexit.unregister(close_app)  # this process is pytest's
    uwsgi.atexit()
    assert calls == ["feeds", "upstreams", "flush", "the host's own hook"]
