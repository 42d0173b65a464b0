"""The Models page, a model's own page and the header's profile switcher, in a real browser."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, count_messages, shot
from tests.helpers.server import fake_cmd, hang_up

PHONE = {"width": 390, "height": 800}


def naming_config(tmp_path) -> str:
    """Two models (one with aliases and capabilities), a selector over both, two profiles pinning them, a peer."""
    return ("healthCheckTimeout: 15\nmodels:\n"
            f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3')}\n    name: Alpha model\n"
            "    description: the first one\n    aliases: [a1, first]\n"
            "    capabilities: {in: [text, image], out: [text], tools: true, context: 8192}\n"
            f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 3')}\n"
            "selectors:\n  either:\n    strategy: warm\n    targets: [alpha, beta]\n"
            "    name: Whichever is warm\n"
            "profiles:\n  coding:\n    description: code work\n    pins: {llm: beta, vision: ~}\n"
            "  writing:\n    pins: {llm: a1}\n"
            "peers:\n  box:\n    proxy: http://127.0.0.1:9\n    models: [remote]\n")


def no_horizontal_overflow(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


def test_the_models_page_shows_each_model_live_unloads_and_loads_one(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    page.goto(server.url("/ui/models"))
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)
    alpha = page.locator('tr[data-model="alpha"]')
    expect(alpha).to_contain_text("Alpha model", timeout=TIMEOUT)
    expect(page.locator('tr[data-model="beta"] .state')).to_have_text("stopped")
    expect(page.locator("#profile-slot")).to_be_hidden()  # no profiles in this config

    chat(server, "alpha")
    expect(alpha.locator(".state")).to_have_text("ready", timeout=TIMEOUT)
    shot(page, "models")
    alpha.get_by_role("button", name="Unload").click()
    expect(alpha.locator(".state")).to_have_text("stopped", timeout=TIMEOUT)
    assert server.state_of("alpha") is None

    alpha.get_by_role("button", name="Load", exact=True).click()
    expect(alpha.locator(".state")).to_have_text("ready", timeout=TIMEOUT)
    assert server.state_of("alpha") == "ready"

    # From the keyboard: the rows are drawn again at each state change, and the focus stays in beta's row
    # (on Unload once Load is disabled), so Enter again unloads what Enter loaded.
    beta = page.locator('tr[data-model="beta"]')
    beta.get_by_role("button", name="Load", exact=True).focus()
    page.keyboard.press("Enter")
    expect(beta.locator(".state")).to_have_text("ready", timeout=TIMEOUT)
    expect(beta.get_by_role("button", name="Unload")).to_be_focused()
    page.keyboard.press("Enter")
    expect(beta.locator(".state")).to_have_text("stopped", timeout=TIMEOUT)


def test_a_manual_load_waits_as_queued_while_another_model_is_busy_and_can_be_cancelled(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  busy:\n    cmd: {fake_cmd('busy', tmp_path, '--tokens 400 --token-delay 0.05')}\n"
                        f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 3')}\n")
    held = requests.post(server.url("/v1/chat/completions"), stream=True, timeout=30, json={
        "model": "busy", "stream": True, "messages": [{"role": "user", "content": "long"}]})
    try:
        assert held.status_code == 200
        page.goto(server.url("/ui/#/models"))
        beta = page.locator('tr[data-model="beta"]')
        beta.get_by_role("button", name="Load", exact=True).click()
        expect(beta.locator(".state")).to_have_text("queued", timeout=TIMEOUT)  # busy holds the only slot
        shot(page, "models-queued")
        beta.get_by_role("button", name="Cancel").click()
        expect(beta.locator(".state")).to_have_text("stopped", timeout=TIMEOUT)
        expect(beta.get_by_role("button", name="Load", exact=True)).to_be_enabled()
    finally:
        hang_up(held)
    expect(page.locator('tr[data-model="busy"] .state')).to_have_text("ready", timeout=TIMEOUT)
    assert server.starts("beta") == [], "the cancelled load left the queue: beta never started"


def test_aliases_capabilities_selectors_and_profiles_show_and_the_header_switches_profile(llama_swap, tmp_path, page):
    server = llama_swap(naming_config(tmp_path))
    page.goto(server.url("/ui/#/models"))
    alpha = page.locator('tr[data-model="alpha"]')
    expect(alpha).to_contain_text("first", timeout=TIMEOUT)  # an alias
    for tag in ("vision", "tools", "8192 ctx"):
        expect(alpha.locator(".tag", has_text=tag)).to_be_visible()
    selector = page.locator('tr[data-selector="either"]')
    expect(selector).to_contain_text("Whichever is warm", timeout=TIMEOUT)
    expect(selector).to_contain_text("warm")
    expect(selector.locator(".target")).to_have_text(["alpha stopped", "beta stopped"])
    coding = page.locator('tr[data-profile="coding"]')
    expect(coding.locator('[data-pin="llm"]')).to_have_text("llm → beta stopped", timeout=TIMEOUT)
    expect(coding.locator('[data-pin="vision"]')).to_have_text("vision → nothing")
    expect(page.locator('tr[data-profile="writing"] [data-pin="llm"]')).to_contain_text("a1")

    peer = page.locator('tr[data-model="box/remote"]')
    expect(peer.locator("td")).to_have_text(["box/remote", "box", "peer"])

    switcher = page.locator("#profile-slot select")
    expect(switcher).to_have_value("")
    switcher.select_option("coding")
    expect(coding).to_contain_text("active", timeout=TIMEOUT)
    assert requests.get(server.url("/api/profiles"), timeout=5).json()["active"] == "coding"
    chat(server, "llm")  # the pin reaches beta: its state shows wherever beta is named
    expect(coding.locator('[data-pin="llm"] .state')).to_have_text("ready", timeout=TIMEOUT)
    expect(selector.locator(".target").last).to_contain_text("ready")
    shot(page, "models-profiles")

    # A switch made elsewhere arrives through the feed.
    requests.put(server.url("/api/profiles/active"), json={"name": "writing"}, timeout=5).raise_for_status()
    expect(switcher).to_have_value("writing", timeout=TIMEOUT)
    expect(page.locator('tr[data-profile="writing"]')).to_contain_text("active")
    expect(coding).not_to_contain_text("active")
    page.locator("#theme").click()
    page.set_viewport_size(PHONE)
    no_horizontal_overflow(page)
    shot(page, "models-profiles-dark-phone")
    switcher.select_option(label="no profile")
    expect(page.locator('tr[data-profile="writing"]')).not_to_contain_text("active", timeout=TIMEOUT)
    assert requests.get(server.url("/api/profiles"), timeout=5).json()["active"] is None


def test_a_models_page_shows_its_details_activity_and_its_own_log_live(llama_swap, tmp_path, page):
    server = llama_swap(naming_config(tmp_path))
    page.goto(server.url("/ui/#/models"))
    page.locator('tr[data-model="alpha"]').get_by_role("link", name="alpha").click()
    expect(page).to_have_url(server.url("/ui/#/models/alpha"))
    details = page.locator("dl.details")
    expect(details).to_contain_text("Alpha model", timeout=TIMEOUT)
    for text in ("the first one", "a1, first", "8192", "stopped"):
        expect(details).to_contain_text(text)
    expect(page.get_by_text("no requests yet")).to_be_visible(timeout=TIMEOUT)

    chat(server, "first")  # by an alias: still this model's log and activity
    log = page.locator("pre.log")
    expect(log).to_contain_text("request: POST /v1/chat/completions", timeout=TIMEOUT)
    expect(details).to_contain_text("ready", timeout=TIMEOUT)
    expect(page.locator("tr[data-id]").first).to_contain_text("/v1/chat/completions", timeout=TIMEOUT)
    shot(page, "model-page")
    page.locator("#theme").click()
    page.set_viewport_size(PHONE)
    no_horizontal_overflow(page)
    shot(page, "model-page-dark-phone")

    page.get_by_role("link", name="← Models").click()
    expect(page.locator('tr[data-model="beta"]')).to_be_visible(timeout=TIMEOUT)


def test_swaps_ask_nothing_more_and_a_config_reload_brings_new_profiles_and_selectors(llama_swap, tmp_path, page):
    server = llama_swap(naming_config(tmp_path), "--watch-config")
    asked = []
    page.on("request", lambda r: asked.append(r.url.split("?")[0]))
    page.goto(server.url("/ui/#/models"))
    expect(page.locator('tr[data-selector="either"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#profile-slot select option")).to_have_text(["no profile", "coding", "writing"])
    listings = lambda: [url for url in asked if url.endswith(("/api/profiles", "/v1/models"))]  # noqa: E731
    before = len(listings())

    for model in ("alpha", "beta", "alpha"):  # three swaps: a dozen modelStatus messages
        chat(server, model)
        expect(page.locator(f'tr[data-model="{model}"] .state')).to_have_text("ready", timeout=TIMEOUT)
    expect(page.locator('tr[data-model="beta"] .state')).to_have_text("stopped", timeout=TIMEOUT)
    assert listings()[before:] == [], "a swap made the page ask for the profiles or the model list"

    server.config_path.write_text(server.config_path.read_text()
                                  .replace("  either:", "  any:").replace("  writing:", "  reading:"))
    expect(page.locator('tr[data-selector="any"]')).to_be_visible(timeout=TIMEOUT)
    expect(page.locator('tr[data-selector="either"]')).to_have_count(0)
    expect(page.locator("#profile-slot select option")).to_have_text(["no profile", "coding", "reading"])
    expect(page.locator('tr[data-profile="reading"]')).to_be_visible()
    shot(page, "models-reloaded")


def test_a_models_page_asks_for_its_activity_again_only_when_one_of_its_names_was_asked_for(llama_swap, tmp_path, page):
    server = llama_swap(naming_config(tmp_path))
    page.goto(server.url("/ui/#/models/alpha"))
    expect(page.get_by_text("no requests yet")).to_be_visible(timeout=TIMEOUT)
    announced = count_messages(page, server, "activity")
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/api/metrics/activity" in r.url else None)
    chat(server, "beta")
    chat(server, "beta")
    announced(2)
    assert asked == [], "another model's request made alpha's page ask for its activity"
    chat(server, "a1")  # an alias of alpha
    expect(page.locator("tr[data-id]")).to_have_count(1, timeout=TIMEOUT)
    assert len(asked) == 1
    shot(page, "model-page-activity")
