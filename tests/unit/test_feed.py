"""The live feed (``app.observe.feed``), the SSE stream built on it, and the in-flight table, without sockets."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gevent
import pytest

from app.observe.bus import EventBus
from app.observe.events import ActivityRecorded, ConfigReloaded, InflightChanged, LogWritten, ProfileChanged
from app.observe.exchange import Observers, Outcome
from app.observe.feed import EventFeed, FellBehind
from app.observe.inflight import InflightTracker
from app.observe.logs import LogHub
from scheduler.events import ModelStateChanged
from scheduler.state import ProcessState
from tests.helpers.fakes import settle, wait_until


def feed_of(bus: EventBus, **kwargs) -> EventFeed:
    return EventFeed(bus, model_status=lambda: [{"id": "m", "state": "ready"}], **kwargs)


def types_and_data(feed: EventFeed, after: str) -> list[tuple[str, object]]:
    return [(m.type, json.loads(m.data)) for m in feed.replay_after(after) or []]


def test_bus_events_become_llama_swap_messages_with_increasing_ids():
    bus = EventBus()
    feed = feed_of(bus)
    start = feed.last_id
    bus.publish(LogWritten("upstream", "loading model\n", "m"))
    bus.publish(ModelStateChanged("m", ProcessState.STARTING, ProcessState.READY, 42, 0.0))
    bus.publish(ActivityRecorded(7, "m"))
    bus.publish(InflightChanged("remove", {"id": "3"}))
    bus.publish(ProfileChanged("fast"))
    wait_until(lambda: len(feed.replay_after(start) or []) == 6, "six messages")
    assert types_and_data(feed, start) == [
        ("logData", {"source": "upstream", "data": "loading model\n", "model": "m"}),
        ("modelStatus", [{"id": "m", "state": "ready"}]),
        ("activity", {"id": 7, "model": "m"}),
        ("inflight", {"operation": "remove", "id": "3"}),
        ("profileChanged", {"active": "fast"}),
        ("modelStatus", [{"id": "m", "state": "ready"}]),
    ]
    ids = [m.id for m in feed.replay_after(start) or []]
    assert [int(i.rpartition("-")[2]) for i in ids] == [1, 2, 3, 4, 5, 6]
    frame = (feed.replay_after(start) or [])[2].sse
    assert frame == f'id:{ids[2]}\nevent:message\ndata:{{"type":"activity","data":"{{\\"id\\":7,\\"model\\":\\"m\\"}}"}}\n\n'.encode()
    feed.close()



def test_a_stored_record_is_also_told_whole_as_llama_swaps_older_metrics_message():
    bus = EventBus()
    feed = feed_of(bus)
    start = feed.last_id
    entry = {"id": 7, "model": "m", "has_capture": False}
    bus.publish(ActivityRecorded(7, "m", 1, 3, entry))
    wait_until(lambda: len(feed.replay_after(start) or []) == 2, "two messages")
    assert types_and_data(feed, start) == [("activity", {"id": 7, "model": "m"}), ("metrics", [entry])]
    assert feed.activity_through == 7  # a client connecting now finds record 7 in its first "metrics" list
    feed.close()


def test_a_reload_tells_the_new_servers_profile_then_its_models():
    bus = EventBus()
    feed = feed_of(bus)
    start = feed.last_id
    bus.publish(ConfigReloaded(("m",), None))  # a profile was active before: the clients must drop it
    wait_until(lambda: len(feed.replay_after(start) or []) == 2, "two messages")
    assert types_and_data(feed, start) == [("profileChanged", {"active": None}),
                                           ("modelStatus", [{"id": "m", "state": "ready"}])]

def test_replay_gives_what_was_missed_or_none_when_it_cannot_be_whole():
    bus = EventBus()
    feed = feed_of(bus, replay=3)
    start = feed.last_id
    for n in range(2):
        bus.publish(ActivityRecorded(n, "m"))
    wait_until(lambda: feed.last_id.endswith("-2"), "two messages")
    middle = feed.last_id
    assert [json.loads(m.data)["id"] for m in feed.replay_after(start) or []] == [0, 1]
    assert feed.replay_after(middle) == []  # up to date
    for n in range(2, 5):
        bus.publish(ActivityRecorded(n, "m"))
    wait_until(lambda: feed.last_id.endswith("-5"), "five messages")
    assert [json.loads(m.data)["id"] for m in feed.replay_after(middle) or []] == [2, 3, 4]
    assert feed.replay_after(start) is None  # the first two left the buffer: resync
    assert feed.replay_after("beef-1") is None  # another server's id
    assert feed.replay_after(f"{feed.boot}-99") is None  # from the future
    assert feed.replay_after("garbage") is None
    feed.close()


def test_a_client_is_a_cursor_into_one_buffer_and_one_left_behind_is_told_how_much_it_lost():
    bus = EventBus()
    feed = feed_of(bus, replay=8)
    stuck, keeping_up = feed.reader(), feed.reader()
    got = []
    for batch in (range(6), range(6, 12)):  # one reader keeps up, batch by batch
        for n in batch:
            bus.publish(ActivityRecorded(n, "m"))
        wait_until(lambda: keeping_up.wait(0) and got.extend(keeping_up.take()) or len(got) == batch.stop,
                   "the reader to get everything")
    assert [json.loads(m.data)["id"] for m in got] == list(range(12))
    with pytest.raises(FellBehind) as behind:
        stuck.take()
    assert behind.value.lost == 4  # 12 published, 8 kept
    assert feed.subscribers == 2
    stuck.close()
    assert feed.subscribers == 1
    feed.close()
    assert keeping_up.closed


def test_a_waiting_reader_wakes_on_a_message_and_on_close():
    bus = EventBus()
    feed = feed_of(bus)
    reader = feed.reader()
    waiter = gevent.spawn(reader.wait, 5)
    settle()
    bus.publish(ActivityRecorded(1, "m"))
    assert waiter.get(timeout=2) is True
    assert [json.loads(m.data) for m in reader.take()] == [{"id": 1, "model": "m"}]
    assert reader.wait(0) is False  # nothing new
    waiter = gevent.spawn(reader.wait, 5)
    settle()
    reader.close()
    assert waiter.get(timeout=2) is False
    feed.close()


def fake_server(feed: EventFeed, tracker: InflightTracker) -> SimpleNamespace:
    config = SimpleNamespace(ui_session_headers=("X-Session-ID",), models={}, peers={})
    router = SimpleNamespace(model_state=lambda model: None)
    logs = LogHub()
    logs.write_proxy("[INFO] hello\n")
    kept = SimpleNamespace(id=1, to_json=lambda has_capture: {"id": 1, "has_capture": has_capture})
    return SimpleNamespace(config=config, router=router, active_profile=None,
                           observatory=SimpleNamespace(feed=feed, inflight=tracker, logs=logs,
                                                       activity=SimpleNamespace(recent=lambda: [kept]),
                                                       captures=SimpleNamespace(has=lambda id: True)))


def written(stream) -> bytes:
    """The next chunk gunicorn would write (the empty ones it writes as nothing are skipped)."""
    return next(chunk for chunk in stream if chunk)


def test_the_sse_stream_sends_a_comment_when_quiet_and_ends_when_it_fell_behind(monkeypatch):
    from app.routes import events

    monkeypatch.setattr(events, "HEARTBEAT", 0.01)
    bus = EventBus()
    feed = feed_of(bus, replay=4)
    tracker = InflightTracker(bus.publish)
    stream = events._sse_stream(fake_server(feed, tracker), {}, None)
    opening = written(stream)
    assert opening.startswith(b"retry:1000\n\n") and opening.count(b"event:message") == 7
    assert b'{\\"source\\":\\"proxy\\",\\"data\\":\\"[INFO] hello\\\\n\\"}' in opening
    # llama-swap's older feed: the kept activity records the feed has told (none yet: the list is empty).
    assert b'"type":"metrics","data":"[]"' in opening
    assert written(stream) == b": keepalive\n\n"
    bus.publish(ActivityRecorded(0, "m"))
    wait_until(lambda: feed.last_id.endswith("-1"), "the feed to number it")
    assert written(stream).count(b"event:message") == 1
    for n in range(1, 11):  # more than the buffer holds, before the stream reads any
        bus.publish(ActivityRecorded(n, "m"))
    wait_until(lambda: feed.last_id.endswith("-11"), "the feed to number them")
    rest = b"".join(stream)  # the stream ends by itself
    assert rest == b": 6 messages dropped; reconnect to catch up\n\n"
    assert feed.subscribers == 0
    feed.close()


def test_in_flight_rows_are_shown_once_old_enough_then_upserted_on_response_and_progress_and_removed(monkeypatch):
    monkeypatch.setattr("app.observe.inflight.PROGRESS_EVERY", 0.02)
    monkeypatch.setattr("app.observe.inflight.TICKER_LINGER", 0.05)
    published: list[InflightChanged] = []
    tracker = InflightTracker(published.append)
    observers = Observers()
    observers.add(tracker)
    quick = observers.open("m", "POST", "/v1/embeddings")
    quick.end(Outcome.COMPLETE, status=200)
    assert published == []  # in and out before it was worth showing

    environ = {"HTTP_AUTHORIZATION": "Bearer k", "HTTP_X_FORWARDED_FOR": "10.0.0.9, 10.0.0.1"}
    exchange = observers.open("m", "POST", "/v1/chat/completions", environ=environ, remote_addr="127.0.0.1")
    assert len(tracker) == 1 and published == []
    wait_until(lambda: published, "the row to be shown", deadline=2)
    row = published[0].payload["request"]
    assert published[0].operation == "upsert" and row["resp_headers"] == {}
    assert row["req_headers"]["Authorization"] == "[REDACTED]" and row["remote_ip"] == "10.0.0.9"
    exchange.responded(200, [("Content-Type", "text/event-stream"), ("Set-Cookie", "a=b")])
    assert published[-1].payload["request"]["resp_headers"] == {"Content-Type": "text/event-stream",
                                                                 "Set-Cookie": "[REDACTED]"}
    before = len(published)
    exchange.sent(b"data: {}\n\n")
    assert len(published) == before  # nothing per chunk...
    wait_until(lambda: len(published) > before, "a progress upsert", deadline=2)  # ...the ticker tells
    assert published[-1].payload["request"]["resp_bytes"] == 10
    exchange.end(Outcome.COMPLETE, status=200)
    assert (published[-1].operation, published[-1].payload) == ("remove", {"id": str(exchange.id), "total": 0})
    assert tracker.snapshot() == []
    wait_until(lambda: tracker._ticker is None, "the ticker to stop once nothing is in flight", deadline=2)
    settle()


def test_a_row_listed_in_a_snapshot_gets_its_remove_even_if_never_shown():
    published: list[InflightChanged] = []
    tracker = InflightTracker(published.append)
    observers = Observers()
    observers.add(tracker)
    exchange = observers.open("m", "POST", "/v1/embeddings")
    assert [row["id"] for row in tracker.snapshot()] == [str(exchange.id)]  # a client just connected
    exchange.end(Outcome.COMPLETE, status=200)
    assert [(e.operation, e.payload) for e in published] == [("remove", {"id": str(exchange.id), "total": 0})]
    tracker.close()


def test_each_in_flight_message_counts_the_rows_shown_as_llama_swaps_older_total(monkeypatch):
    monkeypatch.setattr("app.observe.inflight.PROGRESS_EVERY", 0.02)
    published: list[InflightChanged] = []
    tracker = InflightTracker(published.append)
    observers = Observers()
    observers.add(tracker)
    first, second = (observers.open("m", "POST", "/v1/chat/completions") for _ in range(2))
    wait_until(lambda: len(published) >= 2, "both rows to be shown", deadline=2)
    assert [e.payload["total"] for e in published[:2]] == [1, 2]
    unshown = observers.open("m", "POST", "/v1/embeddings")  # ends before it is shown: never counted
    unshown.end(Outcome.COMPLETE, status=200)
    first.end(Outcome.COMPLETE, status=200)
    assert (published[-1].operation, published[-1].payload["total"]) == ("remove", 1)
    second.end(Outcome.COMPLETE, status=200)
    assert (published[-1].operation, published[-1].payload["total"]) == ("remove", 0)
    tracker.close()
    settle()


def test_cancel_reaches_the_exchange_and_unknown_ids_are_refused():
    tracker = InflightTracker(lambda event: None)
    observers = Observers()
    observers.add(tracker)
    exchange = observers.open("m", "POST", "/v1/chat/completions")
    cut = []
    exchange.set_canceller(lambda: cut.append(True))
    assert tracker.cancel("nope") is False
    assert tracker.cancel(str(exchange.id)) is True and cut == [True]
    exchange.end(Outcome.UPSTREAM_ERROR)
    assert exchange.outcome is Outcome.CANCELLED
    tracker.close()
    gevent.sleep(0)
