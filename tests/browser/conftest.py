"""Browser tests: Playwright for Python driving the system's Chromium (Debian's ``chromium``; no download).

Skipped, saying why, when no Chromium is installed (CI installs it: ``.ci/run``).
Each test gets a fresh page; ``shot(page, name)`` saves a screenshot under
``tests/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.helpers.server import fake_cmd

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium found (install Debian's chromium package to run the browser tests)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


TIMEOUT = 10_000  # ms


def config(tmp_path, extra: str = "") -> str:
    return (f"healthCheckTimeout: 15\n{extra}models:\n"
            f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3')}\n    name: Alpha model\n"
            f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 3')}\n")


def chat(server, model: str, headers: dict | None = None) -> None:
    r = requests.post(server.url("/v1/chat/completions"), headers=headers or {}, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


def count_messages(page, server, kind: str):
    """Counts the feed's ``kind`` messages as the page receives them (through the page's own api.js); returns
    a function that waits until ``n`` have arrived."""
    page.evaluate("""async ([url, kind]) => {
        const api = await import(url);
        window.received = window.received || {};
        window.received[kind] = 0;
        api.on(kind, () => { window.received[kind] += 1; });
    }""", [server.url("/ui/api.js"), kind])
    return lambda n: page.wait_for_function(f"window.received[{kind!r}] >= {n}", timeout=TIMEOUT)
