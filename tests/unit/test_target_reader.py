"""The one reader of the request target (``app.routes.common.request_target``): only a path and a query come out.

Whatever the client writes as the target, what comes out starts with "/",
so appending it to an upstream's or a peer's URL never changes that URL's
host (the key leak of issue 11: ``a.evil.example://x/...`` after
``http://192.168.1.23``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.routes.common import raw_path, raw_target, request_target

# What gunicorn lets through in a request line: printable ASCII, no space.
TARGET_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def environ(raw: str, path_info: str = "/v1/chat/completions", query: str = "") -> dict:
    return {"RAW_URI": raw, "PATH_INFO": path_info, "QUERY_STRING": query}


@pytest.mark.parametrize("raw, expected", [
    ("/v1/chat/completions", ("/v1/chat/completions", "")),
    ("/v1/chat/completions?q=a%2Fb&x", ("/v1/chat/completions", "q=a%2Fb&x")),
    ("//v1/chat/completions", ("//v1/chat/completions", "")),
    ("/v1/chat/completions#frag", ("/v1/chat/completions", "")),
    ("http://host/v1/chat/completions?x=1", ("/v1/chat/completions", "x=1")),
    ("HTTP://Host:99/v1/chat/completions", ("/v1/chat/completions", "")),
    ("a.evil.example://x/v1/chat/completions", ("/v1/chat/completions", "")),
    ("http://user:pw@evil.example/v1/chat/completions", ("/v1/chat/completions", "")),
    ("http://host", ("/v1/chat/completions", "")),  # no path of its own: the routed one
])
def test_the_target_is_its_path_and_query_only(raw, expected):
    assert request_target(environ(raw)) == expected


def test_without_a_raw_target_the_routed_path_is_quoted_again():
    assert request_target({"PATH_INFO": "/upstream/a b/é:x", "QUERY_STRING": "q=1"}) == \
        ("/upstream/a%20b/%E9:x", "q=1")
    assert request_target({"RAW_URI": "*", "PATH_INFO": "*"}) == ("/*", "")
    assert raw_path(environ("http://h/v1/x?y=1")) == "/v1/x?y=1"


def test_a_percent_encoded_prefix_is_read_from_the_routed_path():
    assert raw_target(environ("/%75pstream/m/x?q", "/upstream/m/x", "q"), "/upstream/") == ("/upstream/m/x", "q")


@settings(max_examples=500, deadline=None)
@given(raw=st.text(TARGET_CHARS, max_size=60), path_info=st.text(max_size=20),
       base=st.sampled_from(["http://192.168.1.23", "http://127.0.0.1:8080", "https://peer.example/api"]))
def test_no_target_changes_the_host_it_is_appended_to(raw, path_info, base):
    path, query = request_target(environ(raw, path_info))
    assert path.startswith("/")
    sent = urlsplit(base + path + ("?" + query if query else ""))
    assert (sent.scheme, sent.netloc) == (urlsplit(base).scheme, urlsplit(base).netloc)
