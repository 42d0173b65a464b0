"""The Activity page in a real browser: in flight, the finished table (filters, sort, paging), totals and
speed histograms, captures."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import requests
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, count_messages, shot
from tests.helpers.server import fake_cmd, hang_up


def rows(page):
    return page.locator("tr[data-id]")


def test_the_activity_page_lists_a_request_and_opens_its_capture(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")
    page.goto(server.url("/ui/"))
    row = rows(page).first
    expect(row).to_contain_text("alpha", timeout=TIMEOUT)
    expect(row).to_contain_text("/v1/chat/completions")
    expect(row.locator(".status")).to_have_class("status")  # 200: not drawn as an error
    chat(server, "beta")  # announced by the feed: the table refreshes by itself
    expect(rows(page).first).to_contain_text("beta", timeout=TIMEOUT)
    rows(page).first.get_by_role("button", name="Capture").click()
    dialog = page.get_by_role("dialog")
    capture = dialog.locator("pre.capture")
    expect(capture).to_contain_text('"model": "beta"', timeout=TIMEOUT)
    expect(capture).to_contain_text("chat.completion")
    expect(dialog.locator("pre.request-body")).to_contain_text('"content": "hi"')
    shot(page, "activity-capture")
    page.keyboard.press("Escape")
    expect(dialog).not_to_be_visible()
    shot(page, "activity")


def test_filtering_by_model_shows_only_that_models_requests(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    for model in ("alpha", "beta", "alpha"):
        chat(server, model)
    page.goto(server.url("/ui/"))
    expect(rows(page)).to_have_count(3, timeout=TIMEOUT)
    models = page.get_by_label("model", exact=True)
    expect(models.locator("option[value=beta]")).to_have_count(1, timeout=TIMEOUT)  # from the feed
    models.select_option("beta")
    expect(rows(page)).to_have_count(1, timeout=TIMEOUT)
    expect(rows(page).first).to_contain_text("beta")
    expect(page.locator(".totals")).to_contain_text("1 requests")
    expect(page.locator(".totals")).to_contain_text("beta's requests")
    shot(page, "activity-filtered")
    page.get_by_role("button", name="Reset").click()
    expect(rows(page)).to_have_count(3, timeout=TIMEOUT)
    page.get_by_label("from", exact=True).fill("2099-01-01T00:00")  # a time range with nothing in it
    expect(page.get_by_text("no finished requests match")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".totals")).to_contain_text("0 requests")  # the stats follow every filter
    page.get_by_role("button", name="Reset").click()

    # By status and by path: the simulator refuses a rerank whose documents are not a list (400).
    refused = requests.post(server.url("/v1/rerank"), json={"model": "alpha", "query": "q", "documents": "x"},
                            timeout=10)
    assert refused.status_code == 400
    page.get_by_label("status", exact=True).select_option("errors")
    expect(rows(page)).to_have_count(1, timeout=TIMEOUT)
    expect(rows(page).first).to_contain_text("400")
    expect(rows(page).first.locator(".status")).to_have_class("status bad")  # an error, drawn as one
    expect(page.locator(".totals")).to_contain_text("that match")
    page.get_by_label("status", exact=True).select_option("")
    page.get_by_label("path", exact=True).fill("rerank")
    page.get_by_label("path", exact=True).press("Enter")
    expect(rows(page)).to_have_count(1, timeout=TIMEOUT)


def test_sorting_by_a_column_changes_the_order(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    for model in ("alpha", "beta"):
        chat(server, model)
    page.goto(server.url("/ui/"))
    expect(rows(page)).to_have_count(2, timeout=TIMEOUT)
    expect(rows(page).first).to_contain_text("beta")  # newest first
    heading = page.locator("th", has=page.get_by_role("button", name="model", exact=True))
    heading.get_by_role("button").click()
    expect(heading).to_have_attribute("aria-sort", "ascending", timeout=TIMEOUT)
    expect(rows(page).first).to_contain_text("alpha")
    heading.get_by_role("button").press("Enter")  # the keyboard works too: again, the other way
    expect(heading).to_have_attribute("aria-sort", "descending", timeout=TIMEOUT)
    expect(rows(page).first).to_contain_text("beta")
    # Not the newest first: a new request is announced, not slipped in.
    chat(server, "alpha")
    expect(page.get_by_role("button", name="1 new")).to_be_visible(timeout=TIMEOUT)
    expect(rows(page)).to_have_count(2)
    shot(page, "activity-sorted")
    page.get_by_role("button", name="1 new").click()
    expect(rows(page)).to_have_count(3, timeout=TIMEOUT)
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    expect(page.get_by_role("button", name="1 new")).to_be_hidden()


def test_a_streamed_answers_capture_shows_the_assembled_text(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    for path, body in (("/v1/messages", {"max_tokens": 3}), ("/v1/chat/completions", {})):  # Anthropic, OpenAI
        answer = requests.post(server.url(path), timeout=30, json={
            "model": "alpha", "stream": True, "messages": [{"role": "user", "content": "hi"}], **body})
        assert answer.status_code == 200 and "tok2" in answer.text
    page.goto(server.url("/ui/"))
    page.locator("#theme").click()
    expect(rows(page)).to_have_count(2, timeout=TIMEOUT)
    dialog = page.get_by_role("dialog")
    for index, path in ((0, "/v1/chat/completions"), (1, "/v1/messages")):
        rows(page).nth(index).get_by_role("button", name="Capture").click()
        expect(dialog.get_by_role("heading", level=2)).to_contain_text(path)
        expect(dialog.locator("pre.capture")).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
        if index == 0:
            raw = dialog.locator("details.raw")
            expect(raw.locator("summary")).to_contain_text("raw events")
            expect(raw.locator("pre")).not_to_be_visible()
            raw.locator("summary").click()
            expect(raw.locator("pre")).to_contain_text("chat.completion.chunk")
            shot(page, "activity-stream-capture-dark")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).not_to_be_visible()


def test_a_streams_reasoning_is_shown_apart_from_its_answer(page, llama_swap, tmp_path):
    server = llama_swap(config(tmp_path))  # (the simulator does not think: the reader is given the events)
    page.goto(server.url("/ui/"))
    chat_stream = ('data: {"choices":[{"delta":{"reasoning_content":"hmm "}}]}\n\n'
                   'data: {"choices":[{"delta":{"content":"yes"}}]}\n\ndata: [DONE]\n\n')
    anthropic = ('event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"thinking":"so "}}\n\n'
                 'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"no"}}\n\n')
    read = page.evaluate("""async (bodies) => {
        const { assemble } = await import("./pages/sse.js");
        return bodies.map((body) => { const s = assemble(body); return [s.text, s.reasoning, s.events.length]; });
    }""", [chat_stream, anthropic, "data: [DONE]\n\n"])
    assert read == [["yes", "hmm ", 3], ["no", "so ", 2], [None, None, 1]]
    shot(page, "activity-empty")


def test_the_speed_histograms_are_drawn_once_there_are_requests(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/"))
    expect(page.locator("figure.speed").first).to_contain_text("no speeds yet", timeout=TIMEOUT)
    for model in ("alpha", "beta"):
        chat(server, model)
    charts = page.locator("svg.histogram")
    expect(charts).to_have_count(2, timeout=TIMEOUT)
    expect(charts.first).to_have_attribute("aria-label", "prompt speed: 2 requests from 2000 to 2000 t/s; "
                                           "median 2000, p95 2000, p99 2000")
    expect(charts.first.locator("rect.bar")).to_have_count(1)
    expect(page.locator(".totals")).to_contain_text("2 requests")
    shot(page, "activity-histograms")
    page.locator("#theme").click()
    page.set_viewport_size({"width": 390, "height": 800})
    # The page's content fits (the table scrolls inside itself); the header's nav is the shell's.
    assert page.evaluate("document.getElementById('page').scrollWidth") <= 390
    shot(page, "activity-phone-dark")


def test_a_request_in_flight_is_shown_live_and_cancelled(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 400 --token-delay 0.05')}\n")
    page.goto(server.url("/ui/"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    ended = threading.Event()

    def stream():
        try:
            with requests.post(server.url("/v1/chat/completions"), stream=True, timeout=30,
                               headers={"User-Agent": "activity-test/1.0", "X-Session-Id": "session-42"},
                               json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
                for _ in r.iter_content(None):
                    pass
        except requests.RequestException:
            pass  # cut by the cancel
        ended.set()

    threading.Thread(target=stream, daemon=True).start()
    row = page.locator("tr[data-inflight]")
    expect(row).to_contain_text("POST /v1/chat/completions", timeout=TIMEOUT)
    expect(row).to_contain_text("activity-test/1.0")
    expect(row).to_contain_text("session-42")  # a header the config names (ui.activity.session_id)
    expect(row).to_contain_text("answering", timeout=TIMEOUT)
    expect(row).not_to_contain_text("0 B", timeout=TIMEOUT)  # the bytes received move
    shot(page, "activity-inflight")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_count(0, timeout=TIMEOUT)
    expect(page.get_by_text("nothing in flight")).to_be_visible()
    assert ended.wait(10), "the cancelled stream did not end"


def test_requests_ending_in_a_burst_refresh_the_page_once_and_once_more_after_the_wait(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")
    page.clock.install()  # the page's timers wait for the test: the refresh after the wait comes when told
    page.goto(server.url("/ui/"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    expect(rows(page)).to_have_count(1, timeout=TIMEOUT)
    announced = count_messages(page, server, "activity")
    asked = []
    page.on("request", lambda r: asked.append(r.url.split("?")[0].rsplit("/", 1)[-1]))
    page.clock.pause_at(datetime.now() + timedelta(seconds=1))

    for _ in range(5):
        chat(server, "alpha")
    announced(5)
    assert (asked.count("activity"), asked.count("stats")) == (1, 1), asked  # the first message, at once
    page.clock.run_for(1600)
    expect(rows(page)).to_have_count(6, timeout=TIMEOUT)  # the last message is not left unshown
    expect(page.locator(".totals")).to_contain_text("6 requests")
    assert (asked.count("activity"), asked.count("stats")) == (2, 2), asked
    shot(page, "activity-burst")


def test_elapsed_time_in_flight_is_the_servers_whatever_the_browsers_clock_says(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 400 --token-delay 0.05')}\n")
    page.clock.install(time=datetime.now() + timedelta(hours=1))  # a browser clock an hour fast
    page.goto(server.url("/ui/"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    held = requests.post(server.url("/v1/chat/completions"), stream=True, timeout=30, json={
        "model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    try:
        row = page.locator("tr[data-inflight]")
        expect(row).to_contain_text("answering", timeout=TIMEOUT)
        elapsed = row.locator("td").nth(6)
        expect(elapsed).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))  # seconds, not "60 min"
        shot(page, "activity-inflight-skewed-clock")
    finally:
        hang_up(held)


def column_menu(page):
    """The finished table's column chooser, opened."""
    menu = page.locator("details.columns")
    menu.locator("summary").click()
    return menu


