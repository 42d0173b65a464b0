"""The whole server on a gevent hub in a daemon thread of an unpatched process (issue 13's thread bridge).

The driver (``tests.helpers.core_thread``) runs in a fresh interpreter, builds
the app with ``build_app`` on a daemon thread and sends it requests from
several greenlets of that thread at once; this module judges what it saw.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.server import fake_cmd, processes_under, wait_for
from tests.helpers.upstream import REPO_ROOT, free_port_block

STREAM_FLAGS = "--tokens 30 --token-delay 0.05"  # each stream lasts ~1.5 s


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("core-thread")
    config = workdir / "config.yaml"
    config.write_text("\n".join([
        "healthCheckTimeout: 20",
        f"startPort: {free_port_block(2)}",
        "models:",
        "  a:", f"    cmd: {fake_cmd('a', workdir, STREAM_FLAGS)}",
        "  b:", f"    cmd: {fake_cmd('b', workdir, STREAM_FLAGS)}",
        "groups:",
        "  both: {swap: false, exclusive: true, members: [a, b]}",
    ]) + "\n")
    result = workdir / "result.json"
    try:
        subprocess.run([sys.executable, "-m", "tests.helpers.core_thread", str(config), str(result)],
                       cwd=REPO_ROOT, timeout=90, check=True)
        yield json.loads(result.read_text())
    finally:
        wait_for(lambda: not processes_under(str(workdir)), timeout=5, what="every upstream to exit")


def test_the_driver_ran_on_an_unpatched_daemon_thread(seen):
    assert "error" not in seen, seen.get("error")
    assert seen["patched"] is False
    assert seen["main_thread"] is False
    assert seen["default_loop"] is False


def test_a_chat_completion_to_each_model_is_answered(seen):
    assert "error" not in seen, seen.get("error")
    assert seen["chat_a"] == {"status": 200, "model": "a"}
    assert seen["chat_b"] == {"status": 200, "model": "b"}


def test_streams_to_two_models_flow_at_the_same_time(seen):
    assert "error" not in seen, seen.get("error")
    a, b = seen["stream_a"], seen["stream_b"]
    assert (a["status"], a["done"], b["status"], b["done"]) == (200, True, 200, True)
    # Each takes ~1.5 s; one blocking the hub would make the other start after it ended.
    assert b["first"] < a["last"] and a["first"] < b["last"]


def test_the_model_list_does_not_wait_behind_a_stream_in_flight(seen):
    assert "error" not in seen, seen.get("error")
    models, a = seen["models"], seen["stream_a"]
    assert models["status"] == 200
    assert models["answered"] - models["asked"] < 0.5, models  # the issue measured 2.7 s
    assert models["answered"] < a["last"]


def test_a_line_logged_from_another_thread_reaches_the_proxy_log_and_its_reader(seen):
    assert "error" not in seen, seen.get("error")
    assert seen["foreign_line_kept"] is True
    assert seen["foreign_line_read"] is True


def test_unload_stops_every_upstream(seen):
    assert "error" not in seen, seen.get("error")
    assert len(seen["pids"]) == 2
    assert seen["unload"] == 200
    assert seen["running_after_unload"] == []
    assert seen["alive_after_unload"] == []


def test_nothing_holds_the_hub_while_models_start_and_stream(seen):
    assert "error" not in seen, seen.get("error")
    assert seen["longest_gap"] < 0.25, seen["longest_gap"]


def test_the_hub_s_thread_pool_parses_a_config(seen):
    assert "error" not in seen, seen.get("error")
    assert seen["reparsed_off_the_hub"] is True
