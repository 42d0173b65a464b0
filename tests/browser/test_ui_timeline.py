"""The swap timeline page in a real browser: a swap appears in it as it happens, with its cause."""

from __future__ import annotations

import threading

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, shot
from tests.helpers.server import fake_cmd


def test_a_swap_appears_in_the_timeline_with_the_request_that_caused_it(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3 --load-time 0.5')}\n"
                        f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 3 --load-time 1.0')}\n")
    chat(server, "alpha")  # before the page opens: it comes from /api/timeline
    page.goto(server.url("/ui/#/timeline"))
    expect(page.locator('table.swaps tr[data-swap]')).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator('g.lane[data-model="alpha"] rect.state-ready')).to_have_count(1)

    # While the page is open: beta evicts alpha, with two requests waiting for it (live, from the feed).
    waiters = [threading.Thread(target=chat, args=(server, "beta")) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join(30)
    newest = page.locator("table.swaps tbody tr").first
    expect(newest).to_contain_text("beta", timeout=TIMEOUT)
    expect(newest).to_contain_text("alpha")  # stopped for it
    expect(newest).to_contain_text("POST /v1/chat/completions from 127.0.0.1")
    expect(newest).to_contain_text("ok", timeout=TIMEOUT)
    expect(page.locator('g.lane[data-model="beta"] rect.swap')).to_have_count(1)
    expect(page.locator('g.lane[data-model="beta"] rect.state-ready')).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("svg.timeline line.evict")).to_have_count(1)
    expect(page.locator("svg.timeline text.peak")).to_have_text("2")  # both waited for beta to load
    expect(page.locator("svg.timeline")).to_have_attribute("aria-label", "Swap timeline of 2 models: 2 swaps in this window")
    expect(page.locator("main .note")).to_have_text("")  # no error on the way
    shot(page, "timeline")  # fitted to the history: the swaps fill the width
    page.get_by_role("button", name="1 hour").click()
    expect(page.get_by_role("button", name="1 hour")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="fit").click()
    page.locator("#theme").click()
    shot(page, "timeline-dark")
