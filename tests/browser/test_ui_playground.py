"""The playground page in a real browser: chat, the images, speech, transcription and rerank tabs, the load test."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT, shot
from tests.helpers.server import fake_cmd, wait_for


def capable_config(tmp_path, chat_flags: str = "") -> str:
    """A chat model and one model for each other tab, declared by its ``capabilities``."""
    def model(name: str, capabilities: str = "", flags: str = "") -> str:
        declared = f"    capabilities: {capabilities}\n" if capabilities else ""
        return f"  {name}:\n    cmd: {fake_cmd(name, tmp_path, '--tokens 3', flags)}\n{declared}"
    return ("healthCheckTimeout: 15\nmodels:\n" + model("alpha", flags=chat_flags)
            + model("painter", "{in: [text], out: [image]}") + model("voice", "{in: [text], out: [audio]}")
            + model("ears", "{in: [audio], out: [text]}") + model("ranker", "{reranker: true}"))


def open_tab(page, server, tab: str, name: str = ""):
    """The playground opened on ``tab`` (its button's ``name``: the id capitalized unless given); its (visible) panel."""
    page.goto(server.url(f"/ui/#/playground/{tab}"))
    expect(page.get_by_role("tab", name=name or tab.capitalize())).to_have_attribute("aria-selected", "true",
                                                                          timeout=TIMEOUT)
    return page.get_by_role("tabpanel")


def capable_tab(llama_swap, tmp_path, page, tab: str, model: str):
    """The server on ``capable_config`` and the playground opened on ``tab``, which offers ``model`` alone."""
    server = llama_swap(capable_config(tmp_path))
    panel = open_tab(page, server, tab)
    assert options(panel) == [model]
    return server, panel


def fits_a_phone(page) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.getElementById('page').scrollWidth") <= 390


def logged(server, line: str) -> None:
    """Waits for ``line`` in the server's log (an access line is written when the exchange ends)."""
    wait_for(lambda: line in server.log(), timeout=10, what=f"{line!r} in the server's log")


def options(panel) -> list[str]:
    return panel.locator("select[aria-label=model] option").all_text_contents()


def test_the_chat_streams_an_answer_shows_the_loading_and_stops(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nsendLoadingState: true\nmodels:\n"
                        f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3 --load-time 0.8')}\n"
                        f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 400 --token-delay 0.05')}\n")
    page.goto(server.url("/ui/#/playground"))
    chat = page.get_by_role("tabpanel")
    expect(chat.locator("select[aria-label=model] option")).to_have_count(2, timeout=TIMEOUT)
    chat.locator("select[aria-label=model]").select_option("alpha")
    chat.get_by_label("message").fill("hello there")
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".msg.thinking")).to_contain_text("llama-swap loading model: alpha", timeout=TIMEOUT)
    expect(chat.locator(".msg.assistant").last).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
    shot(page, "playground")

    chat.locator("select[aria-label=model]").select_option("slow")
    chat.get_by_label("message").fill("a long one")
    chat.get_by_role("button", name="Send").click()
    answer = chat.locator(".msg.assistant").last
    expect(answer).to_contain_text("tok3", timeout=TIMEOUT)
    chat.get_by_role("button", name="Stop").click()
    expect(chat.get_by_role("button", name="Send")).to_be_enabled(timeout=TIMEOUT)
    stopped_at = answer.text_content()
    # The server saw the hang-up: the upstream stream was cut, not left running.
    wait_for(lambda: any(line.startswith("[INFO] slow: POST /v1/chat/completions 200")
                         and line.endswith("client gone") for line in server.log().splitlines()),
             timeout=10, what="the stopped stream's access line")
    # By then a stream still read would have added tokens (one every 50 ms).
    assert answer.text_content() == stopped_at and "tok399" not in stopped_at


def test_the_chat_keeps_the_conversation_under_a_system_prompt_as_plain_text(llama_swap, tmp_path, page):
    server = llama_swap(capable_config(tmp_path, "--load-time 1"))
    chat = open_tab(page, server, "chat")
    expect(chat.locator("select[aria-label=model] option")).to_have_count(1, timeout=TIMEOUT)
    chat.get_by_label("system prompt").fill("Answer in tokens.")
    with page.expect_request("**/v1/chat/completions") as first:
        chat.get_by_label("message").fill("<b>not bold</b>")
        chat.get_by_label("message").press("Enter")
    # No sendLoadingState here: while alpha starts, the page says what it waits for.
    expect(chat.get_by_role("status")).to_have_text(re.compile("^Waiting for alpha"))
    expect(chat.locator(".msg.assistant")).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
    expect(chat.locator(".msg.user")).to_have_text("<b>not bold</b>")  # shown as typed, not as HTML
    expect(chat.locator(".msg.user b")).to_have_count(0)
    expect(chat.get_by_role("status")).to_be_hidden()

    with page.expect_request("**/v1/chat/completions") as second:
        chat.get_by_label("message").fill("and then?")
        chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".msg.assistant")).to_have_count(2, timeout=TIMEOUT)
    assert [(m["role"], m["content"]) for m in second.value.post_data_json["messages"]] == [
        ("system", "Answer in tokens."), ("user", "<b>not bold</b>"), ("assistant", "tok0 tok1 tok2 "),
        ("user", "and then?")]
    session = first.value.headers["x-session-id"]  # one id for the page's requests, as the Go UI sends
    assert re.fullmatch(r"lspg-\w+", session) and second.value.headers["x-session-id"] == session
    expect(chat.locator(".msg.assistant").last).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
    shot(page, "playground-conversation")

    chat.get_by_role("button", name="Clear").click()
    expect(chat.locator(".msg")).to_have_count(0)
    with page.expect_request("**/v1/chat/completions") as fresh:
        chat.get_by_label("message").fill("again")
        chat.get_by_role("button", name="Send").click()
    assert [m["role"] for m in fresh.value.post_data_json["messages"]] == ["system", "user"]
    expect(chat.locator(".msg.assistant")).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)


