"""Activity and captures: ``/api/metrics`` (llama-swap BASE), ``/api/metrics/activity`` and ``/stats`` (HEAD), ``/api/captures/<id>``.

``GET /api/metrics`` answers the newest records (``metricsMaxInMemory``),
oldest first, as a JSON array. ``GET /api/metrics/activity`` answers a page
``{"data", "page", "limit", "total", "total_pages"}``: filters ``model``
(repeatable), ``start``/``end`` (RFC3339, inclusive to the second),
``min_id``/``max_id``, and ours: ``status`` (repeatable: a code such as
``404`` or a class such as ``5xx``) and ``path`` (text the path contains);
``limit`` 1–999 (25), ``page`` (1), ``sort`` (a key of ``SORT_COLUMNS``,
default ``id``; ours add ``queued``, ``load``, ``ttfb``), ``order``
(``asc``/``desc``, default ``desc``); a bad parameter is a 400. ``GET
/api/metrics/stats`` answers the totals and the speed histograms of the
records the same filters select (llama-swap takes only ``model``). Each record's
``has_capture`` is asked of the capture cache as it is read.

``GET /api/captures/<id>``: the capture as JSON, bodies in base64; 400 for
an id that is not a number, 404 when there is none (never kept, or evicted).
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from app.errors import BadRequest, NotFound, echoed
from app.observe.activity import ActivityRecord
from app.observe.activity_store import SORT_COLUMNS, ActivityQuery
from app.runtime.server import Observatory, current

bp = Blueprint("metrics_api", __name__)

MAX_LIMIT = 999


def observatory() -> Observatory:
    observatory = current().observatory
    observatory.recorder.flush()  # every request that has ended is in the answer
    return observatory


def entries(records: list[ActivityRecord], observatory: Observatory) -> list[dict]:
    has = observatory.captures.has
    return [record.to_json(has(record.id)) for record in records]


@bp.get("/api/metrics")
def recent_activity() -> Response:
    watch = observatory()
    return jsonify(entries(watch.activity.recent(), watch))


@bp.get("/api/metrics/activity")
def activity_page() -> Response:
    query = activity_query(request.args)
    watch = observatory()
    page = watch.activity.page(query)
    return jsonify({"data": entries(page.records, watch), "page": page.page, "limit": page.limit,
                    "total": page.total, "total_pages": page.total_pages})


@bp.get("/api/metrics/stats")
def activity_stats() -> Response:
    return jsonify(observatory().activity.stats(activity_query(request.args)).to_json())


@bp.get("/api/captures/<id>")
def capture(id: str) -> Response:
    if not (id.isascii() and id.isdigit()):
        raise BadRequest(f"invalid capture id: {echoed(id)}")
    found = observatory().captures.get(int(id))
    if found is None:
        raise NotFound(f"capture {id} not found")
    return jsonify(found.to_json())


def activity_query(args) -> ActivityQuery:
    """The query of ``/api/metrics/activity``'s parameters; BadRequest for one out of its rules."""
    start, end = timestamp(args, "start"), timestamp(args, "end")
    if start is not None and end is not None and start > end:
        raise BadRequest("start must not be after end")
    min_id, max_id = number(args, "min_id", 1), number(args, "max_id", 1)
    if min_id is not None and max_id is not None and min_id > max_id:
        raise BadRequest("min_id must not be greater than max_id")
    sort = args.get("sort") or "id"
    if sort not in SORT_COLUMNS:
        raise BadRequest(f"invalid sort: {echoed(sort)} (one of {', '.join(SORT_COLUMNS)})")
    order = (args.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise BadRequest(f"invalid order: {echoed(order)} (asc or desc)")
    limit = number(args, "limit", 1, MAX_LIMIT)
    models = tuple(m.strip() for m in args.getlist("model") if m.strip())
    statuses = tuple(status_range(s.strip()) for s in args.getlist("status") if s.strip())
    return ActivityQuery(models=models, statuses=statuses, path=(args.get("path") or "").strip() or None,
                         start=start, end=end, min_id=min_id, max_id=max_id,
                         limit=25 if limit is None else limit, page=number(args, "page", 1) or 1,
                         sort=sort, descending=order == "desc")


def status_range(text: str) -> tuple[int, int]:
    """``404`` → (404, 404); ``5xx`` → (500, 599); BadRequest otherwise."""
    if re.fullmatch(r"[1-5]\d\d", text):
        return int(text), int(text)
    if re.fullmatch(r"[1-5]xx", text.lower()):
        low = int(text[0]) * 100
        return low, low + 99
    raise BadRequest(f"invalid status: {echoed(text)} (a code such as 404, or a class such as 5xx)")


def number(args, name: str, low: int, high: int | None = None) -> int | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"invalid {name}: {echoed(raw)} (an integer)") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise BadRequest(f"invalid {name}: {echoed(raw)} ({bounds})")
    return value


def timestamp(args, name: str) -> float | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        # an unencoded "+01:00" arrives as " 01:00"
        parsed = datetime.fromisoformat(re.sub(r" (\d\d:\d\d)$", r"+\1", raw.strip()))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadRequest(f"invalid {name}: {echoed(raw)} (RFC3339, e.g. 2026-12-01T10:00:00Z)")
    return parsed.timestamp()
