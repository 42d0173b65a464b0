"""The web UI in a real browser, against the real server and the simulated upstream."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, shot
from tests.helpers.server import fake_cmd, wait_for


def test_the_models_page_shows_each_model_live_and_unloads_one(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/models"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    alpha = page.locator('tr[data-model="alpha"]')
    expect(alpha).to_contain_text("Alpha model", timeout=TIMEOUT)
    expect(page.locator('tr[data-model="beta"] .state')).to_have_text("stopped")

    chat(server, "alpha")
    expect(alpha.locator(".state")).to_have_text("ready", timeout=TIMEOUT)
    shot(page, "models")
    alpha.get_by_role("button", name="Unload").click()
    expect(alpha.locator(".state")).to_have_text("stopped", timeout=TIMEOUT)
    assert server.state_of("alpha") is None


def test_the_logs_page_shows_a_line_as_it_is_written(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/#/logs"))
    log = page.locator("pre.log")
    expect(log).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    chat(server, "beta")
    expect(log).to_contain_text("beta: POST /v1/chat/completions 200", timeout=TIMEOUT)
    page.get_by_placeholder("filter").fill("beta: POST")
    expect(log).not_to_contain_text("llama-swap ready")
    shot(page, "logs")


def test_the_activity_page_lists_a_request_and_opens_its_capture(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")
    page.goto(server.url("/ui/"))
    row = page.locator("tr[data-id]").first
    expect(row).to_contain_text("alpha", timeout=TIMEOUT)
    expect(row).to_contain_text("/v1/chat/completions")
    chat(server, "beta")  # announced by the feed: the table refreshes by itself
    expect(page.locator("tr[data-id]").first).to_contain_text("beta", timeout=TIMEOUT)
    page.locator("tr[data-id]").first.get_by_role("button", name="Capture").click()
    capture = page.locator("pre.capture")
    expect(capture).to_contain_text('"model": "beta"', timeout=TIMEOUT)
    expect(capture).to_contain_text("chat.completion")
    shot(page, "activity")


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


