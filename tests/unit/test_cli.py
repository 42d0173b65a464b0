"""The command line: bad flags and bad configs end the program with one line naming what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.__main__ import config_sources, main, parse_args, parse_listen
from app.config import ConfigSources
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


@pytest.mark.parametrize("name, value", [
    ("LLAMA_SWAP_SHUTDOWN_GRACE", "abc"), ("LLAMA_SWAP_SHUTDOWN_GRACE", "-1"),
    ("LLAMA_SWAP_BODY_TIMEOUT", "nan"), ("LLAMA_SWAP_BODY_TIMEOUT", "inf"),
])
def test_main_refuses_a_bad_number_of_seconds_in_the_environment_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        name: str, value: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: {}\n")
    monkeypatch.setenv(name, value)

    assert main(["--config", str(config), "--listen", "127.0.0.1:8080"]) == 1
    assert capsys.readouterr().err == (
        f"llama-swap: {name}={value!r}: expected a number of seconds, 0 or more\n")


@pytest.mark.parametrize("argv, file, directory", [
    ([], "config.yaml", None),
    (["--config-dir", "models"], None, "models"),
    (["-config-dir", "models"], None, "models"),
    (["-config", "base.yaml", "-config-dir", "models"], "base.yaml", "models"),
    (["--config", "base.yaml"], "base.yaml", None),
])
def test_config_and_config_dir_name_the_sources_alone_or_together(
        argv: list[str], file: str | None, directory: str | None) -> None:
    args = parse_args(argv)
    sources = config_sources(args.config, args.config_dir)
    assert sources == ConfigSources(file=file and os.path.abspath(file),
                                    directory=directory and os.path.abspath(directory))


def test_main_refuses_a_conflict_between_fragments_naming_the_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("models:\n  a:\n    cmd: x ${PORT}\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "dup.yaml").write_text("models:\n  a:\n    cmd: y ${PORT}\n")

    assert main(["-config", str(tmp_path / "config.yaml"), "-config-dir", str(tmp_path / "models"),
                 "--listen", "127.0.0.1:8080"]) == 1
    assert capsys.readouterr().err == (
        f'llama-swap: duplicate models "a" found in {tmp_path}/models/dup.yaml '
        "(already defined in another config source)\n")


def test_the_process_title_is_llama_swap_then_its_arguments() -> None:
    argv = ["--config", "/srv/config.yaml", "--listen", ":8080"]
    assert title(argv=argv) == "llama-swap --config /srv/config.yaml --listen :8080"
    assert title("worker", argv) == "llama-swap worker --config /srv/config.yaml --listen :8080"
