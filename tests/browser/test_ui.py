"""The web UI in a real browser, against the real server and the simulated upstream."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, shot


DEMO = Path(__file__).resolve().parents[2] / "config.demo.yaml"


def test_the_demo_configs_models_selector_and_profiles_show_and_a_demo_model_answers(llama_swap, tmp_path, page):
    # The bundled demo config (`make run`), its simulator run by this interpreter and marked with the test's dir.
    demo = DEMO.read_text().replace(
        "fake: python -m simulator", f"fake: {sys.executable} -m simulator --starts-file {tmp_path}/starts-${{MODEL_ID}}")
    server = llama_swap(demo)
    page.goto(server.url("/ui/#/models"))
    for model in ("demo-small", "demo-large", "demo-embed"):
        expect(page.locator(f'tr[data-model="{model}"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("main")).to_contain_text("demo-auto")  # the selector, with its targets
    profiles = page.locator("#profile-slot select")
    expect(profiles.locator("option")).to_have_text(["no profile", "big", "small"])
    chat(server, "gpt-4o-mini")  # demo-small's alias
    expect(page.locator('tr[data-model="demo-small"] .state')).to_have_text("ready", timeout=TIMEOUT)
    shot(page, "demo-models")


def test_behind_an_api_key_the_ui_asks_for_it_once(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path, "apiKeys: [sk-ui-test]\n"))
    page.goto(server.url("/ui/models"))
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible(timeout=TIMEOUT)
    page.locator("#key-input").fill("sk-ui-test")
    page.get_by_role("button", name="Use it").click()
    expect(page.locator('tr[data-model="alpha"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    page.reload()  # kept in the browser: not asked again
    expect(page.locator('tr[data-model="beta"]')).to_be_visible(timeout=TIMEOUT)
    expect(dialog).not_to_be_visible()
    assert re.search("sk-ui-test", page.evaluate("localStorage.getItem('llama-swap.api-key')"))
    shot(page, "api-key")


# Each page, and what shows once its data is drawn.
PAGES = {"activity": "tr[data-id]", "timeline": "table.swaps", "models": "tr[data-model]",
         "logs": "pre.log:has-text('llama-swap ready')", "playground": "select[aria-label=model] option",
         "performance": "main svg", "hardware": "section.hw-card", "settings": "section[aria-label=Server] dd"}


def test_every_page_fits_a_phone_screen(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")  # something in every table
    page.set_viewport_size({"width": 390, "height": 800})
    for name, drawn in PAGES.items():
        page.goto(server.url(f"/ui/#/{name}"))
        expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
        expect(page.locator(drawn).first).to_be_attached(timeout=TIMEOUT)
        shot(page, f"phone-{name}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the {name} page is {overflow} px wider than a phone's screen"


def test_the_ui_works_from_the_keyboard(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    for _ in range(20):  # Tab along the header until the Models link has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.page") == "models":
            break
    else:
        raise AssertionError("Tab never reached the Models link")
    page.keyboard.press("Enter")
    expect(page.locator('tr[data-model="alpha"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator('nav a[aria-current="page"]')).to_have_text("Models")
    page.keyboard.press("Tab")  # the focus moved into the page: the next Tab is the page's first control
    assert page.evaluate("document.activeElement.closest('main') !== null")
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.locator("#theme").focus()
    page.keyboard.press("Space")
    assert page.evaluate("document.documentElement.dataset.theme") != theme
