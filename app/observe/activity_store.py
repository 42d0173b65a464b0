"""The activity store: records in SQLite, in memory (newest ``metricsMaxInMemory`` kept) or in a file.

Without ``store.path`` the database is SQLite's ``:memory:``, pruned to the
newest ``keep`` records after every write; with one it is that file (WAL,
``synchronous=NORMAL``), never pruned, so the activity outlives restarts.
The schema is a numbered list of migrations (``MIGRATIONS``); the
``schema_version`` table says which ran, and opening a database runs the
rest, each in its own transaction.

One owner writes: the recorder (``insert`` in batches). Readers ask for a
page (``page``, llama-swap's ``/api/metrics/activity``), the totals and
histograms (``stats``), or the newest records (``recent``). Ids are given by
the recorder (``next_id`` continues a file's), never by SQLite. Timestamps
are stored as REAL unix seconds: sub-second precision survives.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from app.observe.activity import ActivityRecord
from app.observe.tokens import TokenMetrics

MIGRATIONS: tuple[str, ...] = (
    # 1: llama-swap's activity table, with sub-second timestamps
    """
    CREATE TABLE activity (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        model TEXT NOT NULL,
        req_path TEXT NOT NULL DEFAULT '',
        resp_content_type TEXT NOT NULL DEFAULT '',
        resp_status_code INTEGER NOT NULL DEFAULT 0,
        cache_tokens INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        prompt_per_second REAL NOT NULL DEFAULT 0,
        tokens_per_second REAL NOT NULL DEFAULT 0,
        draft_tokens INTEGER NOT NULL DEFAULT 0,
        draft_acc_tokens INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        error_msg TEXT NOT NULL DEFAULT '',
        metadata_json TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX activity_ts ON activity (ts);
    CREATE INDEX activity_model ON activity (model, id);
    """,
    # 2: where the time went
    """
    ALTER TABLE activity ADD COLUMN queue_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE activity ADD COLUMN load_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE activity ADD COLUMN ttfb_ms INTEGER;
    """,
)

COLUMNS = ("id", "ts", "model", "req_path", "resp_content_type", "resp_status_code", "cache_tokens",
           "input_tokens", "output_tokens", "prompt_per_second", "tokens_per_second", "draft_tokens",
           "draft_acc_tokens", "duration_ms", "error_msg", "metadata_json", "queue_ms", "load_ms", "ttfb_ms")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM activity"
_INSERT = f"INSERT OR REPLACE INTO activity ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

# The API's sort keys, and the column each sorts by (a whitelist: no user text reaches the SQL).
SORT_COLUMNS = {
    "id": "id", "time": "ts", "model": "model", "req_path": "req_path", "resp_status_code": "resp_status_code",
    "resp_content_type": "resp_content_type", "cached": "cache_tokens", "prompt": "input_tokens",
    "generated": "output_tokens", "drafted": "draft_tokens", "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second", "duration": "duration_ms",
    # ours: where the time went
    "queued": "queue_ms", "load": "load_ms", "ttfb": "ttfb_ms",
}
MIN_BINS, MAX_BINS = 5, 20


@dataclass(frozen=True)
class ActivityQuery:
    """A page of records: filters (inclusive bounds; ``start``/``end`` to the second), then sort and page.

    ``statuses``: inclusive ranges of status codes, any of which matches;
    ``path``: text the request path contains.
    """

    models: tuple[str, ...] = ()
    statuses: tuple[tuple[int, int], ...] = ()
    path: str | None = None
    start: float | None = None
    end: float | None = None
    min_id: int | None = None
    max_id: int | None = None
    limit: int = 25
    page: int = 1
    sort: str = "id"
    descending: bool = True


@dataclass(frozen=True)
class ActivityPage:
    records: list[ActivityRecord]
    page: int
    limit: int
    total: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.limit) if self.total else 0


@dataclass(frozen=True)
class Histogram:
    bins: list[int]
    min: float
    max: float
    bin_size: float
    p50: float
    p95: float
    p99: float

    def to_json(self) -> dict[str, Any]:
        return {"bins": self.bins, "min": self.min, "max": self.max, "binSize": self.bin_size,
                "p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True)
class ActivityStats:
    total_requests: int
    total_input_tokens: int
    total_output_tokens: int
    total_cache_tokens: int
    prompt_histogram: Histogram | None
    gen_histogram: Histogram | None

    def to_json(self) -> dict[str, Any]:
        return {"total_requests": self.total_requests, "total_input_tokens": self.total_input_tokens,
                "total_output_tokens": self.total_output_tokens, "total_cache_tokens": self.total_cache_tokens,
                "prompt_histogram": self.prompt_histogram.to_json() if self.prompt_histogram else None,
                "gen_histogram": self.gen_histogram.to_json() if self.gen_histogram else None}


def histogram(values: Sequence[float]) -> Histogram | None:
    """Sturges' bin count (clamped to 5..20; one bin when all values are equal), percentiles interpolated."""
    if not values:
        return None
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    p50, p95, p99 = (percentile(ordered, p) for p in (50, 95, 99))
    if low == high:
        return Histogram([len(ordered)], low, high, 0.0, p50, p95, p99)
    count = min(MAX_BINS, max(MIN_BINS, math.ceil(math.log2(len(ordered))) + 1))
    size = (high - low) / count
    bins = [0] * count
    for value in ordered:
        bins[min(int((value - low) // size), count - 1)] += 1
    return Histogram(bins, low, high, size, p50, p95, p99)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between the closest ranks of sorted ``ordered``."""
    if len(ordered) == 1:
        return ordered[0]
    rank = p / 100 * (len(ordered) - 1)
    lower, upper = math.floor(rank), math.ceil(rank)
    return ordered[lower] + (rank - lower) * (ordered[upper] - ordered[lower])


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Run the migrations ``conn`` has not seen, each in one transaction; the schema version after."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    done = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    for version, script in enumerate(migrations, start=1):
        if version > done:
            try:
                conn.executescript(f"BEGIN;\n{script}\n"
                                   f"INSERT INTO schema_version VALUES ({version}, {time.time()});\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    return max(done, len(migrations))


class ActivityStore:
    """The records; ``path`` None keeps the newest ``keep`` in memory, a path keeps all in that file."""

    def __init__(self, path: str | None = None, keep: int = 1000):
        self.path = path
        self.keep = keep if keep > 0 else 1000
        # Autocommit: transactions are explicit. Used from the gevent worker's one thread;
        # XX: a threaded WSGI host would need a lock around it (no such host is tested yet).
        self._db = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
        self.schema_version = migrate(self._db)

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def next_id(self) -> int:
        return (self._db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()[0] or 0) + 1

    def insert(self, records: Iterable[ActivityRecord]) -> None:
        """Write ``records`` in one transaction (then prune, in memory)."""
        rows = [_row(record) for record in records]
        if not rows:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, rows)
            if not self.persistent:
                db.execute("DELETE FROM activity WHERE id <= (SELECT MAX(id) FROM activity) - ?", (self.keep,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get(self, id: int) -> ActivityRecord | None:
        row = self._db.execute(f"{_SELECT} WHERE id = ?", (id,)).fetchone()
        return None if row is None else _record(row)

    def recent(self, count: int | None = None) -> list[ActivityRecord]:
        """The newest ``count`` records (default: ``keep``), oldest first."""
        rows = self._db.execute(f"{_SELECT} ORDER BY id DESC LIMIT ?", (count or self.keep,)).fetchall()
        return [_record(row) for row in reversed(rows)]

    def page(self, query: ActivityQuery) -> ActivityPage:
        where, args = _where(query)
        total = self._db.execute(f"SELECT COUNT(*) FROM activity{where}", args).fetchone()[0]
        direction = "DESC" if query.descending else "ASC"
        column = SORT_COLUMNS[query.sort]
        order = f" ORDER BY id {direction}" if column == "id" else f" ORDER BY {column} {direction}, id {direction}"
        rows = self._db.execute(f"{_SELECT}{where}{order} LIMIT ? OFFSET ?",
                                [*args, query.limit, (query.page - 1) * query.limit]).fetchall()
        return ActivityPage([_record(row) for row in rows], query.page, query.limit, total)

    def stats(self, query: ActivityQuery = ActivityQuery()) -> ActivityStats:
        """Totals and speed histograms of the records ``query``'s filters select (its sort and page are ignored)."""
        where, args = _where(query)
        totals = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            f" COALESCE(SUM(CASE WHEN cache_tokens > 0 THEN cache_tokens ELSE 0 END), 0) FROM activity{where}",
            args).fetchone()
        speed = " AND " if where else " WHERE "
        rows = self._db.execute(
            f"SELECT prompt_per_second, tokens_per_second FROM activity{where}{speed}"
            "(prompt_per_second > 0 OR tokens_per_second > 0)", args).fetchall()
        return ActivityStats(*totals, histogram([p for p, _ in rows if p > 0]),
                             histogram([g for _, g in rows if g > 0]))

    def close(self) -> None:
        self._db.close()


def _where(query: ActivityQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.models:
        clauses.append(f"model IN ({', '.join('?' * len(query.models))})")
        args.extend(query.models)
    if query.statuses:
        clauses.append("(" + " OR ".join("resp_status_code BETWEEN ? AND ?" for _ in query.statuses) + ")")
        args.extend(code for bounds in query.statuses for code in bounds)
    if query.path:
        clauses.append("instr(req_path, ?) > 0")
        args.append(query.path)
    if query.start is not None:
        clauses.append("ts >= ?")
        args.append(math.floor(query.start))
    if query.end is not None:
        clauses.append("ts < ?")  # inclusive to the second, as llama-swap's whole-second timestamps
        args.append(math.floor(query.end) + 1)
    if query.min_id is not None:
        clauses.append("id >= ?")
        args.append(query.min_id)
    if query.max_id is not None:
        clauses.append("id <= ?")
        args.append(query.max_id)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _row(record: ActivityRecord) -> tuple[Any, ...]:
    t = record.tokens
    return (record.id, record.timestamp, record.model, record.req_path, record.resp_content_type,
            record.resp_status_code, t.cache_tokens, t.input_tokens, t.output_tokens, t.prompt_per_second,
            t.tokens_per_second, t.draft_tokens, t.draft_acc_tokens, record.duration_ms, record.error_msg,
            json.dumps(record.metadata) if record.metadata else "", record.queue_ms, record.load_ms,
            record.ttfb_ms)


def _record(row: Sequence[Any]) -> ActivityRecord:
    (id, ts, model, req_path, content_type, status, cached, input_tokens, output_tokens, prompt_rate,
     gen_rate, drafts, accepted, duration_ms, error_msg, metadata, queue_ms, load_ms, ttfb_ms) = row
    tokens = TokenMetrics(cached, input_tokens, output_tokens, prompt_rate, gen_rate, drafts, accepted)
    return ActivityRecord(id, ts, model, req_path, content_type, status, tokens, duration_ms, queue_ms, load_ms,
                          ttfb_ms, error_msg, json.loads(metadata) if metadata else {})
