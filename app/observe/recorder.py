"""The recorder: gives each metered exchange its activity id at once, and does the rest off the client's path.

``record`` runs in the exchange's ``on_end``, which is still on the
client's path (a chunked answer's last bytes go out after it): it only
takes the next id and queues the ``Finished``. A writer greenlet drains the
queue, at most every ``BATCH_WINDOW`` (so a busy server writes many records
per transaction, not one per request): it reads each answer's tokens and
builds its record, keeps its capture, writes the batch to the store in one
transaction, then publishes
``ActivityRecorded(id, model, ..., entry)`` for each, so whoever hears the event finds
the record (and its capture) there. ``flush`` does the same at once: a
reader calls it first to see every finished request, shutdown calls it so
nothing queued is lost.

The writer yields to requests between records, but the longer its queue the
more records it writes at each turn (one more per ``CATCH_UP`` waiting): a
loaded hub's turns are long and rare (hundreds of greenlets each), and a
writer that wrote one record per turn fell behind by almost every request
for as long as the load lasted, each waiting one holding its answer's sample
(500 streaming clients for 10 minutes: the worker grew 54 -> 466 MiB). With
the longer turns the queue settles near ``CATCH_UP`` times the requests that
end during one turn, and each turn's extra work is the work those requests
brought.

The recorder owns the id counter and the queue; the store owns the records,
the capture cache the captures.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from typing import Callable

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from app.observe.activity import ActivityRecord, Finished, capture_of, record_of
from app.observe.activity_store import ActivityStore
from app.observe.captures import CaptureCache
from app.observe.events import ActivityRecorded

log = logging.getLogger("llama-swap.observe")

BATCH_WINDOW = 0.05  # seconds the writer waits after a request ends, gathering the next ones into one write
CATCH_UP = 8  # requests waiting to be recorded per extra record the writer writes at each turn


class Recorder:
    def __init__(self, store: ActivityStore, captures: CaptureCache, publish: Callable[[object], None],
                 window: float = BATCH_WINDOW):
        self._store = store
        self._window = window
        self._captures = captures
        self._publish = publish
        self._ids = itertools.count(store.next_id())
        self._pending: deque[tuple[int, Finished]] = deque()
        self._in_hand: deque[tuple[int, Finished]] = deque()  # the batch being written, what is left of it
        self._wake = Event()
        self._writer: gevent.Greenlet | None = None
        self._writing = Semaphore()  # one batch written at a time; a flush waits for the one in hand

    def record(self, finished: Finished) -> int:
        """Queue ``finished`` under the next activity id, which is returned."""
        id = next(self._ids)
        self._pending.append((id, finished))
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._run)
        self._wake.set()
        return id

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Finished requests not written yet: those queued and those left in the batch in hand."""
        return len(self._pending) + len(self._in_hand)

    def flush(self) -> None:
        """Store everything queued, now, and the batch the writer has in hand (it yields while it works)."""
        with self._writing:
            while self._pending:
                self._in_hand, self._pending = self._pending, deque()
                self._write(self._in_hand)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            gevent.sleep(self._window)  # let the requests ending meanwhile join this transaction
            self._wake.clear()
            self.flush()

    def _write(self, batch: deque[tuple[int, Finished]]) -> None:
        """Write ``batch``, emptying it: each ``Finished`` is let go once its record is built."""
        records: list[ActivityRecord] = []
        turn = 0  # records left to write before the next yield
        while batch:
            if not turn:
                gevent.sleep(0)  # requests go first: reading tokens and compressing captures wait their turn
                turn = 1 + self.backlog // CATCH_UP  # ... but a longer queue gets a longer turn
            turn -= 1
            id, finished = batch.popleft()
            try:
                records.append(record_of(id, finished))
                capture = capture_of(id, finished)
                if capture is not None:
                    self._captures.add(capture)
            except Exception:
                log.exception("activity %d (%s %s) could not be recorded", id, finished.model, finished.req_path)
        try:
            self._store.insert(records)
        except Exception:
            log.exception("%d activity records could not be stored", len(records))
            return
        for record in records:
            self._publish(ActivityRecorded(record.id, record.model, record.tokens.input_tokens,
                                           record.tokens.output_tokens,
                                           record.to_json(self._captures.has(record.id))))
