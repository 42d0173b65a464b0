"""The Settings page in a real browser: the theme (in sync with the header's toggle), the API key, the Models
page's capability tags, the server's version."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, config, shot
from tests.helpers.server import fake_cmd


def theme(page) -> str:
    return page.evaluate("document.documentElement.dataset.theme")


def test_the_theme_is_chosen_here_or_in_the_header_and_both_agree(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.emulate_media(color_scheme="dark")
    page.goto(server.url("/ui/#/settings"))
    choices = page.get_by_role("group", name="Theme")
    expect(choices.get_by_role("radio", name="System")).to_be_checked(timeout=TIMEOUT)
    assert theme(page) == "dark"  # the system's
    page.emulate_media(color_scheme="light")  # followed as it changes
    page.wait_for_function("document.documentElement.dataset.theme === 'light'", timeout=TIMEOUT)

    choices.get_by_role("radio", name="Dark").check()
    assert theme(page) == "dark"
    assert page.evaluate("localStorage.getItem('llama-swap.theme')") == "dark"
    shot(page, "settings-dark")
    page.locator("#theme").click()  # the header's toggle: the page's choice follows
    expect(choices.get_by_role("radio", name="Light")).to_be_checked()
    assert theme(page) == "light"
    shot(page, "settings")
    choices.get_by_role("radio", name="System").check()
    assert page.evaluate("localStorage.getItem('llama-swap.theme')") is None
    page.reload()
    expect(page.get_by_role("radio", name="System")).to_be_checked(timeout=TIMEOUT)

    expect(page.locator("section[aria-label=Server]")).to_contain_text("version", timeout=TIMEOUT)
    version = page.evaluate("fetch('../api/version').then((r) => r.json())")
    expect(page.locator("section[aria-label=Server] dd").first).to_have_text(version["version"])
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "settings-phone")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0


def test_the_api_key_is_shown_as_set_forgotten_and_changed(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path, "apiKeys: [sk-one, sk-two]\n"))
    page.goto(server.url("/ui/#/settings"))
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible(timeout=TIMEOUT)  # the version (and the feed) ask for it
    page.locator("#key-input").fill("sk-one")
    page.get_by_role("button", name="Use it").click()
    key = page.locator("section[aria-label='API key']")
    page.reload()
    expect(key).to_contain_text("API key: set", timeout=TIMEOUT)
    expect(page.locator("section[aria-label=Server] dd").first).not_to_have_text("loading…", timeout=TIMEOUT)

    key.get_by_role("button", name="Change key").click()
    expect(dialog).to_be_visible()
    expect(page.locator("#key-refused")).to_be_hidden()  # not refused: asked for another
    page.locator("#key-input").fill("sk-two")
    page.get_by_role("button", name="Use it").click()
    expect(dialog).to_be_hidden()
    # the dialog's close event stores the key a moment after the click: wait for it, do not read at once
    page.wait_for_function("localStorage.getItem('llama-swap.api-key') === 'sk-two'", timeout=TIMEOUT)
    expect(key).to_contain_text("API key: set")

    key.get_by_role("button", name="Forget key").click()
    expect(key).to_contain_text("API key: not set")
    expect(key.get_by_role("button", name="Forget key")).to_be_disabled()
    assert page.evaluate("localStorage.getItem('llama-swap.api-key')") is None
    shot(page, "settings-key-forgotten")
    page.goto(server.url("/ui/#/models"))  # the next request asks again
    expect(dialog).to_be_visible(timeout=TIMEOUT)


def test_the_models_page_shows_capability_tags_unless_turned_off(llama_swap, tmp_path, page):
    server = llama_swap(f"healthCheckTimeout: 15\nmodels:\n  seer:\n    cmd: {fake_cmd('seer', tmp_path)}\n"
                        "    capabilities: {in: [text, image], out: [text]}\n")
    page.goto(server.url("/ui/#/models"))
    row = page.locator('tr[data-model="seer"]')
    expect(row.locator(".tag", has_text="vision")).to_be_visible(timeout=TIMEOUT)
    page.goto(server.url("/ui/#/settings"))
    tags = page.get_by_role("checkbox", name="Show capability tags on the Models page")
    expect(tags).to_be_checked()
    tags.uncheck()
    page.goto(server.url("/ui/#/models"))
    expect(row).to_be_visible(timeout=TIMEOUT)
    expect(row.locator(".tag")).to_have_count(0)
    expect(page.locator("th", has_text="capabilities")).to_have_count(0)
    shot(page, "models-without-tags")
    page.reload()  # kept
    expect(row).to_be_visible(timeout=TIMEOUT)
    expect(row.locator(".tag")).to_have_count(0)
