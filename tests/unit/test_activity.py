"""Activity records without a server: the meter on exchanges, the recorder, the store, captures."""

from __future__ import annotations

import json
import sqlite3

import gevent
import pytest

from app.observe.activity import ActivityRecord, error_message
from app.observe.activity_store import MIGRATIONS, ActivityQuery, ActivityStore, histogram, migrate, percentile
from app.observe.bus import EventBus
from app.observe.captures import MB, Capture, CaptureCache, header_map
from app.observe.redact import REDACTED, STRIPPED_CREDENTIALS
from app.observe.events import ActivityRecorded
from app.observe.exchange import Observers, Outcome
from app.observe.metering import ActivityMeter, metered_route
from app.observe.recorder import BATCH_WINDOW, Recorder
from app.observe.tokens import TokenMetrics


def record(id: int, model: str = "m", ts: float = 1_700_000_000.0, **fields) -> ActivityRecord:
    fields.setdefault("req_path", "/v1/chat/completions")
    return ActivityRecord(id=id, timestamp=ts, model=model, **fields)


# --------------------------------------------------------------------------- the meter and the recorder


class Rig:
    """Observers with the meter, a recorder on an in-memory store, and the bus it publishes on."""

    def __init__(self, capture_budget: int = 0, window: float = BATCH_WINDOW):
        self.store = ActivityStore()
        self.captures = CaptureCache(capture_budget)
        self.bus = EventBus()
        self.events = self.bus.subscribe()
        self.recorder = Recorder(self.store, self.captures, self.bus.publish, window)
        self.observers = Observers()
        self.observers.add(ActivityMeter(self.recorder.record, capture_budget))

    def exchange(self, path: str = "/v1/chat/completions", method: str = "POST", client_path: str | None = None,
                 environ: dict | None = None):
        environ = {"PATH_INFO": client_path or path, "REQUEST_METHOD": method, **(environ or {})}
        return self.observers.open("m", method, path, environ=environ, request_body=b'{"model":"m"}')

    def serve(self, exchange, status: int, content_type: str, chunks: list[bytes]) -> None:
        exchange.granted(0.25, 0.2)
        exchange.responded(status, [("Content-Type", content_type), ("Set-Cookie", "s=1")])
        for chunk in chunks:
            exchange.sent(chunk)
        exchange.end(Outcome.COMPLETE)