def test_each_tab_offers_the_models_that_declare_it_and_the_arrow_keys_move_between_tabs(
        llama_swap, tmp_path, page):
    server = llama_swap(f"healthCheckTimeout: 15\nmodels:\n  alpha:\n    cmd: {fake_cmd('alpha', tmp_path)}\n"
                        f"  painter:\n    cmd: {fake_cmd('painter', tmp_path)}\n"
                        "    capabilities: {in: [text], out: [image]}\n")
    chat = open_tab(page, server, "chat")
    expect(chat.locator("select[aria-label=model] option")).to_have_count(1, timeout=TIMEOUT)
    assert options(chat) == ["alpha"]  # an image model is not offered for chat

    page.get_by_role("tab", name="Chat").focus()
    page.keyboard.press("ArrowRight")
    images = page.get_by_role("tabpanel")
    expect(page.get_by_role("tab", name="Images")).to_be_focused()
    expect(images).to_have_attribute("id", "panel-images")
    assert options(images) == ["painter"]
    assert page.url.endswith("#/playground/images")  # kept for a reload or a bookmark

    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tabpanel")).to_contain_text("No model offers speech")
    expect(page.get_by_role("tabpanel")).to_contain_text("capabilities: {in: [text], out: [audio]}")
    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="Load test")).to_have_attribute("aria-selected", "true")
    assert options(page.get_by_role("tabpanel")) == ["alpha"]  # offered as chat is
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Rerank")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tabpanel")).to_contain_text("capabilities: {reranker: true}")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # round the row
    expect(page.get_by_role("tab", name="Chat")).to_have_attribute("aria-selected", "true")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Transcription")).to_be_focused()
    page.locator('nav a[data-page="playground"]').click()  # the page is not drawn again: the tab stays
    expect(page.get_by_role("tab", name="Transcription")).to_have_attribute("aria-selected", "true")
    shot(page, "playground-no-model")


def test_the_images_tab_shows_the_generated_image(llama_swap, tmp_path, page):
    server, images = capable_tab(llama_swap, tmp_path, page, "images", "painter")
    images.get_by_label("prompt").fill("a lighthouse at dusk")
    images.get_by_label("size").select_option("256x256")
    images.get_by_role("button", name="Generate").click()
    image = images.locator(".gallery img")
    expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"), timeout=TIMEOUT)
    expect(image).to_have_attribute("alt", "a lighthouse at dusk")
    assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 1  # a real PNG, decoded
    logged(server, "[INFO] painter: POST /v1/images/generations 200")
    page.click("#theme")
    shot(page, "playground-images-dark")


def test_the_speech_tab_plays_the_audio_the_model_returned(llama_swap, tmp_path, page):
    server, speech = capable_tab(llama_swap, tmp_path, page, "speech", "voice")
    speech.get_by_role("button", name="List voices").click()
    expect(speech.locator("#speech-voices option")).to_have_count(2, timeout=TIMEOUT)  # the simulator's
    expect(speech.get_by_label("voice")).to_have_value("alloy")
    speech.get_by_label("text").fill("hello from the playground")
    speech.get_by_role("button", name="Speak").click()
    audio = speech.locator("audio[controls]")
    expect(audio).to_have_attribute("src", re.compile(r"^blob:"), timeout=TIMEOUT)
    # The bytes the simulator made of the text (an ID3 tag and 32 SHA-256 digests), intact in the blob.
    assert audio.evaluate("a => fetch(a.src).then(r => r.arrayBuffer()).then(b => b.byteLength)") == 10 + 32 * 32
    logged(server, "[INFO] voice: POST /v1/audio/speech 200")
    fits_a_phone(page)
    shot(page, "playground-speech-phone")


