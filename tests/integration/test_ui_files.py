"""``/ui/``: the app page and its files, as a browser fetches them (the pages themselves: browser tests, to come)."""

from __future__ import annotations

import requests

from tests.helpers.server import fake_cmd


def test_the_app_page_its_files_and_its_fallback(llama_swap, tmp_path):
    server = llama_swap(f"models:\n  m:\n    cmd: {fake_cmd('m', tmp_path)}\n")
    root = requests.get(server.url("/"), allow_redirects=False, timeout=5)
    assert (root.status_code, root.headers["Location"]) == (302, "ui/")
    bare = requests.get(server.url("/ui"), allow_redirects=False, timeout=5)
    assert (bare.status_code, bare.headers["Location"]) == (302, "ui/")  # relative: right behind a sub-path proxy

    page = requests.get(server.url("/ui/"), timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module">import "./app.js";</script>' in page.text
    for name in ("app.js", "api.js", "pages/models.js", "pages/activity.js", "pages/logs.js", "pages/playground.js"):
        script = requests.get(server.url(f"/ui/{name}"), timeout=5)
        assert script.status_code == 200 and "javascript" in script.headers["Content-Type"], name
    assert requests.get(server.url("/ui/style.css"), timeout=5).headers["Content-Type"].startswith("text/css")

    # A bookmarked page (and llama-swap's /upstream redirect) gets the app page, which routes it.
    for path in ("/ui/models", "/ui/logs/proxy"):
        fallback = requests.get(server.url(path), timeout=5)
        assert fallback.status_code == 200 and fallback.text == page.text, path
    assert requests.get(server.url("/upstream"), timeout=5).text == page.text
    # A missing file is a 404, and nothing outside static/ is reachable.
    assert requests.get(server.url("/ui/nothing.js"), timeout=5).status_code == 404
    assert requests.get(server.url("/ui/..%2fapp%2f__init__.py"), timeout=5).status_code == 404
