"""The web UI in a real browser, against the real server and the simulated upstream."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, shot
from tests.helpers.server import fake_cmd, wait_for


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


def test_the_playground_streams_an_answer_shows_the_loading_and_stops(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nsendLoadingState: true\nmodels:\n"
                        f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3 --load-time 0.8')}\n"
                        f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 400 --token-delay 0.05')}\n")
    page.goto(server.url("/ui/#/playground"))
    expect(page.locator("select[aria-label=model] option")).to_have_count(2, timeout=TIMEOUT)
    page.locator("select[aria-label=model]").select_option("alpha")
    page.get_by_label("message").fill("hello there")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg.thinking")).to_contain_text("llama-swap loading model: alpha", timeout=TIMEOUT)
    expect(page.locator(".msg.assistant").last).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
    shot(page, "playground")

    page.locator("select[aria-label=model]").select_option("slow")
    page.get_by_label("message").fill("a long one")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant").last
    expect(answer).to_contain_text("tok3", timeout=TIMEOUT)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=TIMEOUT)
    stopped_at = answer.text_content()
    page.wait_for_timeout(300)  # a stream still running would add a token every 50 ms
    assert answer.text_content() == stopped_at and "tok399" not in stopped_at
    # The server saw the hang-up: the upstream stream was cut, not left running.
    wait_for(lambda: any(line.startswith("[INFO] slow: POST /v1/chat/completions 200")
                         and line.endswith("client gone") for line in server.log().splitlines()),
             timeout=10, what="the stopped stream's access line")
