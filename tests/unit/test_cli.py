"""The command line: bad flags and bad configs end the program with one line naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.__main__ import main, parse_listen
from app.proctitle import title


@pytest.mark.parametrize("listen, bind", [
    (":8080", "0.0.0.0:8080"),
    ("127.0.0.1:0", "127.0.0.1:0"),
    ("localhost:65535", "localhost:65535"),
    ("[::1]:8080", "[::1]:8080"),
])
def test_listen_becomes_a_gunicorn_bind(listen: str, bind: str) -> None:
    assert parse_listen(listen) == bind


@pytest.mark.parametrize("listen, message", [
    ("8080", "--listen '8080': expected HOST:PORT or :PORT"),
    (":http", "--listen ':http': expected HOST:PORT or :PORT"),
    (":65536", "--listen ':65536': the port must be from 0 to 65535"),
    (":99999999999999999999", "--listen ':99999999999999999999': the port must be from 0 to 65535"),
    (":٣٣", "--listen ':٣٣': expected HOST:PORT or :PORT"),
])
def test_a_bad_listen_is_refused(listen: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_listen(listen)
    assert str(caught.value) == message


def test_main_refuses_a_port_above_65535_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: {}\n")

    assert main(["--config", str(config), "--listen", "127.0.0.1:70000"]) == 1
    assert capsys.readouterr().err == (
        "llama-swap: --listen '127.0.0.1:70000': the port must be from 0 to 65535\n")


def test_main_refuses_a_bad_config_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  a:\n    cmd: x ${PORT}\n    ttl: .nan\n")

    assert main(["--config", str(config), "--listen", "127.0.0.1:8080"]) == 1
    assert capsys.readouterr().err == "llama-swap: models.a.ttl: must be a finite number\n"


def test_the_process_title_is_llama_swap_then_its_arguments() -> None:
    argv = ["--config", "/srv/config.yaml", "--listen", ":8080"]
    assert title(argv=argv) == "llama-swap --config /srv/config.yaml --listen :8080"
    assert title("worker", argv) == "llama-swap worker --config /srv/config.yaml --listen :8080"