def test_the_transcription_tab_shows_the_text_of_an_uploaded_file(llama_swap, tmp_path, page):
    server, transcription = capable_tab(llama_swap, tmp_path, page, "transcription", "ears")
    transcription.get_by_label("audio file").set_input_files(
        {"name": "hello.wav", "mimeType": "audio/wav", "buffer": b"RIFF" + bytes(996)})
    transcription.get_by_role("button", name="Transcribe").click()
    expect(transcription.locator(".transcript")).to_have_text("transcribed 1000 bytes of hello.wav with ears",
                                                              timeout=TIMEOUT)
    logged(server, "[INFO] ears: POST /v1/audio/transcriptions 200")
    shot(page, "playground-transcription")


def test_the_rerank_tab_orders_the_documents_by_score(llama_swap, tmp_path, page):
    server, rerank = capable_tab(llama_swap, tmp_path, page, "rerank", "ranker")
    rerank.get_by_label("query").fill("red apple")
    rerank.get_by_label("documents").fill("green pear\na red car\n\nred apple\n")
    rerank.get_by_role("button", name="Rerank").click()
    ranked = rerank.locator(".ranked li")
    expect(ranked).to_have_count(3, timeout=TIMEOUT)
    expect(ranked.locator(".doc")).to_have_text(["red apple", "a red car", "green pear"])
    expect(ranked.locator(".score")).to_have_text(["1.000", "0.333", "0.000"])
    logged(server, "[INFO] ranker: POST /v1/rerank 200")
    fits_a_phone(page)
    page.click("#theme")
    shot(page, "playground-rerank-phone-dark")


def test_a_chat_turn_that_failed_is_kept_on_screen_but_not_sent_again(llama_swap, tmp_path, page):
    server = llama_swap(capable_config(tmp_path))
    chat = open_tab(page, server, "chat")
    expect(chat.locator("select[aria-label=model] option")).to_have_count(1, timeout=TIMEOUT)
    page.route("**/v1/chat/completions", lambda route: route.abort(), times=1)  # the first turn fails
    chat.get_by_label("message").fill("lost one")
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".msg.user.failed")).to_contain_text("lost one", timeout=TIMEOUT)
    with page.expect_request("**/v1/chat/completions") as second:
        chat.get_by_label("message").fill("second try")
        chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".msg.assistant").last).to_have_text("tok0 tok1 tok2 ", timeout=TIMEOUT)
    assert [(m["role"], m["content"]) for m in second.value.post_data_json["messages"]] == [("user", "second try")]
    shot(page, "playground-failed-turn")


def test_the_load_test_runs_six_requests_three_at_a_time_and_sums_them_up(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 20 --token-delay 0.02')}\n")
    panel = open_tab(page, server, "loadtest", "Load test")
    assert options(panel) == ["alpha"]
    panel.get_by_label("requests").fill("6")
    panel.get_by_label("concurrency").fill("3")
    panel.get_by_label("max tokens").fill("12")
    panel.get_by_role("button", name="Run").click()
    expect(panel.get_by_role("button", name="Stop")).to_be_enabled(timeout=TIMEOUT)
    expect(panel.locator(".loadtest-progress")).to_contain_text("running", timeout=TIMEOUT)
    summary = panel.locator(".loadtest-summary")
    expect(summary).to_contain_text("6 ok", timeout=30_000)
    expect(summary).to_contain_text("0 failed")
    expect(panel.locator(".loadtest-progress")).to_contain_text("6 of 6 done")
    requests_shown = panel.locator("table.loadtest-requests tbody tr")
    expect(requests_shown).to_have_count(6)
    assert requests_shown.locator("td.ok").all_text_contents() == ["ok"] * 6
    assert requests_shown.nth(0).locator("td").nth(4).inner_text() == "12"  # the tokens, as the usage says
    stats = panel.locator("table.loadtest-stats")
    expect(stats.locator("tr", has_text="time to first token")).to_contain_text("ms")
    expect(stats.locator("tr", has_text="generation speed")).to_contain_text("/s")
    shot(page, "playground-loadtest")
    page.locator("#theme").click()
    shot(page, "playground-loadtest-dark")
    fits_a_phone(page)
    shot(page, "playground-loadtest-phone")


def test_stop_ends_a_load_test_and_counts_what_did_not_finish_as_stopped(llama_swap, tmp_path, page):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 400 --token-delay 0.05')}\n")
    panel = open_tab(page, server, "loadtest", "Load test")
    panel.get_by_label("requests").fill("4")
    panel.get_by_label("concurrency").fill("2")
    panel.get_by_role("button", name="Run").click()
    expect(panel.locator(".loadtest-progress")).to_contain_text("2 running", timeout=TIMEOUT)
    panel.get_by_role("button", name="Stop").click()
    summary = panel.locator(".loadtest-summary")
    expect(summary).to_contain_text("0 ok · 0 failed · 4 stopped", timeout=TIMEOUT)
    expect(panel.get_by_role("button", name="Run")).to_be_enabled()
    shot(page, "playground-loadtest-stopped")
