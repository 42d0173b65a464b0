"""The web UI the way deployments run it: behind a reverse proxy at a sub-path, behind API keys, across a
dropped event stream, with awkward model ids, and left open for a long time."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, chat, config, shot
from tests.helpers.prefix_proxy import PrefixProxy
from tests.helpers.server import fake_cmd, wait_for

PREFIX = "/llama"


@pytest.fixture
def prefix_proxy():
    """Start a PrefixProxy in front of a server's port; stopped (every connection closed) at teardown."""
    proxies: list[PrefixProxy] = []

    def start(server) -> PrefixProxy:
        proxies.append(PrefixProxy(server.port, PREFIX).start())
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.stop()


def live(page) -> None:
    expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT)


def refusals(page) -> list[str]:
    """Filled, as the page runs, with each response of 400 or more it got: "<status> <url>"."""
    seen: list[str] = []
    page.on("response", lambda response: response.status >= 400 and seen.append(f"{response.status} {response.url}"))
    return seen


def visit(page, name: str) -> None:
    """Go to a page the way a user does: its link in the header."""
    page.locator(f'nav a[data-page="{name}"]').click()
    expect(page.locator('nav a[aria-current="page"]')).to_have_attribute("data-page", name)


def chat_in_playground(page, model: str = "alpha") -> None:
    panel = page.get_by_role("tabpanel")
    panel.locator("select[aria-label=model]").select_option(model)
    panel.get_by_label("message").fill("hello through the proxy")
    panel.get_by_role("button", name="Send").click()
    expect(panel.locator(".msg.assistant").last).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)


def tour_every_page(page, name: str) -> None:
    """Visit every page from the header, as a user does, and see each one's data: alpha has answered a chat
    before, so there is a request, a swap and log lines to show. Ends on the playground, after a chat."""
    visit(page, "activity")
    expect(page.locator("tr[data-id]").first).to_contain_text("/v1/chat/completions", timeout=TIMEOUT)
    shot(page, f"{name}-activity")
    visit(page, "timeline")
    expect(page.locator("table.swaps")).to_contain_text("alpha", timeout=TIMEOUT)
    visit(page, "models")
    expect(page.locator('tr[data-model="alpha"] .state')).to_have_text("ready", timeout=TIMEOUT)
    page.locator('tr[data-model="alpha"]').get_by_role("link", name="alpha").click()
    expect(page.locator("dl.details")).to_contain_text("Alpha model", timeout=TIMEOUT)
    expect(page.locator("tr[data-id]").first).to_contain_text("/v1/chat/completions", timeout=TIMEOUT)
    expect(page.locator("pre.log")).to_contain_text("request: POST /v1/chat/completions", timeout=TIMEOUT)
    shot(page, f"{name}-model-page")
    visit(page, "logs")
    expect(page.locator("pre.log")).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    visit(page, "performance")
    expect(page.locator("main svg").first).to_be_visible(timeout=TIMEOUT)
    visit(page, "hardware")
    expect(page.locator("section.hw-card").first).to_be_visible(timeout=TIMEOUT)
    visit(page, "playground")
    chat_in_playground(page)
    shot(page, f"{name}-playground")


# ------------------------------------------------------------------------------------ at a sub-path


def test_every_page_loads_its_data_through_a_sub_path_and_nothing_outside_it(llama_swap, tmp_path, page,
                                                                               prefix_proxy):
    server = llama_swap(config(tmp_path))
    proxy = prefix_proxy(server)
    chat(server, "alpha")  # a request in the activity table, a swap in the timeline, lines in alpha's log

    page.goto(proxy.url(f"{PREFIX}/ui/"))
    live(page)
    tour_every_page(page, "subpath")

    assert proxy.outside_prefix() == []
    asked = {path.split("?")[0] for path in proxy.paths}
    for path in ("/ui/app.js", "/api/events", "/api/metrics/activity", "/api/timeline", "/v1/models",
                 "/logs/stream/alpha", "/logs/stream/proxy", "/v1/chat/completions", "/api/performance",
                 "/api/hardware"):
        assert PREFIX + path in asked, f"{path} was never asked through the proxy"


@pytest.mark.parametrize("address", [f"{PREFIX}/ui", f"{PREFIX}/ui/models", f"{PREFIX}/ui/models/alpha"])
def test_a_sub_path_address_without_a_trailing_slash_or_a_bookmarked_page_works(llama_swap, tmp_path, page,
                                                                                 prefix_proxy, address):
    server = llama_swap(config(tmp_path))
    proxy = prefix_proxy(server)
    refused = refusals(page)
    page.goto(proxy.url(address))
    live(page)
    if address.endswith("/ui"):
        expect(page).to_have_url(proxy.url(f"{PREFIX}/ui/"))
        visit(page, "models")
    if address.endswith("alpha"):
        expect(page.locator("dl.details")).to_contain_text("Alpha model", timeout=TIMEOUT)
    else:
        expect(page.locator('tr[data-model="beta"]')).to_be_visible(timeout=TIMEOUT)
    shot(page, "subpath-" + address.rsplit("/", 1)[-1])
    assert proxy.outside_prefix() == []
    assert refused == [], "the page's own files or data were not found"


