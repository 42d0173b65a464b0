"""``/ui/``: the web UI, plain static files from ``static/`` (no build step), with the app page as fallback.

``/ui`` redirects to ``/ui/``; a file under ``static/`` is served as it is;
any other extension-less path under ``/ui/`` (a bookmarked page such as
``/ui/models``) gets the app page, whose script routes by the URL's hash;
a missing file with an extension is a 404. The page's scripts address the
API relative to where ``/ui/`` is mounted, so the UI also works behind a
reverse proxy at a sub-path.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, redirect, send_from_directory

bp = Blueprint("ui", __name__)

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"
APP_PAGE = "index.html"


@bp.get("/ui")
def ui_root() -> Response:
    return redirect("ui/", code=302)  # relative: right behind a proxy at a sub-path too


@bp.get("/ui/")
def app_page() -> Response:
    return _no_cache(send_from_directory(STATIC_DIR, APP_PAGE))


@bp.get("/ui/<path:name>")
def ui_file(name: str) -> Response:
    path = (STATIC_DIR / name).resolve()
    if STATIC_DIR in path.parents and path.is_file():
        return send_from_directory(STATIC_DIR, name)
    if "." in name.rsplit("/", 1)[-1]:
        abort(404)
    return _no_cache(send_from_directory(STATIC_DIR, APP_PAGE))


def _no_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-cache"  # a new version's page is picked up at once
    return response
