"""--watch-config against the real server: a reload is applied by difference and costs no request.

Each test edits the config file the server watches (keeping its ``startPort``
line: a model's port is part of what makes it unchanged) and waits for what a
client can see: the listing, the upstream's pid in its starts file, a log line.
"""

from __future__ import annotations

import os
import signal
import threading

import psutil
import requests

from tests.helpers.events import EventsClient
from tests.helpers.server import LlamaSwapServer, fake_cmd, wait_for

CHAT = "/v1/chat/completions"


def chat(model: str, *, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream}


def models(tmp_path, **flags: str) -> str:
    """A config serving each model named with its simulator flags."""
    entries = "".join(f"  {name}:\n    cmd: {fake_cmd(name, tmp_path, extra)}\n" for name, extra in flags.items())
    return f"healthCheckTimeout: 15\nmodels:\n{entries}"


def rewrite(server: LlamaSwapServer, text: str) -> None:
    """Replace the watched config, keeping the port block the fixture chose."""
    first = server.config_path.read_text().splitlines()[0]
    assert first.startswith("startPort:")
    server.config_path.write_text(f"{first}\n{text}")


def listed(server: LlamaSwapServer) -> list[str]:
    return [m["id"] for m in requests.get(server.url("/v1/models"), timeout=5).json()["data"]]


def read_stream(response: requests.Response) -> list[str]:
    return [line for line in response.iter_lines(decode_unicode=True) if line]


def test_a_stream_to_an_unchanged_model_survives_a_reload_on_the_same_upstream(llama_swap, tmp_path):
    server = llama_swap(models(tmp_path, A="--tokens 30 --token-delay 0.1", B=""), "--watch-config")
    events = EventsClient(server.url("/api/events"))
    try:
        with requests.post(server.url(CHAT), json=chat("A", stream=True), stream=True, timeout=30) as stream:
            lines = stream.iter_lines(decode_unicode=True)
            assert next(line for line in lines if line).startswith("data:")
            (pid,) = server.starts("A")
            rewrite(server, models(tmp_path, A="--tokens 30 --token-delay 0.1", B="--tokens 4", C=""))
            wait_for(lambda: listed(server) == ["A", "B", "C"], timeout=10, what=f"the reload\n{server.log()}")
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]", rest[-3:]
        assert server.starts("A") == [pid] and server.state_of("A") == "ready"
        assert psutil.pid_exists(pid)
        wait_for(lambda: any(m.type == "modelStatus" and {r["id"] for r in m.data} >= {"A", "B", "C"}
                             for m in events.messages), timeout=5, what="subscribers told of the new models")
        server.wait_for_log("kept A; restarting B; removed none; added C")
    finally:
        events.close()


def test_a_changed_model_finishes_its_stream_then_restarts_with_the_new_command(llama_swap, tmp_path):
    server = llama_swap(models(tmp_path, A="--tokens 20 --token-delay 0.1"), "--watch-config")
    with requests.post(server.url(CHAT), json=chat("A", stream=True), stream=True, timeout=30) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        assert next(line for line in lines if line).startswith("data:")
        (old_pid,) = server.starts("A")
        rewrite(server, models(tmp_path, A="--tokens 3 --linger 0"))
        wait_for(lambda: "restarting A" in server.log(), timeout=10, what=f"the reload\n{server.log()}")
        waiting: list[requests.Response] = []
        newcomer = threading.Thread(target=lambda: waiting.append(
            requests.post(server.url(CHAT), json=chat("A"), timeout=30)))
        newcomer.start()  # asks for A while the old one still streams: it waits for the new one
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]", "the stream in flight ran to its end"
    newcomer.join(timeout=30)
    assert waiting and waiting[0].status_code == 200, waiting and waiting[0].text
    old, new = server.starts("A")
    assert old == old_pid and not psutil.pid_exists(old)
    assert "--linger 0" in " ".join(psutil.Process(new).cmdline())


def test_a_touch_or_a_comment_restarts_nothing(llama_swap, tmp_path):
    server = llama_swap(models(tmp_path, A=""), "--watch-config")
    assert requests.post(server.url(CHAT), json=chat("A"), timeout=30).status_code == 200
    os.utime(server.config_path)
    wait_for(lambda: "touched: its content is the same, nothing to reload" in server.log(), timeout=10,
             what=f"the touch to be seen\n{server.log()}")
    server.config_path.write_text(server.config_path.read_text() + "# a comment\n")
    wait_for(lambda: "changed but means the same: nothing to reload" in server.log(), timeout=10,
             what=f"the comment to be seen\n{server.log()}")
    assert len(server.starts("A")) == 1 and server.state_of("A") == "ready"
    assert "config reloaded" not in server.log()


