"""The app through ``wsgi.py`` in the WSGI hosts its users have, and in gunicorn with our settings.

``gunicorn -c gunicorn.conf.py wsgi:app`` (config from $LLAMA_SWAP_CONFIG,
address from $LLAMA_SWAP_BIND) serves and stops as ``python -m app`` does;
``-w 2`` is refused before any worker starts: each worker would run its own
scheduler and its own copies of the models.

Every other host (``tests/helpers/hosts.py``) runs the issue's six checks:
start, list, chat, stream, 6 concurrent requests over two models (and
/v1/models not waiting behind a completion), clean stop (each model running
at the stop signal stopped by the server after it, none left, and the host's
own exit status); one host of each stop path is also stopped with the UI's
event feed open. A host that is not installed is skipped, saying what to
install. Hosts this server cannot serve
are refused at start with a message naming the host and how to run it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

import pytest
import requests

from tests.helpers.hosts import HostCase, HostRun, check_clean_stop, six_checks, two_models_config
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


def loopback(port: int) -> str:
    return f"127.0.0.1:{port}"


def uwsgi(*flags: str) -> Callable[[int], list[str]]:
    """uWSGI speaking HTTP itself on the port (no router process), failing at start if the app does not load."""
    return lambda port: ["--http-socket", loopback(port), *flags, "--need-app", "--module", "wsgi:app"]


def uwsgi_master(*flags: str) -> Callable[[int], list[str]]:
    """uWSGI under its master with its HTTP router in front: the app built in the worker, SIGTERM stopping."""
    return lambda port: ["--master", "--lazy-apps", "--die-on-term", "--http", loopback(port), *flags,
                         "--need-app", "--module", "wsgi:app"]


def gunicorn_without_our_settings(*flags: str) -> Callable[[int], list[str]]:
    """Run from the test's directory: gunicorn finds no gunicorn.conf.py there."""
    return lambda port: [*flags, "-b", loopback(port), "wsgi:app"]


PIP_UWSGI = "pip install uwsgi (it compiles; .ci/run installs it)"
# What each host exits with on its stop signal (SIGTERM), as measured with uWSGI 2.0.31: gunicorn's master,
# waitress, flask run, a gevent.pywsgi script and uWSGI's master (--die-on-term) exit 0; uWSGI without its
# master exits with its own codes (uwsgi.h): a threaded worker ends with UWSGI_END_CODE, and the gevent
# loop ends with UWSGI_RELOAD_CODE after its SIGTERM/SIGINT handler ("Brutally killing worker").
UWSGI_END_CODE = 30
UWSGI_RELOAD_CODE = 17
PATCHED_BY_WSGI_PY = "wsgi.py patched it with gevent.monkey.patch_all() before importing anything else"
PYWSGI_HOST = str(REPO_ROOT / "tests" / "helpers" / "pywsgi_host.py")
HOSTS = [
    HostCase("waitress", "waitress-serve", lambda port: [f"--listen={loopback(port)}", "wsgi:app"],
             "pip install waitress (requirements-dev.txt)"),
    HostCase("flask-run", "flask", lambda port: ["--app", "wsgi:app", "run", "--host", "127.0.0.1", "--port",
                                                 str(port)], "pip install Flask"),
    HostCase("gunicorn-sync", "gunicorn", gunicorn_without_our_settings("-k", "sync"), "pip install gunicorn",
             one_at_a_time=True),
    HostCase("gunicorn-gthread", "gunicorn", gunicorn_without_our_settings("-k", "gthread", "--threads", "4"),
             "pip install gunicorn"),
    HostCase("gunicorn-gevent", "gunicorn", gunicorn_without_our_settings("-k", "gevent"), "pip install gunicorn"),
    HostCase("pywsgi-patched", "python", lambda port: [PYWSGI_HOST, str(port), "--patch"], "pip install gevent"),
    HostCase("pywsgi-unpatched", "python", lambda port: [PYWSGI_HOST, str(port)], "pip install gevent",
             says=PATCHED_BY_WSGI_PY),
    HostCase("uwsgi-gevent-monkey-patch", "uwsgi", uwsgi("--gevent", "100", "--gevent-monkey-patch"), PIP_UWSGI,
             says=PATCHED_BY_WSGI_PY, exit_code=UWSGI_RELOAD_CODE),  # uWSGI's patching comes after the app loads
    HostCase("uwsgi-gevent-early-monkey-patch", "uwsgi",
             uwsgi("--gevent", "100", "--gevent-early-monkey-patch"), PIP_UWSGI, exit_code=UWSGI_RELOAD_CODE),
    HostCase("uwsgi-gevent-unpatched", "uwsgi", uwsgi("--gevent", "100"), PIP_UWSGI, says=PATCHED_BY_WSGI_PY,
             exit_code=UWSGI_RELOAD_CODE),
    # uWSGI skips its exit hooks, and so our stop, in a worker busy with a request (uwsgi_python_atexit)
    HostCase("uwsgi-threads", "uwsgi", uwsgi("--threads", "4"), PIP_UWSGI, exit_code=UWSGI_END_CODE,
             stops_mid_request=False),
    HostCase("uwsgi-default", "uwsgi", uwsgi(), PIP_UWSGI, one_at_a_time=True, says="one request at a time",
             exit_code=UWSGI_END_CODE, stops_mid_request=False),  # one thread: bridged (threads on since 2.0.27)
    HostCase("uwsgi-master-threads", "uwsgi", uwsgi_master("--threads", "4"), PIP_UWSGI, stops_mid_request=False),
    HostCase("uwsgi-master-gevent", "uwsgi", uwsgi_master("--gevent", "100", "--gevent-early-monkey-patch"),
             PIP_UWSGI),
]


