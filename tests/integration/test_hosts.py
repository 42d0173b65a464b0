"""The app in gunicorn through ``wsgi.py``, as a deployment without ``python -m app`` runs it.

``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG,
address from $LLAMA_SWAP_BIND) serves and stops as ``python -m app`` does;
``-w 2`` is refused before any worker starts: each worker would run its own
scheduler and its own copies of the models.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests

from tests.helpers.server import fake_cmd, processes_under, wait_for
from tests.helpers.upstream import REPO_ROOT, free_port, free_port_block

GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def gunicorn(tmp_path, *args: str) -> tuple[subprocess.Popen, int]:
    config = tmp_path / "config.yaml"
    config.write_text(f"startPort: {free_port_block(4)}\nhealthCheckTimeout: 15\nmodels:\n"
                      f"  A:\n    cmd: {fake_cmd('A', tmp_path)}\n")
    port = free_port()
    env = {**os.environ, "LLAMA_SWAP_CONFIG": str(config), "LLAMA_SWAP_BIND": f"127.0.0.1:{port}"}
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py", *args, "wsgi:app"], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return proc, port


def test_gunicorn_with_our_settings_serves_through_wsgi_py_and_stops_every_upstream(tmp_path):
    proc, port = gunicorn(tmp_path)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=30, what="gunicorn's /health")
        r = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          json={"model": "A", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert processes_under(str(tmp_path)), "the upstream runs"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not processes_under(str(tmp_path)), timeout=5, what="the upstream to be stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_gunicorn_with_two_workers_is_refused_before_any_starts(tmp_path):
    proc, port = gunicorn(tmp_path, "-w", "2")
    try:
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "gunicorn with 2 workers" in log and "run it with exactly one (-w 1)" in log, log
    assert "Traceback" not in log, log
    assert not processes_under(str(tmp_path)), "nothing was started"
