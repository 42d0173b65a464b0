"""The last good config texts: kept in an unlinked file by descriptor, never half-written."""

from __future__ import annotations

import os
import tempfile

import pytest

from app import LAST_GOOD_ENV
from app.config import ConfigSources
from app.runtime import lastgood
from app.runtime.lastgood import load_first, recall, remember

SOURCES = ConfigSources(file="/etc/llama-swap/config.yaml")


@pytest.fixture
def store(monkeypatch):
    with tempfile.TemporaryFile() as file:
        monkeypatch.setenv(LAST_GOOD_ENV, str(file.fileno()))
        yield file.fileno()


def texts(body: str) -> tuple[tuple[str, str], ...]:
    return ((SOURCES.file, body),)


def test_each_remembered_config_is_recalled_whatever_its_size(store):
    assert recall(SOURCES) is None
    for body in ("a" * 10, "b" * 5000, "c" * 3, "d" * 20000, "e"):
        remember(SOURCES, texts(body))
        assert recall(SOURCES) == texts(body)
    assert os.fstat(store).st_size < 2 * 20000, "old records do not pile up"


def test_a_write_cut_before_the_switch_leaves_the_previous_record_in_force(store, monkeypatch):
    remember(SOURCES, texts("good"))
    real = os.pwrite
    writes = []

    def killed_at_the_header(fd, data, offset):
        writes.append(offset)
        if offset == 0:
            raise OSError("killed")
        return real(fd, data, offset)

    monkeypatch.setattr(lastgood.os, "pwrite", killed_at_the_header)
    remember(SOURCES, texts("half" * 100))
    assert writes[-1] == 0 and recall(SOURCES) == texts("good")


def test_another_configs_record_is_not_recalled(store):
    remember(SOURCES, texts("good"))
    assert recall(ConfigSources(file="/elsewhere.yaml")) is None


def test_a_config_that_does_not_load_falls_back_to_the_last_good_one_and_says_why(store, tmp_path):
    path = tmp_path / "config.yaml"
    sources = ConfigSources(file=str(path))
    path.write_text("models:\n  a:\n    cmd: server --port ${PORT}\n")
    assert load_first(sources).fallback_reason is None
    path.write_text("models:\n  b:\n    cmd: server\n    ttl: soon\n")
    loaded = load_first(sources)
    assert list(loaded.config.models) == ["a"] and "models.b.ttl" in loaded.fallback_reason


def test_without_a_store_a_bad_config_still_fails(tmp_path, monkeypatch):
    monkeypatch.delenv(LAST_GOOD_ENV, raising=False)
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  b:\n    cmd: server\n    ttl: soon\n")
    with pytest.raises(Exception, match="models.b.ttl"):
        load_first(ConfigSources(file=str(path)))