@pytest.mark.parametrize("case", HOSTS, ids=[case.id for case in HOSTS])
def test_the_six_checks_pass_in_each_wsgi_host(tmp_path, case):
    six_checks(tmp_path, case)


FEED_HOSTS = [case for case in HOSTS if case.id in (  # one of each way a host stops
    "gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent",  # a graceful wait for the requests in flight
    "waitress", "flask-run", "pywsgi-patched",  # SIGTERM made an exit by us: atexit
    "uwsgi-gevent-early-monkey-patch", "uwsgi-threads")]  # uwsgi.atexit; uWSGI's busy worker skips its hooks


@pytest.mark.parametrize("case", FEED_HOSTS, ids=[case.id for case in FEED_HOSTS])
def test_the_stop_signal_stops_every_model_while_the_uis_event_feed_is_open(tmp_path, case):
    """A request that never ends by itself is in flight at the stop: gunicorn's graceful stop would wait
    for it until its master SIGKILLs the worker (30 s), and the guardian the upstreams. The feed ends at
    the signal instead, and the models are stopped by the server; except in uWSGI's threaded workers,
    which skip every exit hook while busy: the guardian kills them there (docs/DEPLOY.md)."""
    port = free_port()
    run = HostRun(tmp_path, case.argv(port), two_models_config(tmp_path), case.env, port=port)
    try:
        run.wait_healthy()
        assert run.chat("A").status_code == 200
        check_clean_stop(run, case, feed_open=True)
    finally:
        run.kill()


REFUSED = [
    HostCase("uwsgi-two-processes", "uwsgi", uwsgi("--threads", "4", "--processes", "2", "--lazy-apps", "--master"),
             PIP_UWSGI),
    HostCase("uwsgi-master-without-lazy-apps", "uwsgi", uwsgi("--master", "--die-on-term", "--threads", "4"),
             PIP_UWSGI),
]
REFUSALS = {"uwsgi-two-processes": "uWSGI with 2 worker processes", "uwsgi-master-without-lazy-apps": "--lazy-apps"}


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_a_host_that_cannot_serve_correctly_is_refused_at_start_saying_how_to_run_it(tmp_path, case):
    port = free_port()
    run = HostRun(tmp_path, case.argv(port), f"models:\n  A:\n    cmd: {fake_cmd('A', tmp_path)}\n", port=port)
    try:
        code = run.proc.wait(timeout=30)
    finally:
        run.kill()
    log = run.log()
    assert code != 0, log  # --need-app: uWSGI ends the instance when the app does not load (status 22)
    assert "llama-swap cannot run in uWSGI" in log and REFUSALS[case.id] in log and "docs/DEPLOY.md" in log, log
    assert not processes_under(str(tmp_path)), "nothing was started"


