"""The config watch on its own: judged by content, off the hub, and never stopped by a failure."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent
import pytest

from app.config import ConfigSources, load_sources
from app.runtime.reload import ConfigWatch, load_off_the_hub
from app.runtime.server import EXTENSION
from scheduler.router import Applied

GOOD = "models:\n  a:\n    cmd: server --port ${PORT}\n"


class Watched:
    """A config file, a stand-in app serving its config, and a watch whose ``apply`` the test scripts."""

    def __init__(self, tmp_path, fail_first: bool = False) -> None:
        self.path = tmp_path / "config.yaml"
        self.path.write_text(GOOD)
        self.sources = ConfigSources(file=str(self.path))
        self.server = SimpleNamespace(config=load_sources(self.sources))
        self.applied: list[object] = []
        self.fail_first = fail_first
        app = SimpleNamespace(extensions={EXTENSION: self.server})
        self.watch = ConfigWatch(app, self.sources, ((str(self.path), GOOD),), self.apply)

    def apply(self, config) -> Applied:
        if self.fail_first and not self.applied:
            self.applied.append("failed")
            raise RuntimeError("building the new config blew up")
        self.applied.append(config)
        self.server.config = config
        return Applied(added=tuple(config.models))

    def edit(self, text: str) -> None:
        self.path.write_text(text)
        self.watch.poll()


def test_an_exception_while_applying_is_logged_and_the_next_edit_still_applies(tmp_path, caplog):
    w = Watched(tmp_path, fail_first=True)
    w.edit(GOOD.replace("a:", "b:"))
    assert w.applied == ["failed"] and "building the new config blew up" in caplog.text
    w.edit(GOOD.replace("a:", "c:"))
    assert list(w.applied[-1].models) == ["c"]


def test_an_unreadable_file_is_refused_and_watched_on(tmp_path, caplog):
    w = Watched(tmp_path)
    w.path.write_bytes(b"models: \xff\n")
    w.watch.poll()
    assert w.applied == [] and "not UTF-8" in caplog.text
    w.edit(GOOD.replace("a:", "b:"))
    assert list(w.applied[-1].models) == ["b"]


def test_an_edit_back_to_the_running_content_applies_nothing(tmp_path, caplog):
    w = Watched(tmp_path)
    w.edit(GOOD + "    ttl: soon\n")
    assert "models.a.ttl" in caplog.text
    w.edit(GOOD)
    assert w.applied == []


def test_parsing_a_slow_config_leaves_the_hub_serving(tmp_path):
    nested = "[" * 99 + "]" * 99
    text = GOOD + "".join(f"x{i}: {nested}\n" for i in range(30))
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in iter(int, 1)])
    began = time.monotonic()
    try:
        load_off_the_hub(ConfigSources(file="big.yaml"), (("big.yaml", text),))
    finally:
        took = time.monotonic() - began
        ticker.kill()
    if took < 0.1:
        pytest.skip(f"the parse took only {took:.3f}s here: nothing to measure")
    assert len(ticks) >= took / 0.01 / 4, f"{len(ticks)} ticks in {took:.2f}s: the hub was blocked"
