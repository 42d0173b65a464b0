"""--config-dir: a base file plus fragments serve as one config, a conflict stops the start, --watch-config follows the directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.helpers.server import fake_cmd, free_port, wait_for
from tests.helpers.upstream import REPO_ROOT


def chat(name: str) -> dict:
    return {"model": name, "messages": [{"role": "user", "content": "hi"}]}


def listed(server) -> list[str]:
    return [m["id"] for m in requests.get(server.url("/v1/models"), timeout=5).json()["data"]]


def fragment(directory: Path, name: str, model: str, workdir: Path) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(f"models:\n  {model}:\n    cmd: {fake_cmd(model, workdir)}\n")


def test_a_base_file_and_its_fragments_serve_every_files_models(llama_swap, tmp_path):
    fragments = tmp_path / "models"
    fragment(fragments, "extra.yaml", "extra", tmp_path)
    server = llama_swap(f"models:\n  base:\n    cmd: {fake_cmd('base', tmp_path)}\n",
                        "-config-dir", str(fragments))

    assert listed(server) == ["base", "extra"]
    for model in ("base", "extra"):
        reply = requests.post(server.url("/v1/chat/completions"), json=chat(model), timeout=30)
        assert reply.status_code == 200, reply.text


def test_a_model_in_two_files_stops_the_start_naming_the_file_and_the_model(tmp_path):
    (tmp_path / "config.yaml").write_text("models:\n  llama:\n    cmd: a ${PORT}\n")
    fragments = tmp_path / "models"
    fragments.mkdir()
    (fragments / "llama.yaml").write_text("models:\n  llama:\n    cmd: b ${PORT}\n")

    done = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(tmp_path / "config.yaml"),
         "--config-dir", str(fragments), "--listen", f"127.0.0.1:{free_port()}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    assert done.returncode == 1
    assert done.stderr == (f'llama-swap: duplicate models "llama" found in {fragments}/llama.yaml '
                           "(already defined in another config source)\n")


def test_watch_config_reloads_when_a_fragment_is_added_or_removed(llama_swap, tmp_path):
    fragments = tmp_path / "models"
    fragment(fragments, "first.yaml", "first", tmp_path)
    server = llama_swap("", "--config-dir", str(fragments), "--watch-config")
    assert listed(server) == ["first"]

    fragment(fragments, "second.yaml", "second", tmp_path)
    wait_for(lambda: listed(server) == ["first", "second"], timeout=10,
             what=f"the new fragment's model to be served\n{server.log()}")
    reply = requests.post(server.url("/v1/chat/completions"), json=chat("second"), timeout=30)
    assert reply.status_code == 200, reply.text

    (fragments / "first.yaml").unlink()
    wait_for(lambda: listed(server) == ["second"], timeout=10,
             what=f"the removed fragment's model to go\n{server.log()}")
    # "second" is the same model still (its ${PORT} moved down, its command did not): it runs on
    assert server.state_of("second") == "ready" and len(server.starts("second")) == 1