def test_two_gunicorn_gevent_workers_without_our_settings_serve_one_scheduler_then_stop_saying_so(tmp_path):
    """The first worker claims the server and serves; the second waits for it (here 6 s, not 20: room for the first to serve on a loaded machine), then refuses,
    which gunicorn takes as a failed boot and stops: one copy of the model ever started, none left after."""
    port = free_port()
    argv = [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-w", "2", "-k", "gevent", "-b",
            loopback(port), "wsgi:app"]
    config = f"startPort: {free_port_block(4)}\nmodels:\n  A:\n    cmd: {fake_cmd('A', tmp_path)}\n"
    run = HostRun(tmp_path, argv, config, env={"LLAMA_SWAP_SECOND_WORKER_WAIT": "6"}, port=port)
    try:
        run.wait_healthy()
        for _ in range(3):
            assert run.chat("A").status_code == 200
        code = run.proc.wait(timeout=30)
        wait_for(lambda: not run.upstreams(), timeout=10, what="every upstream to be stopped")
    finally:
        run.kill()
    log = run.log()
    assert code != 0, log
    assert "already serves this config" in log and "exactly one worker (gunicorn -w 1" in log, log
    assert "Traceback" not in log, log
    assert len(run.starts("A")) == 1, run.starts("A")


HANGUP_HOSTS = [  # threaded hosts that let the bridge look at a silent client
    HostCase("waitress-lookahead", "waitress-serve",
             lambda port: [f"--listen={loopback(port)}", "--channel-request-lookahead=1", "wsgi:app"],
             "pip install waitress (requirements-dev.txt)"),
    *(case for case in HOSTS if case.id in ("flask-run", "gunicorn-gthread")),
]


def post_and_leave(port: int, body: bytes, read_until: bytes | None = None,
                   until: Callable[[], bool] | None = None) -> None:
    """A client that sends a chat request, reads until ``read_until`` (or waits ``until``), and hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while read_until is not None and read_until not in seen:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed first: {seen!r}"
            seen += chunk
        if until is not None:
            wait_for(until, timeout=10, what="the request to be under way")


@pytest.mark.parametrize("case", HANGUP_HOSTS, ids=[case.id for case in HANGUP_HOSTS])
def test_a_client_that_hangs_up_behind_the_bridge_frees_its_model_while_silent_and_while_streaming(tmp_path, case):
    """Through the thread bridge, as under gevent: a client gone while its model loads is dropped from the
    queue, and one gone mid-stream frees the model at once (B's swap does not wait for A's 10 s stream)."""
    port = free_port()
    config = (f"startPort: {free_port_block(4)}\nhealthCheckTimeout: 15\nmodels:\n"
              f"  A:\n    cmd: {fake_cmd('A', tmp_path, '--token-delay', '0.05', '--tokens', '200')}\n"
              f"  B:\n    cmd: {fake_cmd('B', tmp_path)}\n"
              f"  C:\n    cmd: {fake_cmd('C', tmp_path, '--load-time', '3')}\n")
    run = HostRun(tmp_path, case.argv(port), config, port=port)
    try:
        run.wait_healthy()
        post_and_leave(port, b'{"model": "C", "messages": [{"role": "user", "content": "hi"}]}',
                       until=lambda: "C: starting pid" in run.log())  # C loads for 3 s: nothing to write
        wait_for(lambda: "C: POST /v1/chat/completions 499" in run.log(), timeout=10,
                 what=f"the silent request's hang-up to be noticed\n{run.log()}")
        post_and_leave(port, b'{"model": "A", "stream": true, "max_tokens": 200, '
                             b'"messages": [{"role": "user", "content": "hi"}]}', b"data: ")
        began = time.monotonic()
        assert run.chat("B").status_code == 200
        assert time.monotonic() - began < 5, "B waited for A's abandoned stream to finish"
    finally:
        run.kill()
