"""The whole server on a gevent hub in a daemon thread of a process gevent has not patched.

``python -m tests.helpers.core_thread <config.yaml> <result.json>``: run by
``tests/integration/test_core_off_main_thread.py`` in a fresh interpreter, so
that nothing of pytest's own process (its imports, its threads) is involved.
This is where issue 13's thread bridge puts the server in a threaded WSGI host
(waitress, ``flask run``, gunicorn sync/gthread): the app is built with
``build_app`` on a thread of its own, and its requests run as greenlets of
that thread's hub. Here they come from Flask's test client, several greenlets
at once; what each saw (statuses, times, the upstreams' pids) is written to
the result file as JSON, for the test to judge. Exceptions are written there
too (``error``). The main thread only waits, with a deadline.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback

# Imported on the main thread, as a host imports its WSGI module: gevent then takes this thread for the
# main one, and the core thread's hub gets a loop of its own (not libev's default loop, the only one
# with child watchers).
import gevent
import gevent.event
import gevent.monkey
import psutil

from app.config import ConfigSources, read_sources
from app.config.loader import load_config
from app.runtime.factory import build_app
from app.runtime.reload import load_off_the_hub
from app.runtime.server import EXTENSION

DEADLINE_S = 60.0
FOREIGN_LINE = "a line logged by a thread that is not the hub's"


def chat(model: str, stream: bool) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream}


def drive(config_path: str) -> dict:
    result: dict = {"patched": gevent.monkey.is_anything_patched(),
                    "main_thread": threading.current_thread() is threading.main_thread(),
                    "default_loop": gevent.get_hub().loop.default}
    began = time.monotonic()
    app = build_app(config=load_config(config_path))
    server = app.extensions[EXTENSION]
    client = app.test_client()
    first_chunk = gevent.event.Event()

    def stream(model: str) -> dict:
        response = client.post("/v1/chat/completions", json=chat(model, True), buffered=False)
        times, body = [], b""
        for chunk in response.response:
            times.append(time.monotonic() - began)
            body += chunk
            first_chunk.set()
        response.close()
        if not body.rstrip().endswith(b"data: [DONE]"):
            return {"status": response.status_code, "body": body.decode("utf-8", "replace")[-300:]}
        return {"status": response.status_code, "first": times[0], "last": times[-1], "done": True}

    def complete(model: str) -> dict:
        response = client.post("/v1/chat/completions", json=chat(model, False))
        answer = response.get_json(silent=True) or {}
        return {"status": response.status_code, "model": answer.get("model", answer)}

    def listing() -> dict:
        first_chunk.wait()
        asked = time.monotonic() - began
        response = client.get("/v1/models")
        return {"status": response.status_code, "asked": asked, "answered": time.monotonic() - began}

    gaps = [0.0]  # the longest the hub went without running this greenlet, from the first request on

    def tick() -> None:
        last = time.monotonic()
        while True:
            gevent.sleep(0.005)
            now = time.monotonic()
            gaps[0], last = max(gaps[0], now - last), now

    ticker = gevent.spawn(tick)
    with gevent.Timeout(DEADLINE_S / 2):
        jobs = {"stream_a": gevent.spawn(stream, "a"), "stream_b": gevent.spawn(stream, "b"),
                "models": gevent.spawn(listing)}
        first_chunk.wait()
        jobs.update(chat_a=gevent.spawn(complete, "a"), chat_b=gevent.spawn(complete, "b"))
        gevent.joinall(list(jobs.values()), raise_error=True)
    result.update({name: job.value for name, job in jobs.items()})
    ticker.kill()
    result["longest_gap"] = gaps[0]
    # gevent's thread pool of this hub (a config reload parses there).
    sources = ConfigSources(file=config_path)
    result["reparsed_off_the_hub"] = load_off_the_hub(sources, read_sources(sources)) == server.config

    # A line logged by another thread (a host's, a request thread's) reaches the proxy log and its
    # live reader, handed to the hub: the reader waits on a gevent Event of this hub.
    reader = server.observatory.logs.proxy.subscribe()
    logger = threading.Thread(target=lambda: logging.getLogger("llama-swap").warning(FOREIGN_LINE))
    logger.start()
    logger.join()
    with gevent.Timeout(5, False):
        seen = b""
        while FOREIGN_LINE.encode() not in seen:
            seen += reader.get(timeout=5) or b""
    result["foreign_line_read"] = FOREIGN_LINE.encode() in seen
    result["foreign_line_kept"] = FOREIGN_LINE.encode() in server.observatory.logs.proxy.history()
    reader.close()

    pids = [process.pid for process in server.router.processes.values() if process.pid is not None]
    result["pids"] = pids
    result["unload"] = client.post("/api/models/unload").status_code
    result["running_after_unload"] = sorted(server.running_models())
    result["alive_after_unload"] = [pid for pid in pids if psutil.pid_exists(pid)]
    server.close()
    return result


def main(config_path: str, result_path: str) -> int:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome.update(drive(config_path))
        except BaseException:
            outcome["error"] = traceback.format_exc()

    core = threading.Thread(target=run, name="core", daemon=True)
    core.start()
    core.join(DEADLINE_S)
    if core.is_alive():
        outcome = {"error": f"the core thread was still running after {DEADLINE_S:g}s"}
    with open(result_path, "w") as out:
        json.dump(outcome, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