def test_a_streamed_answer_is_recorded_with_its_tokens_timings_and_an_announced_id():
    rig = Rig()
    exchange = rig.exchange()
    usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    rig.serve(exchange, 200, "text/event-stream",
              [b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', b"data: " + json.dumps(usage).encode() + b"\n\n"])
    assert rig.recorder.pending == 1  # nothing read or stored on the client's path
    rig.recorder.flush()
    [stored] = rig.store.recent()
    assert (stored.id, stored.tokens.input_tokens, stored.tokens.output_tokens) == (1, 4, 2)
    assert (stored.queue_ms, stored.load_ms, stored.resp_status_code) == (250, 200, 200)
    assert stored.ttfb_ms is not None and stored.resp_content_type == "text/event-stream"
    # Announced with the record as /api/metrics lists it (the feed's "metrics" message carries it).
    assert rig.events.get(0).event == ActivityRecorded(1, "m", 4, 2, stored.to_json(False))


def test_only_model_dispatched_posts_are_metered():
    rig = Rig()
    assert metered_route(rig.exchange()) == "/v1/chat/completions"
    assert metered_route(rig.exchange("/props?model=m", "GET")) is None
    assert metered_route(rig.exchange("/v1/chat/completions", client_path="/upstream/m/v1/chat/completions")) \
        == "/v1/chat/completions"
    assert metered_route(rig.exchange("/api/x", client_path="/upstream/m/api/x")) is None
    assert metered_route(rig.exchange("/chat/completions", client_path="/v/chat/completions")) \
        == "/v/chat/completions"


def test_a_refused_request_is_recorded_with_its_error_and_a_request_only_capture():
    rig = Rig(capture_budget=MB)
    exchange = rig.exchange(environ={"HTTP_AUTHORIZATION": "Bearer sk-secret"})
    exchange.refuse(502, "upstream for model m unreachable")
    rig.recorder.flush()
    [stored] = rig.store.recent()
    assert (stored.resp_status_code, stored.error_msg) == (502, "upstream for model m unreachable")
    capture = rig.captures.get(stored.id)
    assert capture.req_headers["Authorization"] == REDACTED and capture.req_body == b'{"model":"m"}'
    assert capture.resp_body is None


def test_an_upstream_error_body_names_the_error():
    rig = Rig()
    rig.serve(rig.exchange(), 400, "application/json", [b'{"error": {"message": "context too long"}}'])
    rig.recorder.flush()
    assert rig.store.recent()[0].error_msg == "context too long"


def test_error_message_rules():
    assert error_message(500, b'{"detail": "boom"}') == "boom"
    assert error_message(500, b'{"error": "plain"}') == "plain"
    assert error_message(503, b"<html>") == "503 Service Unavailable"
    assert error_message(500, json.dumps({"message": "x" * 600}).encode()) == "x" * 500 + "..."


def test_a_capture_keeps_the_stream_as_sent_with_secrets_redacted():
    rig = Rig(capture_budget=MB)
    exchange = rig.exchange(environ={"HTTP_X_API_KEY": "k", "HTTP_COOKIE": "c", "HTTP_X_TRACE": "t"})
    rig.serve(exchange, 200, "text/event-stream", [b"data: 1\n\n", b"data: 2\n\n"])
    rig.recorder.flush()
    capture = rig.captures.get(1)
    assert capture.resp_body == b"data: 1\n\ndata: 2\n\n"
    assert capture.req_headers["X-Api-Key"] == REDACTED and capture.req_headers["Cookie"] == REDACTED
    assert capture.req_headers["X-Trace"] == "t" and capture.resp_headers["Set-Cookie"] == REDACTED
    doc = capture.to_json()
    assert doc["req_path"] == "/v1/chat/completions" and doc["req_body"] == "eyJtb2RlbCI6Im0ifQ=="


def test_credentials_the_key_check_took_out_show_in_the_capture_redacted():
    rig = Rig(capture_budget=MB)
    exchange = rig.exchange(environ={STRIPPED_CREDENTIALS: ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")})
    rig.serve(exchange, 200, "application/json", [b"{}"])
    rig.recorder.flush()
    headers = rig.captures.get(1).req_headers
    assert headers["Authorization"] == headers["X-Api-Key"] == REDACTED


def test_a_response_larger_than_the_capture_budget_is_not_captured_but_still_recorded():
    rig = Rig(capture_budget=1000)
    rig.serve(rig.exchange(), 200, "text/event-stream", [b"x" * 600, b"y" * 600])
    rig.recorder.flush()
    assert [r.id for r in rig.store.recent()] == [1] and not rig.captures.has(1)


def test_masks_keep_only_the_routes_parts():
    rig = Rig(capture_budget=MB)
    rig.serve(rig.exchange("/v1/audio/speech"), 200, "audio/mpeg", [b"ID3..."])
    rig.recorder.flush()
    capture = rig.captures.get(1)
    assert capture.req_body == b'{"model":"m"}' and capture.resp_headers is not None and capture.resp_body is None


def test_header_map_keeps_first_values_and_drops_content_encoding():
    headers = header_map([("Set-Cookie", "a"), ("Set-Cookie", "b"), ("Content-Encoding", "gzip"),
                          ("Proxy-Authorization", "p"), ("X-A", "1"), ("X-A", "2")])
    assert headers == {"Set-Cookie": REDACTED, "Proxy-Authorization": REDACTED, "X-A": "1"}


# --------------------------------------------------------------------------- captures


def capture(id: int, size: int) -> Capture:
    import os
    return Capture(id, "/v1/chat/completions", {}, os.urandom(size), None, None)  # incompressible


def test_captures_evict_the_oldest_to_stay_within_the_budget_and_skip_one_too_large():
    cache = CaptureCache(10_000)
    for id in range(1, 6):
        assert cache.add(capture(id, 3000))
    assert cache.size <= 10_000
    assert [cache.has(i) for i in range(1, 6)] == [False, False, True, True, True]
    assert not cache.add(capture(9, 20_000)) and not cache.has(9)
    assert cache.get(5).req_body is not None


def test_a_zero_budget_disables_captures():
    cache = CaptureCache(0)
    assert not cache.enabled and not cache.add(capture(1, 10)) and cache.get(1) is None


# --------------------------------------------------------------------------- the store


@pytest.fixture
def filled() -> ActivityStore:
    store = ActivityStore()
    store.insert([
        record(1, "a", 1000.0, resp_status_code=200, duration_ms=30,
               tokens=TokenMetrics(5, 10, 100, 200.0, 20.0, -1, -1)),
        record(2, "b", 1001.5, resp_status_code=500, duration_ms=10, error_msg="boom"),
        record(3, "a", 1002.2, resp_status_code=200, duration_ms=20,
               tokens=TokenMetrics(-1, 20, 200, 400.0, 40.0, 3, 2), metadata={"selector": "s"}),
    ])
    return store


def test_pages_filter_by_model_time_and_id(filled):
    assert [r.id for r in filled.page(ActivityQuery()).records] == [3, 2, 1]
    assert [r.id for r in filled.page(ActivityQuery(models=("a",))).records] == [3, 1]
    assert [r.id for r in filled.page(ActivityQuery(models=("a", "b"), min_id=2)).records] == [3, 2]
    assert [r.id for r in filled.page(ActivityQuery(max_id=2, descending=False)).records] == [1, 2]
    # start/end inclusive to the second: 1001 includes 1001.5
    assert [r.id for r in filled.page(ActivityQuery(start=1001.0, end=1001.0)).records] == [2]


def test_pages_and_stats_filter_by_status_class_or_code_and_path_text(filled):
    filled.insert([record(4, "a", 1003.0, resp_status_code=404, req_path="/v1/embeddings")])
    assert [r.id for r in filled.page(ActivityQuery(statuses=((500, 599),))).records] == [2]
    assert [r.id for r in filled.page(ActivityQuery(statuses=((404, 404), (500, 599)))).records] == [4, 2]
    assert [r.id for r in filled.page(ActivityQuery(path="embed")).records] == [4]
    assert filled.page(ActivityQuery(path="%")).total == 0  # text, not a pattern
    assert filled.stats(ActivityQuery(statuses=((200, 299),))).total_requests == 2
    assert [r.id for r in filled.page(ActivityQuery(sort="queued")).records] == [4, 3, 2, 1]  # all 0: by id


def test_pages_sort_by_a_key_then_id_and_count_pages(filled):
    page = filled.page(ActivityQuery(sort="duration", descending=False, limit=2))
    assert [r.id for r in page.records] == [2, 3] and (page.total, page.total_pages) == (3, 2)
    assert [r.id for r in filled.page(ActivityQuery(sort="duration", limit=2, page=2, descending=False)).records] \
        == [1]
    assert [r.id for r in filled.page(ActivityQuery(sort="gen_speed")).records] == [3, 1, 2]
    assert filled.page(ActivityQuery(models=("none",))).total_pages == 0


def test_records_read_back_whole(filled):
    got = filled.get(3)
    assert got == record(3, "a", 1002.2, resp_status_code=200, duration_ms=20,
                         tokens=TokenMetrics(-1, 20, 200, 400.0, 40.0, 3, 2), metadata={"selector": "s"})
    entry = got.to_json(has_capture=False)
    assert entry["timestamp"] == "1970-01-01T00:16:42.200000Z" and entry["metadata"] == {"selector": "s"}
    assert "error_msg" not in entry and filled.get(2).to_json(True)["error_msg"] == "boom"


def test_stats_sum_tokens_count_only_positive_cache_and_histogram_positive_speeds(filled):
    stats = filled.stats()
    assert (stats.total_requests, stats.total_input_tokens, stats.total_output_tokens,
            stats.total_cache_tokens) == (3, 30, 300, 5)
    assert stats.gen_histogram.min == 20.0 and stats.gen_histogram.max == 40.0
    assert sum(stats.gen_histogram.bins) == 2 and len(stats.gen_histogram.bins) == 5
    assert filled.stats(ActivityQuery(models=("b",))).prompt_histogram is None
    doc = stats.to_json()
    assert "binSize" in doc["prompt_histogram"] and doc["prompt_histogram"]["binSize"] == 40.0


def test_histogram_sturges_bins_and_interpolated_percentiles():
    values = [float(v) for v in range(1, 101)]
    h = histogram(values)
    assert len(h.bins) == 8 and sum(h.bins) == 100  # ceil(log2 100) + 1
    assert h.p50 == 50.5 and h.p99 == pytest.approx(99.01)
    assert len(histogram([1.0, 2.0]).bins) == 5  # clamped up
    assert len(histogram([float(v) for v in range(2**19 + 1)]).bins) == 20  # 21 by Sturges: clamped down
    assert histogram([3.0, 3.0]).bins == [2] and histogram([3.0, 3.0]).bin_size == 0
    assert histogram([]) is None and percentile([7.0], 95) == 7.0


def test_in_memory_store_keeps_only_the_newest(tmp_path):
    store = ActivityStore(keep=3)
    store.insert([record(i) for i in range(1, 6)])
    assert [r.id for r in store.recent()] == [3, 4, 5] and store.next_id() == 6


def test_a_file_store_survives_a_reopen_and_continues_its_ids(tmp_path):
    path = str(tmp_path / "activity.db")
    store = ActivityStore(path, keep=2)
    store.insert([record(i) for i in range(1, 5)])
    store.close()
    reopened = ActivityStore(path, keep=2)
    assert reopened.page(ActivityQuery()).total == 4  # never pruned
    assert reopened.next_id() == 5 and reopened.schema_version == len(MIGRATIONS)
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r.id for r in reopened.recent()] == [3, 4]


def test_opening_an_old_schema_runs_the_missing_migrations_and_keeps_its_rows(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO activity (id, ts, model, req_path) VALUES (7, 1000.5, 'a', '/v1/completions')")
    conn.close()
    store = ActivityStore(path)
    old = store.get(7)
    assert (old.model, old.queue_ms, old.ttfb_ms, old.timestamp) == ("a", 0, None, 1000.5)
    versions = store._db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))


def test_the_recorder_continues_a_file_stores_ids(tmp_path):
    path = str(tmp_path / "a.db")
    ActivityStore(path).insert([record(41)])
    rig_store = ActivityStore(path)
    recorder = Recorder(rig_store, CaptureCache(0), lambda event: None)
    observers = Observers()
    observers.add(ActivityMeter(recorder.record))
    exchange = observers.open("m", "POST", "/v1/embeddings", environ={"PATH_INFO": "/v1/embeddings"})
    exchange.refuse(503, "shutting down")
    recorder.flush()
    assert [r.id for r in rig_store.recent()] == [41, 42]


def test_the_recorder_keeps_up_with_requests_ending_faster_than_the_hub_turns():
    # Under load every turn of the hub runs hundreds of greenlets; a writer that
    # wrote one record per turn fell behind for as long as the load lasted, and
    # each request waiting held its answer's sample (the 10-minute soak: the
    # worker grew to 466 MiB, the recorder's queue by ~100 requests a second).
    rig = Rig(window=0)
    worst = 0
    for _ in range(400):  # five requests end at each turn of the hub
        for _ in range(5):
            rig.serve(rig.exchange(), 200, "application/json", [b'{"usage": {"prompt_tokens": 1}}'])
        gevent.sleep(0)
        worst = max(worst, rig.recorder.backlog)
    assert worst <= 200, f"the writer fell {worst} requests behind"
    rig.recorder.flush()
    assert rig.recorder.backlog == 0 and rig.store.next_id() == 2001, "every request recorded"


def test_a_flush_at_shutdown_waits_for_the_batch_the_writer_has_in_hand():
    rig = Rig()
    for _ in range(3):
        rig.serve(rig.exchange(), 200, "application/json", [b'{"usage": {"prompt_tokens": 1}}'])
    writer = gevent.spawn(rig.recorder.flush)  # the writer greenlet: it yields between records
    gevent.sleep(0)  # it took the batch and is writing the first record
    assert rig.recorder.pending == 0
    rig.recorder.flush()  # the shutdown's flush
    assert len(rig.store.recent()) == 3, "every record is stored once the shutdown's flush returns"
    writer.join()
