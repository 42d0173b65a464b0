"""The real server refuses a hostile config or flag at start: non-zero exit, the key on stderr, fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.server import REPO_ROOT, free_port, wait_for
from tests.unit.test_config_refusals import SPILL, TWO, alias_bomb, macro_chain, nested

REFUSALS = [
    ("alias bomb", alias_bomb(9), [], "a3[3][6][6][4]: document contains excessive aliasing"),
    ("NUL byte", "models:\n  a:\n    cmd: x\x00y\n", [],
     "models.a.cmd: contains the character U+0000"),
    ("deep nesting", nested(5000), [], "models.a.metadata.x[0][0]…: nested deeper than 100"),
    ("exploding macros", macro_chain(30), [], "models.a.cmd: expands to more than 1048576"),
    ("nan timeout", "models:\n  a:\n    cmd: x ${PORT}\n    unloadTimeout: .nan\n", [],
     "models.a.unloadTimeout: must be a finite number"),
    ("ports past 65535", "startPort: 65535\nmodels:\n  a: {cmd: 'a ${PORT}'}\n"
     "  b: {cmd: 'b ${PORT}'}\n", [], "startPort: 65535 leaves no port for model 'b'"),
    ("proxy not http", "models:\n  a:\n    cmd: x\n    proxy: 'ftp://h:1'\n", [],
     'models.a.proxy: must be an http:// or https:// URL with a host, got "ftp://h:1"'),
    ("listen port", "models: {}\n", ["--listen", "127.0.0.1:70000"],
     "--listen '127.0.0.1:70000': the port must be from 0 to 65535"),
    # what Go refuses (issue 12)
    ("pin chain", TWO + "profiles:\n  test:\n    pins: {first: a, second: first}\n", [],
     'profiles.test.pins.second: references unknown model "first": "first" is a pin'),
    ("spillover that swaps", TWO + SPILL, [],
     "selectors.s.targets: spillover targets must share a group with swap: false"),
    ("setParamsByID keys that collide", "models:\n  a:\n    cmd: 'a ${PORT}'\n"
     "    filters: {setParamsByID: {'${MODEL_ID}:x': {}, 'a:x': {}}}\n", [],
     'models.a.filters.setParamsByID: keys "${MODEL_ID}:x" and "a:x" resolve to the same'),
    ("legacy list profiles", TWO + "profiles:\n  coding: [a, b]\n", [],
     "profiles.coding: profile must be a mapping with description and pins; the legacy list "
     "syntax is no longer supported. To run these models together, put them in a group"),
    ("unknown macro in apiKeys", "apiKeys: ['${KEY}']\n", [],
     "apiKeys[0]: unknown macro '${KEY}'"),
]


@pytest.mark.parametrize("config, args, message", [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_the_server_refuses_to_start_naming_the_key(tmp_path: Path, config: str,
                                                    args: list[str], message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(path),
         "--listen", f"127.0.0.1:{free_port()}", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    assert done.returncode == 1
    assert done.stderr.startswith(f"llama-swap: {message}"), done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_config_starts_and_says_so(llama_swap) -> None:
    server = llama_swap("")

    wait_for(lambda: "no models and no peers are defined" in server.log(), timeout=10,
             what=f"the empty-config warning in the log\n{server.log()}")
