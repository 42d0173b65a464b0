"""llama-swap's own web UI (the Go project's, built from its sources) against this server, unchanged.

The acceptance test of the ``/api`` shapes: a static server serves a built
UI at ``/ui/`` and forwards everything else to our server (a deployment
with the UI hosted apart), and every page the build has must fill with our
data. Skipped unless ``LLAMA_SWAP_GO_UI`` names a folder of builds
(``docs/build_go_ui.sh DEST`` makes ``DEST/newest`` and ``DEST/seed``); runs
once per build found there. A build with lazily loaded route chunks
(``assets/Settings-*.js``) is the newest UI (sidebar: Activity, Playground,
Models, a model's page, Logs, Performance, Hardware, Settings); one without
is the seed's (header: Playground, Models, Activity, Logs, Performance).
"""

from __future__ import annotations

import os
import platform
import re
import threading
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from app.version import build_info
from tests.browser.conftest import TIMEOUT, chat, shot
from tests.helpers.prefix_proxy import PrefixProxy
from tests.helpers.server import fake_cmd

GO_UI = os.environ.get("LLAMA_SWAP_GO_UI", "")


def builds() -> list:
    root = Path(GO_UI) if GO_UI else None
    found = sorted(p for p in root.iterdir() if (p / "index.html").is_file()) if root and root.is_dir() else []
    if not found:
        why = (f"LLAMA_SWAP_GO_UI={GO_UI} holds no built UI (folders with an index.html)" if GO_UI else
               "set LLAMA_SWAP_GO_UI to a folder of llama-swap web UI builds (docs/build_go_ui.sh DEST makes them)")
        return [pytest.param(None, marks=pytest.mark.skip(reason=why), id="no-build")]
    return [pytest.param(p, id=p.name) for p in found]


def is_newest(build: Path) -> bool:
    return any((build / "assets").glob("Settings-*.js"))


def go_config(tmp_path) -> str:
    return ("healthCheckTimeout: 15\nmodels:\n"
            f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 3')}\n    name: Alpha model\n"
            "    description: the first one\n    aliases: [a1]\n"
            "    filters:\n      setParams: {max_tokens: 3}\n"  # the playground asks for 4096
            f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 3')}\n"
            f"  slow:\n    cmd: {fake_cmd('slow', tmp_path, '--tokens 60 --token-delay 0.05')}\n"
            "profiles:\n  coding:\n    description: code work\n    pins: {llm: beta}\n")


@pytest.fixture
def ui_host():
    """A static server for a build's files at /ui/ that forwards the rest to a server; stopped at teardown."""
    hosts: list[PrefixProxy] = []

    def start(server, build: Path) -> PrefixProxy:
        hosts.append(PrefixProxy(server.port, prefix="", static={"/ui/": build}).start())
        return hosts[-1]

    yield start
    for host in hosts:
        host.stop()


def failures(page) -> list[str]:
    """Filled as the page runs: each response of 400 or more, each uncaught error."""
    seen: list[str] = []
    page.on("response", lambda r: r.status >= 400 and seen.append(f"{r.status} {r.url}"))
    page.on("pageerror", lambda error: seen.append(f"error: {error}"))
    return seen


def streaming_request(server) -> threading.Thread:
    """A streamed chat with ``slow`` (about 3 s) in a thread: in flight while the page looks."""
    def run():
        with requests.post(server.url("/v1/chat/completions"), stream=True, timeout=30,
                           json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
            for _ in r.iter_content(None):
                pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("build", builds())
def test_every_page_of_llama_swaps_own_ui_fills_with_our_data(llama_swap, tmp_path, page, ui_host, build):
    server = llama_swap(go_config(tmp_path))
    chat(server, "alpha")  # an activity record, a capture, log lines, a ready model
    host = ui_host(server, build)
    seen = failures(page)
    page.goto(host.url("/ui/"))
    if is_newest(build):
        newest_ui_pages(page, server, host, build.name)
    else:
        seed_ui_pages(page, server, build.name)
    assert seen == []


def go(page, host, route: str) -> None:
    page.goto(host.url(f"/ui/#{route}"))


def open_capture(page, row) -> None:
    """The row's View button opens its capture (/api/captures/<id>): the answer's body is in it."""
    row.get_by_role("button", name="View").click()
    expect(page.get_by_role("dialog")).to_contain_text("tok0 tok1", timeout=TIMEOUT)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0, timeout=TIMEOUT)