def test_bad_edits_keep_the_old_config_serving_and_a_later_good_edit_applies(llama_swap, tmp_path):
    good = models(tmp_path, A="")
    server = llama_swap(good, "--watch-config")
    assert requests.post(server.url(CHAT), json=chat("A"), timeout=30).status_code == 200
    bad_edits = {
        "models.A.ttl": good + "    ttl: soon\n",
        "U+0000": good + "    name: \"a\0b\"\n",
        "nested deeper": good + "    metadata: " + "[" * 2000 + "]" * 2000 + "\n",
        "excessive aliasing": good + "x: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
            f"x{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)),
    }
    for named, text in bad_edits.items():
        rewrite(server, text)
        wait_for(lambda: named in server.log(), timeout=10, what=f"the edit naming {named!r}\n{server.log()}")
        assert requests.post(server.url(CHAT), json=chat("A"), timeout=30).status_code == 200
    rewrite(server, models(tmp_path, A="", B=""))
    wait_for(lambda: listed(server) == ["A", "B"], timeout=10, what=f"the good edit\n{server.log()}")
    assert server.state_of("A") == "ready" and len(server.starts("A")) == 1, "A kept running throughout"
    assert requests.post(server.url(CHAT), json=chat("B"), timeout=30).status_code == 200


def test_requests_sent_all_through_a_reload_never_get_a_503(llama_swap, tmp_path):
    slow_stop = "unloadTimeout: 2\n"  # A ignores SIGTERM: the old one takes 2 s to go
    server = llama_swap(slow_stop + models(tmp_path, A="--ignore-sigterm --tokens 2"), "--watch-config")
    statuses: list[int] = []
    reloaded = threading.Event()

    def client() -> None:
        while len(statuses) < 20 or not reloaded.is_set():
            statuses.append(requests.post(server.url(CHAT), json=chat("A"), timeout=30).status_code)

    sender = threading.Thread(target=client)
    sender.start()
    wait_for(lambda: len(statuses) >= 3, timeout=30, what="the first requests")
    rewrite(server, slow_stop + models(tmp_path, A="--ignore-sigterm --tokens 3", B=""))
    wait_for(lambda: len(server.starts("A")) == 2 and server.state_of("A") == "ready", timeout=30,
             what=f"A restarted by the reload\n{server.log()}")
    reloaded.set()
    sender.join(timeout=60)
    assert len(statuses) >= 20 and set(statuses) == {200}, statuses


def test_a_worker_killed_while_the_file_is_invalid_comes_back_on_the_last_good_config(llama_swap, tmp_path):
    server = llama_swap(models(tmp_path, A=""), "--watch-config")
    rewrite(server, models(tmp_path, A="", B=""))  # the last good one is this, not the one at start
    wait_for(lambda: listed(server) == ["A", "B"], timeout=10, what=f"the first edit\n{server.log()}")
    rewrite(server, models(tmp_path, A="") + "    ttl: soon\n")
    wait_for(lambda: "is invalid, keeping the running config" in server.log(), timeout=10,
             what=f"the bad edit to be seen\n{server.log()}")

    (worker,) = psutil.Process(server.proc.pid).children()
    worker.send_signal(signal.SIGKILL)

    def respawned() -> bool:
        children = psutil.Process(server.proc.pid).children() if server.proc.poll() is None else None
        assert children is not None, f"the server exited:\n{server.log()}"
        try:
            return bool(children) and children[0].pid != worker.pid and listed(server) == ["A", "B"]
        except requests.RequestException:
            return False

    wait_for(respawned, timeout=30, what=f"a new worker serving\n{server.log()}")
    server.wait_for_log("does not load", "models.A.ttl")
    assert requests.post(server.url(CHAT), json=chat("B"), timeout=30).status_code == 200

    rewrite(server, models(tmp_path, C=""))
    wait_for(lambda: listed(server) == ["C"], timeout=10, what=f"the fixed file applied\n{server.log()}")
