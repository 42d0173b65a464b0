"""The Logs page in a real browser: live lines, text and model filters, pause and clear, ANSI colours."""

from __future__ import annotations

import sys

import requests

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, shot
from tests.helpers.server import fake_cmd

# A model that writes a coloured line when it starts, then runs the simulated upstream.
PAINTER = r'''
import os, sys
print("\033[31mred alert\033[0m plain \033[1;92mbold green\033[0m \033[38;5;208mindexed\033[0m\033]0;title\007end",
      flush=True)
os.execv(sys.executable, [sys.executable, "-m", "simulator", *sys.argv[1:]])
'''


def painter_config(tmp_path) -> str:
    script = tmp_path / "painter.py"
    script.write_text(PAINTER)
    painter = fake_cmd("paint", tmp_path, "--tokens 3").replace("-m simulator", str(script), 1)
    assert painter.startswith(sys.executable)
    return config(tmp_path).replace("models:\n", f"models:\n  paint:\n    cmd: {painter}\n", 1)


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


def test_pause_holds_the_lines_back_until_resumed_and_clear_empties_the_view(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/#/logs"))
    log = page.locator("pre.log")
    expect(log).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    unpaused = page.context.new_page()  # a second page, not paused, shows when the line has arrived
    unpaused.goto(server.url("/ui/#/logs"))
    expect(unpaused.locator("pre.log")).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    chat(server, "alpha")
    expect(unpaused.locator("pre.log")).to_contain_text("alpha: POST /v1/chat/completions 200", timeout=TIMEOUT)
    expect(page.locator("#connection")).to_have_text("live")
    assert "alpha: POST" not in log.text_content()
    unpaused.close()
    page.get_by_role("button", name="Resume").click()
    expect(log).to_contain_text("alpha: POST /v1/chat/completions 200", timeout=TIMEOUT)
    page.get_by_role("button", name="Clear").click()
    expect(log).to_have_text("")
    chat(server, "beta")  # still following after a clear
    expect(log).to_contain_text("beta: POST /v1/chat/completions 200", timeout=TIMEOUT)


def test_a_models_coloured_output_is_drawn_in_colour_and_other_models_are_filtered_out(llama_swap, tmp_path, page):
    server = llama_swap(painter_config(tmp_path))
    chat(server, "alpha")
    chat(server, "paint")
    page.goto(server.url("/ui/#/logs"))
    which = page.get_by_label("which log")
    expect(which.locator("option[value=paint]")).to_be_attached(timeout=TIMEOUT)
    which.select_option("upstream")
    log = page.locator("pre.log")
    expect(log).to_contain_text("loading model 'alpha'", timeout=TIMEOUT)
    expect(log).to_contain_text("red alert")

    which.select_option("paint")
    expect(log).to_contain_text("loading model 'paint'", timeout=TIMEOUT)
    expect(log).not_to_contain_text("loading model 'alpha'")
    red = log.locator("span.ansi-fg-1")
    expect(red).to_have_text("red alert")
    expect(log.locator("span.ansi-fg-10.ansi-bold")).to_have_text("bold green")
    # What is not a basic colour is dropped, escape and all; the text stays.
    expect(log.locator(".line", has_text="red alert")).to_have_text("red alert plain bold green indexedend")
    colour = red.evaluate("node => getComputedStyle(node).color")
    plain = log.evaluate("node => getComputedStyle(node).color")
    assert colour != plain, "the red span is drawn in the log's own colour"
    shot(page, "logs-ansi")
    page.locator("#theme").click()
    assert red.evaluate("node => getComputedStyle(node).color") not in (colour, plain)
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    shot(page, "logs-ansi-dark-phone")


def test_a_model_chosen_in_the_address_opens_its_log(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "beta")
    page.goto(server.url("/ui/#/logs/beta"))
    expect(page.get_by_label("which log")).to_have_value("beta", timeout=TIMEOUT)
    expect(page.locator("pre.log")).to_contain_text("loading model 'beta'", timeout=TIMEOUT)


def test_a_log_stream_that_ends_or_fails_is_reconnected_with_the_gap_marked_and_no_line_twice(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    history = requests.get(server.url("/logs"), timeout=5).text  # the combined log so far, as its stream sends it
    assert "llama-swap ready" in history
    calls = []

    def flaky(route):  # the first stream ends after its history, the second fails, then the server's own
        calls.append(route.request.url)
        if len(calls) == 1:
            route.fulfill(status=200, content_type="text/plain", body=history)
        elif len(calls) == 2:
            route.abort()
        else:
            route.continue_()

    page.route("**/logs/stream", flaky)
    page.goto(server.url("/ui/#/logs"))
    page.get_by_label("which log").select_option("")
    log = page.locator("pre.log")
    expect(log).to_contain_text("reconnecting…", timeout=TIMEOUT)
    expect(log).to_contain_text("— log stream reconnected —", timeout=TIMEOUT)
    assert len(calls) == 3
    chat(server, "alpha")  # a line written after the reconnect arrives
    expect(log).to_contain_text("alpha: POST /v1/chat/completions 200", timeout=TIMEOUT)
    # The reconnected stream's history repeated what was shown: it is not shown twice.
    expect(log.locator(".line", has_text="llama-swap ready")).to_have_count(1)
    expect(log).not_to_contain_text("reconnecting…")
    shot(page, "logs-reconnected")
