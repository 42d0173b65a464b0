"""The configs this project ships load as they are."""

from pathlib import Path

from app.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_projects_example_config_loads_and_documents_max_wait(monkeypatch):
    for name in ("API_KEY_1", "API_KEY_2", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(name, "x")
    config = load_config(str(ROOT / "config.example.yaml"))
    assert config.fifo_max_wait == 30
    assert "gpt-oss-120b" in config.models


def test_the_demo_config_loads():
    config = load_config(str(ROOT / "config.demo.yaml"))
    assert list(config.models) == ["demo-small", "demo-large", "demo-embed"]
    assert config.resolve("gpt-4o-mini") == "demo-small"
    assert config.models["demo-large"].send_loading_state is True
    assert config.selectors["demo-auto"].targets == ("demo-small", "demo-large")
    assert config.profiles["big"].pins == {"chat": "demo-large"}
    assert config.warnings == ()