def test_the_sub_paths_root_leads_to_the_ui_under_it(llama_swap, tmp_path, page, prefix_proxy):
    server = llama_swap(config(tmp_path))
    proxy = prefix_proxy(server)
    page.goto(proxy.url(f"{PREFIX}/"))
    shot(page, "subpath-root")
    assert proxy.outside_prefix() == []
    expect(page).to_have_url(proxy.url(f"{PREFIX}/ui/"))


# ---------------------------------------------------------------------------------------- API keys

KEY = "sk-deploy-test"


def keyed_config(tmp_path) -> str:
    """config() behind a key, plus a model that transcribes."""
    return config(tmp_path, f"apiKeys: [{KEY}]\n") + (
        f"  ears:\n    cmd: {fake_cmd('ears', tmp_path, '--tokens 3')}\n"
        "    capabilities: {in: [audio], out: [text]}\n")


def count_key_prompts(page) -> None:
    """From the next load on, window.keyPrompts counts the times the key dialog is shown."""
    page.add_init_script("""
        window.keyPrompts = 0;
        const showModal = HTMLDialogElement.prototype.showModal;
        HTMLDialogElement.prototype.showModal = function () { window.keyPrompts++; return showModal.call(this); };
    """)


def give_key(page, key: str) -> None:
    expect(page.locator("#key-dialog")).to_be_visible(timeout=TIMEOUT)
    page.locator("#key-input").fill(key)
    page.get_by_role("button", name="Use it").click()


@pytest.mark.parametrize("wrong_keys", [1, 2])
def test_behind_a_key_a_wrong_key_is_asked_again_and_then_every_page_works(llama_swap, tmp_path, page,
                                                                            wrong_keys):
    server = llama_swap(keyed_config(tmp_path))
    chat(server, "alpha", {"Authorization": f"Bearer {KEY}"})
    count_key_prompts(page)
    page.goto(server.url("/ui/#/hardware"))  # a page that asks for its data once
    for attempt in range(wrong_keys):
        give_key(page, f"sk-wrong-{attempt}")
        page.wait_for_function(f"window.keyPrompts === {attempt + 2}", timeout=TIMEOUT)  # asked again
        expect(page.locator("#key-dialog")).to_contain_text("refused")
        shot(page, f"key-wrong-{wrong_keys}")
    give_key(page, KEY)
    expect(page.locator("#key-dialog")).not_to_be_visible(timeout=TIMEOUT)
    expect(page.locator("section.hw-card").first).to_be_visible(timeout=TIMEOUT)
    live(page)

    tour_every_page(page, f"key-after-{wrong_keys}-wrong")
    page.get_by_role("tab", name="Transcription").click()
    panel = page.get_by_role("tabpanel")
    panel.get_by_label("audio file").set_input_files(
        {"name": "hello.wav", "mimeType": "audio/wav", "buffer": b"RIFF" + bytes(996)})
    panel.get_by_role("button", name="Transcribe").click()
    expect(panel.locator(".transcript")).to_have_text("transcribed 1000 bytes of hello.wav with ears",
                                                      timeout=TIMEOUT)
    shot(page, f"key-after-{wrong_keys}-wrong-transcription")
    assert page.evaluate("window.keyPrompts") == wrong_keys + 1, "the right key was asked for again"
    assert page.evaluate("localStorage.getItem('llama-swap.api-key')") == KEY


# ---------------------------------------------------------------------------------------- reconnect


def test_a_cut_event_stream_reconnects_by_itself_and_the_models_page_catches_up(llama_swap, tmp_path, page,
                                                                              prefix_proxy):
    server = llama_swap(config(tmp_path))
    proxy = prefix_proxy(server)
    page.goto(proxy.url(f"{PREFIX}/ui/#/models"))
    live(page)
    alpha = page.locator('tr[data-model="alpha"] .state')
    expect(alpha).to_have_text("stopped", timeout=TIMEOUT)

    proxy.refused.add("/api/events")  # the server is out of reach for the feed...
    assert proxy.cut("/api/events") == 1
    expect(page.locator("#connection")).to_have_text("reconnecting…", timeout=TIMEOUT)
    chat(server, "alpha")  # ...while alpha is loaded
    shot(page, "reconnecting")
    proxy.refused.clear()
    live(page)
    expect(alpha).to_have_text("ready", timeout=TIMEOUT)
    shot(page, "reconnected")


