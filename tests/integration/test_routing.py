"""Routing as a user configures it: groups, priorities, concurrency limits, preload."""

from __future__ import annotations

import threading

import requests

from tests.helpers.server import fake_cmd, wait_for


def chat(name: str, **extra) -> dict:
    return {"model": name, "messages": [{"role": "user", "content": "hi"}], **extra}


def post(server, name: str, **extra) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), json=chat(name, **extra), timeout=30)


def running(server) -> dict[str, str]:
    return {r["model"]: r["state"] for r in requests.get(server.url("/running"), timeout=5).json()["running"]}


def models_yaml(tmp_path, models: dict[str, str]) -> str:
    lines = ["models:"]
    for name, extra in models.items():
        lines += [f"  {name}:", f"    cmd: {fake_cmd(name, tmp_path, extra)}"]
    return "\n".join(lines) + "\n"


def test_preload_loads_the_listed_models_at_start_through_the_groups(llama_swap, tmp_path):
    config = models_yaml(tmp_path, {"A": "", "B": "", "C": ""}) + """
hooks:
  on_startup:
    preload: [A, B]
routing:
  router:
    settings:
      groups:
        pair: {swap: false, members: [A, B]}
"""
    server = llama_swap(config)
    wait_for(lambda: running(server) == {"A": "ready", "B": "ready"}, timeout=15, what="A and B preloaded")
    server.wait_for_log("preloaded A in", "preloaded B in")
    assert post(server, "A").status_code == 200
    assert (len(server.starts("A")), len(server.starts("B")), server.starts("C")) == (1, 1, [])


def test_preloading_models_that_cannot_run_together_leaves_the_last_one(llama_swap, tmp_path):
    config = models_yaml(tmp_path, {"A": "", "B": ""}) + "hooks:\n  on_startup:\n    preload: [A, B]\n"
    server = llama_swap(config)
    wait_for(lambda: "preloaded B in" in server.log(), timeout=15, what="the preload to finish")
    assert running(server) == {"B": "ready"}
    assert len(server.starts("A")) == 1


def test_a_persistent_group_is_never_unloaded_by_other_groups(llama_swap, tmp_path):
    config = models_yaml(tmp_path, {"P": "", "A": "", "B": ""}) + """
routing:
  router:
    settings:
      groups:
        forever: {persistent: true, swap: false, exclusive: false, members: [P]}
        llms: {swap: true, exclusive: true, members: [A, B]}
"""
    server = llama_swap(config)
    for name in ("P", "A", "B", "A"):
        assert post(server, name).status_code == 200
        assert running(server)["P"] == "ready"
    assert running(server) == {"P": "ready", "A": "ready"}
    assert len(server.starts("P")) == 1
    assert (len(server.starts("A")), len(server.starts("B"))) == (2, 1)


def test_queued_requests_are_served_by_priority_then_arrival(llama_swap, tmp_path):
    config = models_yaml(tmp_path, {"A": "--tokens 20 --token-delay 0.05", "B": "", "C": ""}) + """
routing:
  scheduler:
    settings:
      fifo:
        priority: {C: 10}
"""
    server = llama_swap(config)
    done: list[str] = []

    def ask(name: str) -> None:
        assert post(server, name).status_code == 200
        done.append(name)

    with requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True,
                       timeout=30) as busy:
        chunks = busy.iter_content(None)
        next(chunks)  # A is serving a 1 s stream: B and C must queue behind it
        threads = []
        for name in ("B", "C"):
            threads.append(threading.Thread(target=ask, args=(name,)))
            threads[-1].start()
            wait_for(lambda: f"{name}: queued" in server.log(), timeout=5, what=f"{name} to queue")
        for _ in chunks:
            pass
    for thread in threads:
        thread.join(timeout=30)
    assert done == ["C", "B"]  # C arrived second but has the higher priority
    log = server.log()
    assert log.index("C: starting pid") < log.index("B: starting pid")


def test_requests_over_the_concurrency_limit_get_429(llama_swap, tmp_path):
    config = f"""
models:
  A:
    cmd: {fake_cmd("A", tmp_path, "--tokens 20 --token-delay 0.05")}
    concurrencyLimit: 2
"""
    server = llama_swap(config)
    assert post(server, "A", max_tokens=1).status_code == 200
    streams = [requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True),
                             stream=True, timeout=30) for _ in range(2)]
    readers = [stream.iter_content(None) for stream in streams]  # kept: dropping one hangs up
    try:
        for reader in readers:
            next(reader)  # both in flight
        r = post(server, "A")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "concurrency_limit"
        assert r.json()["error"]["type"] == "rate_limit_error"
    finally:
        for stream in streams:
            stream.close()
    wait_for(lambda: post(server, "A", max_tokens=1).status_code == 200, timeout=10,
             what="the model to accept requests again")


def test_matrix_switching_between_two_llms_keeps_the_shared_tts_model_loaded(llama_swap, tmp_path):
    config = models_yaml(tmp_path, {"llm-one": "", "llm-two": "", "tts": "", "solo": ""}) + """
routing:
  router:
    use: matrix
    settings:
      matrix:
        vars: {a: llm-one, b: llm-two, v: tts}
        evict_costs: {v: 50}
        sets:
          voice: "(a | b) & v"
"""
    server = llama_swap(config)
    for name in ("tts", "llm-one", "llm-two", "llm-one"):
        assert post(server, name).status_code == 200
    assert running(server) == {"llm-one": "ready", "tts": "ready"}
    assert len(server.starts("tts")) == 1  # never evicted while the LLMs swapped
    assert (len(server.starts("llm-one")), len(server.starts("llm-two"))) == (2, 1)
    # A model in no set runs alone.
    assert post(server, "solo").status_code == 200
    assert running(server) == {"solo": "ready"}