def newest_ui_pages(page, server, host, name: str) -> None:
    main = page.locator("main main")  # the page's own, inside the sidebar layout's
    # Activity: the stored record (REST), its stats, then live: a request in flight, then its record.
    expect(main.locator("tr", has_text="alpha")).to_contain_text("200", timeout=TIMEOUT)
    expect(main).to_contain_text(re.compile(r"1\s*completed"))
    open_capture(page, main.locator("tr", has_text="alpha"))
    worker = streaming_request(server)
    expect(main.locator("tr", has_text="slow")).to_contain_text("POST", timeout=TIMEOUT)  # the in-flight table
    shot(page, f"go-ui-{name}-activity")
    worker.join(timeout=30)
    expect(main).to_contain_text(re.compile(r"2\s*completed"), timeout=TIMEOUT)

    # Models: every model with its state, live; the profile switcher.
    go(page, host, "/models")
    rows = main.locator(".divide-y > div").filter(has=page.get_by_role("link", name=re.compile("^Open model server$")))
    alpha, slow = (rows.filter(has=page.locator(f'a[href="#/models/{model}"]')) for model in ("alpha", "slow"))
    expect(slow).to_contain_text("ready", timeout=TIMEOUT)  # one model at a time: slow took alpha's place
    expect(alpha).to_contain_text("stopped")
    alpha.get_by_role("button", name="Load model").click()  # /upstream/alpha/
    expect(alpha).to_contain_text("ready", timeout=TIMEOUT)
    expect(slow).to_contain_text("stopped")
    alpha.get_by_role("button", name="Unload model").click()  # /api/models/unload/alpha
    expect(alpha).to_contain_text("stopped", timeout=TIMEOUT)
    assert server.state_of("alpha") is None
    requests.put(server.url("/api/profiles/active"), json={"profile": "coding"}, timeout=5)
    expect(page.locator("header")).to_contain_text("coding", timeout=TIMEOUT)
    expect(main).to_contain_text("llm")  # the active profile's pin
    shot(page, f"go-ui-{name}-models")

    # A model's page: its details, its activity, its own log (/logs/stream/alpha).
    go(page, host, "/models/alpha")
    expect(main).to_contain_text("the first one", timeout=TIMEOUT)
    expect(main).to_contain_text("a1")
    expect(main.locator("tr", has_text="200").first).to_be_visible(timeout=TIMEOUT)
    shot(page, f"go-ui-{name}-model-activity")
    main.get_by_role("tab", name="Logs").click()
    expect(main).to_contain_text("loading model 'alpha'", timeout=TIMEOUT)
    shot(page, f"go-ui-{name}-model-logs")

    # Logs: the proxy's and the upstreams' history and live lines.
    go(page, host, "/logs")
    expect(main).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    expect(main).to_contain_text("server is listening")
    shot(page, f"go-ui-{name}-logs")

    # Playground: the model list from /v1/models, a streamed answer.
    go(page, host, "/playground")
    main.get_by_text("Select a model...").first.click()
    page.get_by_role("option", name="alpha", exact=True).click()
    main.get_by_placeholder("Type a message...").fill("hello")
    main.get_by_role("button", name="Send").click()
    expect(main).to_contain_text("tok0 tok1 tok2", timeout=TIMEOUT)
    shot(page, f"go-ui-{name}-playground")

    # Performance, Hardware, Settings: the sampler, the hardware snapshot, our version.
    go(page, host, "/performance")
    expect(main).to_contain_text(re.compile(r"Mem: [\d,]+ / [\d,]+ MB"), timeout=TIMEOUT)  # charts are canvases
    shot(page, f"go-ui-{name}-performance")
    go(page, host, "/hardware")
    expect(main).to_contain_text("Logical Threads", timeout=TIMEOUT)
    expect(main).to_contain_text(platform.machine())
    shot(page, f"go-ui-{name}-hardware")
    go(page, host, "/settings")
    expect(main).to_contain_text(build_info()["commit"], timeout=TIMEOUT)
    expect(main).to_contain_text("connected")
    shot(page, f"go-ui-{name}-settings")


def seed_ui_pages(page, server, name: str) -> None:
    main = page.locator("main")
    # Playground (the home page): the models from the feed, a streamed answer.
    main.locator("select:visible").first.select_option("alpha", timeout=TIMEOUT)
    main.get_by_placeholder("Type a message...").fill("hello")
    main.get_by_role("button", name="Send").click()
    expect(main).to_contain_text("tok0 tok1 tok2", timeout=TIMEOUT)
    shot(page, f"go-ui-{name}-playground")

    # Models: each model and its state, live.
    page.get_by_role("link", name="Models").click()
    expect(main).to_contain_text("the first one", timeout=TIMEOUT)
    alpha = main.locator("tr", has_text="alpha")
    expect(alpha).to_contain_text("ready")
    alpha.get_by_role("button", name="Unload").click()
    expect(alpha).to_contain_text("stopped", timeout=TIMEOUT)
    alpha.get_by_role("button", name="Load").click()
    expect(alpha).to_contain_text("ready", timeout=TIMEOUT)
    expect(main).to_contain_text("server is listening")  # its upstream log panel
    shot(page, f"go-ui-{name}-models")

    # Activity: the records kept (the feed's first "metrics"), then live ones, and the in-flight count.
    page.get_by_role("link", name="Activity").click()
    expect(main.locator("tr", has_text="alpha")).to_have_count(2, timeout=TIMEOUT)  # ours and the playground's
    worker = streaming_request(server)
    expect(main).to_contain_text(re.compile(r"2\s*completed,\s*1\s*waiting"), timeout=TIMEOUT)
    worker.join(timeout=30)
    expect(main).to_contain_text(re.compile(r"3\s*completed,\s*0\s*waiting"), timeout=TIMEOUT)
    expect(main.locator("tr", has_text="slow")).to_have_count(1)
    shot(page, f"go-ui-{name}-activity")
    open_capture(page, main.locator("tr", has_text="slow"))

    # Logs and Performance.
    page.get_by_role("link", name="Logs").click()
    expect(main).to_contain_text("llama-swap ready", timeout=TIMEOUT)
    expect(main).to_contain_text("loading model 'alpha'")
    shot(page, f"go-ui-{name}-logs")
    page.get_by_role("link", name="Performance").click()
    expect(main).to_contain_text(re.compile(r"Mem: [\d,]+ / [\d,]+ MB"), timeout=TIMEOUT)  # charts are canvases
    shot(page, f"go-ui-{name}-performance")