def test_after_a_server_restart_the_ui_reconnects_and_its_logs_follow_the_new_server(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    chat(server, "alpha")
    page.goto(server.url("/ui/#/models"))
    live(page)
    alpha = page.locator('tr[data-model="alpha"] .state')
    expect(alpha).to_have_text("ready", timeout=TIMEOUT)
    log_page = page.context.new_page()  # a second tab, on the proxy's log
    log_page.goto(server.url("/ui/#/logs"))
    expect(log_page.locator("pre.log")).to_contain_text("llama-swap ready", timeout=TIMEOUT)

    server.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…", timeout=TIMEOUT)
    expect(log_page.locator("pre.log")).to_contain_text("log stream ended: reconnecting…", timeout=TIMEOUT)
    server.start()  # the same port, a new server: alpha is not running there
    live(page)
    expect(alpha).to_have_text("stopped", timeout=TIMEOUT)
    chat(server, "alpha")
    expect(alpha).to_have_text("ready", timeout=TIMEOUT)
    shot(page, "restarted-models")
    restarted = server.starts("alpha")[-1]
    # The log page retries with a growing wait (at most 5 s): its next try may come a while after the restart.
    expect(log_page.locator("pre.log")).to_contain_text(f"alpha: ready, pid {restarted}", timeout=2 * TIMEOUT)
    shot(log_page, "restarted-logs")


# ------------------------------------------------------------------------------ what users run into

AWKWARD = ["org/model", "my model", "c#1", "what?", "50%"]  # model ids a URL must escape


def awkward_config(tmp_path) -> str:
    models = "".join(f'  "{name}":\n    cmd: {fake_cmd(f"m{index}", tmp_path, "--tokens 3")}\n'
                     for index, name in enumerate(AWKWARD))
    return f"healthCheckTimeout: 15\nmodels:\n{models}"


@pytest.mark.parametrize("model", AWKWARD)
def test_a_model_id_a_url_must_escape_loads_unloads_and_has_its_page_and_log(llama_swap, tmp_path, page, model):
    server = llama_swap(awkward_config(tmp_path))
    page.goto(server.url("/ui/#/models"))
    row = page.locator(f'tr[data-model="{model}"]')
    expect(row).to_be_visible(timeout=TIMEOUT)
    row.get_by_role("button", name="Load", exact=True).click()
    expect(row.locator(".state")).to_have_text("ready", timeout=TIMEOUT)
    assert server.state_of(model) == "ready"

    row.get_by_role("link", name=model).click()
    expect(page.locator("h1")).to_have_text(model)
    expect(page.locator("dl.details")).to_contain_text("ready", timeout=TIMEOUT)
    expect(page.locator("pre.log")).to_contain_text("listening", timeout=TIMEOUT)  # its upstream's own log
    page.reload()  # the address alone brings the page back
    expect(page.locator("h1")).to_have_text(model)
    expect(page.locator("dl.details")).to_contain_text("ready", timeout=TIMEOUT)
    shot(page, "awkward-model-page-" + str(AWKWARD.index(model)))
    page.get_by_role("button", name="Unload").click()
    expect(page.locator("dl.details")).to_contain_text("stopped", timeout=TIMEOUT)
    assert server.state_of(model) is None

    page.goto(server.url("/ui/#/logs"))
    page.get_by_label("which log").select_option(model)
    expect(page.locator("pre.log")).to_contain_text("listening", timeout=TIMEOUT)


def test_pages_left_and_revisited_do_not_pile_up_streams(llama_swap, tmp_path, page, prefix_proxy):
    server = llama_swap(config(tmp_path))
    proxy = prefix_proxy(server)
    page.goto(proxy.url(f"{PREFIX}/ui/#/models/alpha"))
    live(page)
    for _ in range(20):
        page.goto(proxy.url(f"{PREFIX}/ui/#/models/alpha"))
        expect(page.locator("dl.details")).to_contain_text("Alpha model", timeout=TIMEOUT)
        visit(page, "logs")
        expect(page.locator("pre.log")).to_contain_text("llama-swap ready", timeout=TIMEOUT)
        visit(page, "activity")
    chat(server, "alpha")  # everything still answers: the browser's six connections are not all held
    expect(page.locator("tr[data-id]").first).to_contain_text("/v1/chat/completions", timeout=TIMEOUT)
    shot(page, "revisited")
    wait_for(lambda: proxy.streaming("/logs/stream") == 0, timeout=5, what="every log stream to close")
    assert proxy.streaming("/api/events") == 1


def test_a_very_long_log_line_wraps_within_a_phone_screen(llama_swap, tmp_path, page):
    server = llama_swap(config(tmp_path))
    long_path = "/" + "x" * 3000 + "-end"  # one unbroken word, as a base64 blob in a log would be
    requests.get(server.url("/upstream/alpha" + long_path), timeout=30)  # alpha's log has the path
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(server.url("/ui/#/models/alpha"))
    expect(page.locator("pre.log")).to_contain_text("x" * 3000 + "-end", timeout=TIMEOUT)
    shot(page, "long-log-line-phone")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    assert page.locator("pre.log").evaluate("pre => pre.scrollWidth <= pre.clientWidth"), "the log scrolls sideways"
