"""The log monitors without a server: history ring, live readers, the mux per logToStdout, the bus, proxy lines."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import gevent
import pytest

from app.config import load_config_text
from app.observe.bus import EventBus
from app.observe.events import LogWritten
from app.observe.logs import HISTORY_BYTES, History, LogHub, LogMonitor, dropped_line
from app.observe.stdout_writer import StdoutWriter, dropped_marker
from app.runtime.log_setup import setup_logging, upstream_output_sink
from app.runtime.log_time import LAYOUTS
from tests.helpers.fakes import wait_until


def hub_with(log_to_stdout: str = "proxy") -> tuple[LogHub, io.StringIO, EventBus]:
    bus, stdout = EventBus(), io.StringIO()
    hub = LogHub(publish=bus.publish, stdout=stdout)
    hub.configure(log_to_stdout)
    return hub, stdout, bus


# --------------------------------------------------------------------------- history


def test_history_keeps_exactly_the_last_100_kib_once_it_wraps():
    history = History()
    line = b"0123456789abcdef" * 4 + b"\n"  # 65 bytes: the wrap lands inside a line
    written = b""
    for n in range(2000):
        chunk = b"%05d " % n + line
        history.append(chunk)
        written += chunk
    assert len(written) > HISTORY_BYTES
    assert history.read() == written[-HISTORY_BYTES:]


def test_a_write_larger_than_the_history_leaves_its_own_tail():
    history = History(capacity=10)
    history.append(b"abc")
    history.append(b"0123456789ABCDEF")
    assert history.read() == b"6789ABCDEF"
    history.append(b"xy")
    assert history.read() == b"89ABCDEFxy"


def test_an_empty_monitor_has_an_empty_history():
    assert LogMonitor("proxy").history() == b""


# --------------------------------------------------------------------------- live readers


def test_a_reader_gets_what_is_written_after_it_subscribed():
    monitor = LogMonitor("proxy")
    monitor.write(b"before\n")
    reader = monitor.subscribe()
    monitor.write(b"one\n")
    monitor.write(b"two\n")
    assert reader.get(0) == b"one\ntwo\n"
    assert reader.get(0) is None


def test_a_slow_reader_loses_bytes_and_is_told_how_many_where_they_went_missing():
    monitor = LogMonitor("upstream")
    slow, fast = monitor.subscribe(max_bytes=10), monitor.subscribe()
    for line in (b"aaaa\n", b"bbbb\n", b"cccc\n", b"dd\n"):
        monitor.write(line)  # never waits for the slow reader
    assert slow.get(0) == b"aaaa\nbbbb\n" + dropped_line(8)
    assert dropped_line(8) == "— 8 bytes dropped —\n".encode()
    assert fast.get(0) == b"aaaa\nbbbb\ncccc\ndd\n"
    monitor.write(b"eeee\n")  # caught up: nothing lost any more
    assert slow.get(0) == b"eeee\n"
    assert slow.dropped_total == 8 and fast.dropped_total == 0


def test_writes_never_block_on_a_reader_that_never_reads():
    monitor = LogMonitor("upstream")
    stuck = monitor.subscribe(max_bytes=1000)
    reader = monitor.subscribe(max_bytes=10 * 1024 * 1024)
    line = b"x" * 99 + b"\n"
    writer = gevent.spawn(lambda: [monitor.write(line) for _ in range(10_000)])
    writer.join(timeout=5)
    assert writer.ready() and writer.successful(), "a write waited for a reader"
    assert reader.get(0) == line * 10_000
    assert stuck.dropped_total == 10_000 * 100 - 1000
    assert monitor.history() == line * (HISTORY_BYTES // 100)


def test_a_waiting_reader_wakes_on_a_write_and_a_closed_one_ends():
    monitor = LogMonitor("proxy")
    reader = monitor.subscribe()
    waiting = gevent.spawn(reader.get)
    gevent.sleep(0)
    monitor.write(b"hello\n")
    assert waiting.get(timeout=5) == b"hello\n"
    waiting = gevent.spawn(reader.get)
    gevent.sleep(0)
    reader.close()
    assert waiting.get(timeout=5) is None
    assert monitor.readers == 0


def test_closing_the_hub_ends_every_live_reader_even_of_models_made_later():
    hub, _, _ = hub_with()
    readers = [hub.proxy.subscribe(), hub.mux.subscribe(), hub.model("m").subscribe()]
    waiting = [gevent.spawn(r.get) for r in readers]
    gevent.sleep(0)
    hub.close()
    assert [w.get(timeout=5) for w in waiting] == [None, None, None]
    assert hub.model("late").subscribe().get() is None
    hub.write_proxy("still kept\n")
    assert hub.proxy.history() == b"still kept\n"


# --------------------------------------------------------------------------- the mux per logToStdout


@pytest.mark.parametrize("log_to_stdout, mux", [
    ("proxy", "P\n"),
    ("upstream", "U\n"),
    ("both", "P\nU\n"),
    ("none", ""),
])
def test_the_mux_and_stdout_carry_what_log_to_stdout_names(log_to_stdout, mux):
    hub, stdout, _ = hub_with(log_to_stdout)
    hub.write_proxy("P\n")
    hub.write_upstream("llama", "U\n")
    assert hub.mux.history() == mux.encode()
    assert stdout.getvalue() == mux
    # each monitor keeps its own history whatever goes to stdout
    assert hub.proxy.history() == b"P\n"
    assert hub.upstream.history() == b"U\n" and hub.model("llama").history() == b"U\n"


def test_a_models_output_goes_to_its_own_log_and_the_upstream_log_only():
    hub, _, _ = hub_with("both")
    sink = upstream_output_sink(hub)
    sink("a", "from a")
    sink("org/b", "from b")
    assert hub.model("a").history() == b"from a\n"
    assert hub.model("org/b").history() == b"from b\n"
    assert hub.upstream.history() == b"from a\nfrom b\n"
    assert hub.proxy.history() == b""


def test_every_proxy_and_upstream_write_is_published_on_the_bus():
    hub, _, bus = hub_with("none")
    events = bus.subscribe()
    hub.write_proxy("[INFO] hi\n")
    hub.write_upstream("llama", "srv ready\n")
    got = [events.get(0).event for _ in range(2)]
    assert got == [LogWritten("proxy", "[INFO] hi\n"), LogWritten("upstream", "srv ready\n", "llama")]
    assert events.get(0) is None


def test_a_stdout_that_is_gone_does_not_stop_the_logs():
    stdout = io.StringIO()
    stdout.close()
    hub = LogHub(stdout=stdout)
    hub.write_proxy("[INFO] still logged\n")
    assert hub.mux.history() == b"[INFO] still logged\n"


# --------------------------------------------------------------------------- proxy lines from python logging


@pytest.fixture
def proxy_logger():
    logger = logging.getLogger("llama-swap")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield logger
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def test_proxy_records_at_or_above_log_level_become_lines_in_the_proxy_log(proxy_logger):
    hub, stdout, _ = hub_with()
    setup_logging(load_config_text("logLevel: warn\nmodels: {}\n"), hub)
    logging.getLogger("llama-swap.proxy").info("not shown")
    logging.getLogger("llama-swap.proxy").warning("llama: slow %s", "start")
    logging.getLogger("llama-swap").error("broken")
    assert hub.proxy.history() == b"[WARN] llama: slow start\n[ERROR] broken\n"
    assert stdout.getvalue() == "[WARN] llama: slow start\n[ERROR] broken\n"


def test_log_time_format_puts_a_go_style_stamp_before_each_line(proxy_logger):
    hub, _, _ = hub_with()
    setup_logging(load_config_text("logLevel: debug\nlogTimeFormat: rfc3339\nmodels: {}\n"), hub)
    logging.getLogger("llama-swap").debug("hello")
    line = hub.proxy.history().decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \[DEBUG\] hello\n", line), line


def test_log_to_stdout_upstream_keeps_proxy_lines_out_of_stdout_but_in_the_proxy_log(proxy_logger):
    hub, stdout, _ = hub_with()
    setup_logging(load_config_text("logToStdout: upstream\nmodels: {}\n"), hub)
    logging.getLogger("llama-swap").info("quiet")
    assert hub.proxy.history() == b"[INFO] quiet\n"
    assert stdout.getvalue() == "" and hub.mux.history() == b""


GO_REFERENCE_TIME = datetime(2006, 1, 2, 15, 4, 5, 123456, tzinfo=timezone(timedelta(hours=-7), "MST"))


@pytest.mark.parametrize("name, expected", [
    ("ansic", "Mon Jan  2 15:04:05 2006"),
    ("unixdate", "Mon Jan  2 15:04:05 MST 2006"),
    ("rubydate", "Mon Jan 02 15:04:05 -0700 2006"),
    ("rfc822", "02 Jan 06 15:04 MST"),
    ("rfc822z", "02 Jan 06 15:04 -0700"),
    ("rfc850", "Monday, 02-Jan-06 15:04:05 MST"),
    ("rfc1123", "Mon, 02 Jan 2006 15:04:05 MST"),
    ("rfc1123z", "Mon, 02 Jan 2006 15:04:05 -0700"),
    ("rfc3339", "2006-01-02T15:04:05-07:00"),
    ("rfc3339nano", "2006-01-02T15:04:05.123456-07:00"),
    ("kitchen", "3:04PM"),
    ("stamp", "Jan  2 15:04:05"),
    ("stampmilli", "Jan  2 15:04:05.123"),
    ("stampmicro", "Jan  2 15:04:05.123456"),
    ("stampnano", "Jan  2 15:04:05.123456000"),
])
def test_each_log_time_format_writes_gos_reference_time_as_go_does(name, expected):
    assert LAYOUTS[name](GO_REFERENCE_TIME) == expected


def test_utc_is_written_z_in_rfc3339():
    assert LAYOUTS["rfc3339"](datetime(2026, 12, 1, 2, 3, 4, tzinfo=timezone.utc)) == "2026-12-01T02:03:04Z"


def test_a_reader_waiting_across_many_writes_gets_them_in_order():
    monitor = LogMonitor("m")
    reader = monitor.subscribe()
    got: list[bytes] = []

    def read() -> None:
        while (data := reader.get()) is not None:
            got.append(data)

    greenlet = gevent.spawn(read)
    for n in range(100):
        monitor.write(b"%d\n" % n)
        if n % 10 == 0:
            gevent.sleep(0)
    wait_until(lambda: b"".join(got).endswith(b"99\n"), "the reader to catch up")
    reader.close()
    greenlet.join(timeout=5)
    assert b"".join(got) == b"".join(b"%d\n" % n for n in range(100))


# --------------------------------------------------------------------------- lines from other threads


def test_lines_written_from_other_threads_are_handed_to_the_hub_each_thread_s_in_order():
    written_on = set()  # the threads the writes were done on (each publishes once)
    hub = LogHub(publish=lambda event: written_on.add(threading.get_ident()), stdout=io.StringIO())
    reader = hub.upstream.subscribe()

    def write(n: int) -> None:
        for i in range(200):
            hub.write_proxy(f"proxy {n} {i}\n")
            hub.write_upstream(f"m{n}", f"{n} {i}\n")

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    got = []
    wait_until(lambda: got.append(reader.get(timeout=0) or b"") or b"".join(got).count(b"\n") == 800,
               "every upstream line")
    assert written_on == {threading.get_ident()}, "a write was done off the hub's thread"
    lines = b"".join(got).decode().splitlines()
    for n in range(4):
        assert [line for line in lines if line.startswith(f"{n} ")] == [f"{n} {i}" for i in range(200)]
    assert hub.proxy.history().count(b"\n") == 800


def test_once_the_hub_that_owns_the_logs_is_destroyed_a_line_is_written_where_it_is_logged():
    made = []

    def on_a_thread_of_its_own() -> None:
        made.append(LogHub(stdout=io.StringIO()))
        gevent.get_hub().destroy(destroy_loop=True)  # the bridge's thread, at its end

    thread = threading.Thread(target=on_a_thread_of_its_own)
    thread.start()
    thread.join(5)
    made[0].write_proxy("logged at exit\n")
    assert made[0].proxy.history() == b"logged at exit\n"


# --------------------------------------------------------------------------- stdout, off the hub


def test_a_full_stdout_never_blocks_a_write_and_the_gap_is_marked_with_its_size():
    read_end, write_end = os.pipe()  # nobody reads it until the end: 64 KB in, a write to it would block
    try:
        writer = StdoutWriter(fd=lambda: write_end, max_bytes=256 * 1024)
        line = b"x" * 99 + b"\n"
        began = time.monotonic()
        for _ in range(10_000):  # 1 MB: four times the queue, sixteen times the pipe
            writer.write(line)
        assert time.monotonic() - began < 1.0
        assert 0 < writer.dropped_total < 1_000_000
        os.set_blocking(read_end, False)
        out = b""
        deadline = time.monotonic() + 10
        while writer.pending() or b"dropped" not in out:
            assert time.monotonic() < deadline, "the writer thread stopped draining"
            try:
                out += os.read(read_end, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
            if not writer.pending() and b"dropped" not in out:
                writer.write(line)  # room again: the marker goes out before this line
        assert dropped_marker(writer.dropped_total) in out
        assert writer.drain(timeout=1.0)
    finally:
        os.close(read_end)
        os.close(write_end)