def test_a_column_hidden_or_moved_stays_so_after_a_reload(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")
    page.goto(server.url("/ui/"))
    finished = page.locator("table.finished")
    expect(finished.locator("th")).to_contain_text(["#", "time", "model", "path"], timeout=TIMEOUT)
    menu = column_menu(page)
    menu.get_by_role("checkbox", name="show path").uncheck()
    menu.get_by_role("button", name="move model up").click()
    shot(page, "activity-columns")
    expect(finished.locator("th", has_text="path")).to_have_count(0)
    page.reload()
    expect(rows(page).first).to_contain_text("alpha", timeout=TIMEOUT)
    headings = finished.locator("th").all_text_contents()
    assert "path" not in headings and headings.index("model") < headings.index("time"), headings
    assert "/v1/chat/completions" not in rows(page).first.inner_text()
    assert "path" in page.evaluate("localStorage.getItem('llama-swap.activity.columns')")
    page.set_viewport_size({"width": 390, "height": 800})
    column_menu(page)
    shot(page, "activity-columns-phone")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0


def test_the_finished_table_downloads_as_markdown_as_it_is_sorted_with_its_visible_columns(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "beta")
    chat(server, "alpha")
    page.goto(server.url("/ui/"))
    expect(rows(page)).to_have_count(2, timeout=TIMEOUT)
    column_menu(page).get_by_role("checkbox", name="show cached").uncheck()
    page.locator("details.columns summary").click()  # closed again
    page.get_by_role("button", name="model").click()  # sorted by model, A→Z
    expect(rows(page).first).to_contain_text("alpha", timeout=TIMEOUT)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .md").click()
    assert re.fullmatch(r"llama-swap-activity-[\d-]+T[\d-]+\.md", download.value.suggested_filename)
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert lines[0].startswith("| # | time | model | path | status | in | out |"), lines[0]
    assert "cached" not in lines[0]
    assert lines[1].startswith("| --- | --- |")
    assert len(lines) == 4 and "| alpha |" in lines[2] and "| beta |" in lines[3], lines
    assert "/v1/chat/completions | 200 |" in lines[2]
    expect(page.get_by_role("status").filter(has_text="downloaded 2 rows")).to_be_visible()
    shot(page, "activity-markdown")
    page.locator("#theme").click()
    shot(page, "activity-markdown-dark")
