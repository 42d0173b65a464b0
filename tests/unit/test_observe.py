"""The event bus and the exchange records, without a server."""

from __future__ import annotations

import gevent

from app.observe.access_log import access_line
from app.observe.bus import EventBus
from app.observe.exchange import ExchangeObserver, Observers, Outcome
from scheduler.events import ModelStateChanged
from scheduler.state import ProcessState


# --------------------------------------------------------------------------- the bus


def test_every_subscriber_gets_every_event_in_order_with_increasing_sequence_numbers():
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    for n in range(3):
        bus.publish(n)
    for subscription in (first, second):
        got = [subscription.get(0) for _ in range(3)]
        assert [p.event for p in got] == [0, 1, 2]
        assert [p.seq for p in got] == sorted(p.seq for p in got)
        assert subscription.get(0) is None


def test_a_stuck_subscriber_loses_its_oldest_events_and_counts_them_without_slowing_anyone():
    bus = EventBus()
    stuck, reader = bus.subscribe(maxsize=4), bus.subscribe(maxsize=100)
    for n in range(10):
        bus.publish(n)  # never blocks, whoever reads or not
    assert stuck.dropped == 6 and [stuck.get(0).event for _ in range(4)] == [6, 7, 8, 9]
    assert reader.dropped == 0 and reader.pending() == 10


def test_a_waiting_subscriber_wakes_on_publish_and_a_closed_one_gets_nothing_more():
    bus = EventBus()
    subscription = bus.subscribe()
    waiter = gevent.spawn(subscription.get, 5)
    gevent.sleep(0)
    bus.publish("state")
    assert waiter.get(timeout=1).event == "state"
    subscription.close()
    bus.publish("later")
    assert bus.subscribers == 0 and subscription.get(0) is None


def test_scheduler_events_travel_as_they_are():
    bus = EventBus()
    subscription = bus.subscribe()
    event = ModelStateChanged("A", ProcessState.STARTING, ProcessState.READY, 4242, 1.0)
    bus.publish(event)
    assert subscription.get(0).event is event


# --------------------------------------------------------------------------- exchanges


class Recorder(ExchangeObserver):
    def __init__(self, wants_chunks: bool = False):
        self.wants_chunks = wants_chunks
        self.steps: list[str] = []
        self.chunks: list[bytes] = []

    def on_start(self, exchange):
        self.steps.append("start")
        if self.wants_chunks:
            exchange.watch_chunks(self.chunks.append)

    def on_response(self, exchange):
        self.steps.append(f"response {exchange.status}")

    def on_end(self, exchange):
        self.steps.append(f"end {exchange.outcome}")


def test_observers_see_start_response_chunks_and_one_end():
    observers = Observers()
    plain, watcher = Recorder(), Recorder(wants_chunks=True)
    observers.add(plain)
    observers.add(watcher)
    exchange = observers.open("A", "POST", "/v1/chat/completions", began=100.0)
    exchange.granted(queued=0.4, loading=0.3)
    exchange.responded(200, [("Content-Type", "text/event-stream")])
    chunk = b"data: {}\n\n"
    exchange.sent(chunk)
    exchange.sent(b"data: [DONE]\n\n")
    exchange.end(Outcome.COMPLETE)
    exchange.end(Outcome.CLIENT_GONE)  # a second word changes nothing
    assert plain.steps == watcher.steps == ["start", "response 200", "end complete"]
    assert plain.chunks == [] and watcher.chunks[0] is chunk, "the very bytes sent, not a copy"
    assert exchange.response_bytes == len(chunk) + 14 and exchange.first_byte is not None
    assert exchange.outcome is Outcome.COMPLETE and exchange.total is not None


def test_an_observer_that_raises_never_breaks_the_exchange():
    class Broken(ExchangeObserver):
        def on_start(self, exchange):
            exchange.watch_chunks(lambda chunk: (_ for _ in ()).throw(RuntimeError("broken")))
            raise RuntimeError("broken")

        on_end = lambda self, *args: (_ for _ in ()).throw(RuntimeError("broken"))  # noqa: E731

    observers, after = Observers(), Recorder()
    observers.add(Broken())
    observers.add(after)
    exchange = observers.open("A", "GET", "/props")
    exchange.sent(b"x")
    exchange.sent(b"y")  # the broken sink was dropped at the first chunk
    exchange.refuse(429, "model A is at its concurrency limit of 10")
    assert after.steps == ["start", "end refused"]
    assert (exchange.status, exchange.error) == (429, "model A is at its concurrency limit of 10")


def test_exchange_ids_increase():
    observers = Observers()
    ids = [observers.open("A", "GET", "/").id for _ in range(3)]
    assert ids == sorted(set(ids))


def test_the_access_line_says_model_request_answer_time_and_where_the_time_went():
    exchange = Observers().open("A", "POST", "/v1/chat/completions", began=0.0)
    exchange.granted(0.401, 0.380)
    exchange.responded(200, [])
    exchange.sent(b"x" * 1234)
    exchange.end(Outcome.CLIENT_GONE)
    exchange.total = 0.532
    assert access_line(exchange) == ("A: POST /v1/chat/completions 200, 1234 bytes in 0.532s "
                                     "(queued 0.401s, loading 0.380s); client gone")
    refused = Observers().open("B", "POST", "/v1/chat/completions")
    refused.refuse(502, "upstream command exited prematurely with code 1")
    assert access_line(refused).startswith("B: POST /v1/chat/completions 502, 0 bytes in ")
    assert access_line(refused).endswith(": upstream command exited prematurely with code 1")


def test_a_cancel_runs_the_stage_canceller_and_ends_the_exchange_as_cancelled():
    exchange = Observers().open("m", "POST", "/v1/chat/completions")
    calls = []
    exchange.set_canceller(lambda: calls.append("leave queue"))
    assert exchange.cancel() is True
    assert calls == ["leave queue"]
    exchange.end(Outcome.CLIENT_GONE, status=499)  # what the waiter's error turns into
    assert exchange.outcome is Outcome.CANCELLED
    assert exchange.cancel() is False  # over: nothing left to cancel


def test_a_cancel_between_stages_is_acted_on_by_the_next_stage():
    exchange = Observers().open("m", "POST", "/v1/chat/completions")
    exchange.set_canceller(None)  # the request is on its way upstream: nothing to cut yet
    assert exchange.cancel() is True
    cut = []
    exchange.set_canceller(lambda: cut.append("upstream cut"))
    assert cut == ["upstream cut"]


def test_a_complete_answer_stays_complete_even_if_a_cancel_came_too_late():
    exchange = Observers().open("m", "POST", "/v1/chat/completions")
    exchange.cancel()
    exchange.end(Outcome.COMPLETE, status=200)
    assert exchange.outcome is Outcome.COMPLETE


def test_request_headers_are_read_from_the_environ():
    environ = {"HTTP_AUTHORIZATION": "Bearer k", "HTTP_X_SESSION_ID": "s1", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": "12", "REQUEST_METHOD": "POST"}
    exchange = Observers().open("m", "POST", "/v1/chat/completions", environ=environ)
    assert dict(exchange.request_headers()) == {"Authorization": "Bearer k", "X-Session-Id": "s1",
                                                "Content-Type": "application/json", "Content-Length": "12"}
