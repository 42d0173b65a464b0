"""Take the README's screenshots (docs/images/*.png) of the UI on the bundled demo config.

Run from the repository root with the venv's Python and Debian's chromium installed:
``.venv/bin/python docs/make_screenshots.py``. It starts the real server on the demo
config (in a temporary directory), sends a few requests that make it swap, and
saves the Activity page and the swap timeline. Everything it starts is stopped.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import requests
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM  # noqa: E402
from tests.helpers.server import LlamaSwapServer  # noqa: E402

IMAGES = ROOT / "docs" / "images"


def chat(server: LlamaSwapServer, model: str, stream: bool = False) -> None:
    requests.post(server.url("/v1/chat/completions"), timeout=60, json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": "Tell me about swaps."}]}).close()


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        demo = (ROOT / "config.demo.yaml").read_text().replace("fake: python -m simulator",
                                                                f"fake: {sys.executable} -m simulator")
        server = LlamaSwapServer(Path(workdir), demo).start()
        try:
            chat(server, "demo-small")
            chat(server, "demo-small", stream=True)
            waiters = [threading.Thread(target=chat, args=(server, "demo-large")) for _ in range(3)]
            for waiter in waiters:
                waiter.start()
            for waiter in waiters:
                waiter.join()
            chat(server, "gpt-4o-mini", stream=True)
            chat(server, "demo-embed")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(server.url("/ui/"))
                expect(page.locator("tr[data-id]")).to_have_count(7, timeout=10_000)
                expect(page.locator("figure.speed svg")).to_have_count(2, timeout=10_000)
                page.screenshot(path=str(IMAGES / "activity.png"))
                page.goto(server.url("/ui/#/timeline"))
                expect(page.locator("table.swaps tr[data-swap]")).to_have_count(4, timeout=10_000)
                page.screenshot(path=str(IMAGES / "timeline.png"))
                browser.close()
        finally:
            server.stop()
    print(f"saved {IMAGES / 'activity.png'} and {IMAGES / 'timeline.png'}")


if __name__ == "__main__":
    main()
