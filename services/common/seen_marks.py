"""Where the de-dup record's marks live (:mod:`services.common.seen`): the two
:class:`~services.common.seen.MarkStore` implementations.

- :class:`SqliteMarks`: a log in a SQLite file (table ``mark_batches``), and its marks
  in memory: by (use case, kind), the 64-bit hashes of the ids, sorted in numpy arrays,
  each with the rowid of the log's row that holds its id: 16 bytes a mark (twice that
  for a moment while the main arrays take in the recent ones). A hash that hits says
  only "maybe": the record checks the id's text against those rows.
- :class:`PostgresMarks`: a table keyed by (use case, kind, event id), asked by SQL.

>>> marks = Marks()
>>> hashes = hash_ids(["a", "b"])
>>> order = np.argsort(hashes)
>>> marks.add(hashes[order], np.array([7, 7])[order])
>>> hit, rows = marks.rows_of(np.sort(hash_ids(["b", "c"])))
>>> int(hit.sum()), rows.tolist()
(1, [7])
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import compress, groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import mmh3
import msgspec
import numpy as np

from services.common.errors import InvalidInput

BUSY_TIMEOUT_S = 30.0
# Ids a query asks about at once (SQLite allows 32,766 parameters).
CHUNK = 500
# Pages of write-ahead log between checkpoints (4 KiB each: a log of up to 40 MB).
CHECKPOINT_PAGES = 10_000
# PostgreSQL truncates identifiers at 63 bytes.
LONGEST_TABLE = 63
# Marks the recent arrays hold before they join the main ones: this many, or a 16th
# of the main ones (a merge copies both): a mark is copied a few dozen times by 1,000,000.
RECENT_MARKS = 32_768
NO_HASHES, NO_ROWS = np.empty(0, "<u8"), np.empty(0, np.int64)
# The SQLite log's table (its hashes before the ids: reading them skips the text), a
# row's insert, and the rows appended after a rowid.
LOG = "mark_batches"
LOG_INSERT = f"INSERT INTO {LOG} (usecase, kind, event_ids, hashes) VALUES (?, ?, ?, ?)"
LOG_SINCE = f"SELECT rowid, usecase, kind, hashes FROM {LOG} WHERE rowid > ?"
# Ids a row of the log holds at most when an older file's marks move to it.
LOG_ROW_IDS = 10_000
# A named state's write, in either database ({mark}: its parameter placeholder).
STATE_UPSERT = (
    "INSERT INTO {table} VALUES ({mark}, {mark})"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
encode_ids = msgspec.json.Encoder().encode
decode_ids = msgspec.json.Decoder(list[str]).decode


def hash_ids(event_ids: Sequence[str]) -> np.ndarray:
    """The ids' 64-bit hashes, in order (the first half of MurmurHash3's x64 128 bits)."""
    digests = b"".join(map(mmh3.mmh3_x64_128_digest, map(str.encode, event_ids)))
    return np.frombuffer(digests, "<u8")[::2].copy()


def read_rows(connection: Any, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows one query returns, on either database's connection; its (read)
    transaction ends with it."""
    with connection:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return list(cursor.fetchall())
        finally:
            cursor.close()


class PostgresMarks:
    """Tables ``<prefix>_seen`` (the marks, keyed) and ``<prefix>_state`` in the
    PostgreSQL database at ``url``: every replica on every machine asks them."""

    placeholder = "%s"

    def __init__(self, url: str, prefix: str) -> None:
        import psycopg2

        name = re.sub(r"[^a-z0-9_]", "_", prefix.lower())
        if not name or len(name) + len("_state") > LONGEST_TABLE:
            raise InvalidInput(f"table prefix {prefix!r}: 1 to {LONGEST_TABLE - 6} characters")
        self.seen_table, self.state_table = f"{name}_seen", f"{name}_state"
        dsn = "postgresql://" + url.split("://", 1)[1]  # libpq knows no +driver
        self.connection = psycopg2.connect(dsn, connect_timeout=10)
        with self.connection, self.connection.cursor() as cursor:
            # Replicas start together: without the lock, two CREATE TABLE IF NOT EXISTS
            # of one table can both go ahead, and one fails on PostgreSQL's catalog.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.seen_table,))
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.seen_table} ("
                " usecase TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL,"
                " PRIMARY KEY (usecase, kind, event_id))"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.state_table}"
                " (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def unseen(self, usecase: str, kind: str, event_ids: set[str]) -> set[str]:
        found: set[str] = set()
        ids = list(event_ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            query = (
                f"SELECT event_id FROM {self.seen_table} WHERE usecase=%s AND kind=%s"
                f" AND event_id IN ({','.join(['%s'] * len(chunk))})"
            )
            found.update(
                row[0] for row in read_rows(self.connection, query, [usecase, kind, *chunk])
            )
        return event_ids - found

    def add(
        self, usecase: str, kind: str, event_ids: Iterable[str], states: Sequence[tuple[str, str]]
    ) -> None:
        from psycopg2.extras import execute_batch

        # In key order: a batch of random ids in order touches the key's B-tree pages
        # in turn (10.6 -> 7.5 us CPU an id, SQLite, 2,000-id batches, when it was keyed).
        marks = [(usecase, kind, event_id) for event_id in sorted(set(event_ids))]
        insert = f"INSERT INTO {self.seen_table} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
        with self.connection, self.connection.cursor() as cursor:
            execute_batch(cursor, insert, marks, page_size=CHUNK)  # one round trip a page
            upsert = STATE_UPSERT.format(table=self.state_table, mark="%s")
            execute_batch(cursor, upsert, states, page_size=CHUNK)

    def count(self, usecase: str, kind: str) -> int:
        query = f"SELECT COUNT(*) FROM {self.seen_table} WHERE usecase=%s AND kind=%s"
        ((total,),) = read_rows(self.connection, query, [usecase, kind])
        return int(total)


class SqliteMarks:
    """A SQLite file's log of marks (``":memory:"``: none), held in memory as
    :class:`Marks` by (use case, kind), with the rows other replicas appended read
    (by rowid) before each answer."""

    placeholder = "?"
    state_table = "state"

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One caller at a time, from whichever worker thread runs its flush.
        self.connection = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False
        )
        self.connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        self.connection.execute("PRAGMA journal_mode=WAL")
        # Fewer checkpoints than SQLite's default (1,000 pages): one copies a page that
        # several batches touched back into the file once.
        self.connection.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {LOG} ("
            " usecase TEXT NOT NULL, kind TEXT NOT NULL, hashes BLOB NOT NULL,"
            " event_ids TEXT NOT NULL)"
        )
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        _adopt_keyed_marks(self.connection)
        # The marks read so far, and the last rowid read.
        self.marks: defaultdict[tuple[str, str], Marks] = defaultdict(Marks)
        self.read_to = 0
        self.fresh: tuple[tuple[Any, ...], dict[str, int]] = ((), {})  # _new's last answer
        self._catch_up()

    def unseen(self, usecase: str, kind: str, event_ids: set[str]) -> set[str]:
        self._catch_up()
        return set(self._new((usecase, kind), list(event_ids))[0])

    def add(
        self, usecase: str, kind: str, event_ids: Iterable[str], states: Sequence[tuple[str, str]]
    ) -> None:
        # Marks already in the log are not appended again.
        new, hashes = self._new((usecase, kind), list(dict.fromkeys(event_ids)))
        rows = [(usecase, kind, encode_ids(new).decode(), hashes.tobytes())] if new else []
        with self.connection:
            self.connection.executemany(LOG_INSERT, rows)
            self.connection.executemany(STATE_UPSERT.format(table="state", mark="?"), states)
            # This transaction holds the write lock: its row is the log's last, and
            # those before it since the last look are other replicas'.
            (top,) = self.connection.execute(f"SELECT max(rowid) FROM {LOG}").fetchone()
            last = top or 0
            since = f"{LOG_SINCE} AND rowid <= ?"
            others = self.connection.execute(since, [self.read_to, last - len(rows)]).fetchall()
        # Committed: now the memory may hold them.
        own = [(last, usecase, kind, rows[0][3])] if rows else []
        self._learn(others + own, fresh=not others)

    def count(self, usecase: str, kind: str) -> int:
        self._catch_up()
        return self.marks[(usecase, kind)].count

    def _catch_up(self) -> None:
        """Read the marks appended to the log since the last look (other replicas')."""
        self._learn(read_rows(self.connection, f"{LOG_SINCE} ORDER BY rowid", [self.read_to]))

    def _learn(self, log_rows: Sequence[tuple[Any, ...]], *, fresh: bool = False) -> None:
        """Hold the marks of these rows of the log, counting the ids not held before
        (``fresh``: none are, and no two are one)."""
        by_key: defaultdict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        for rowid, usecase, kind, hashes in log_rows:
            by_key[(usecase, kind)].append((rowid, hashes))
        for key, batches in by_key.items():
            marks = self.marks[key]
            arrays = [np.frombuffer(hashes, "<u8") for _, hashes in batches]
            hashes = np.concatenate(arrays)
            order = np.argsort(hashes, kind="stable")
            hashes = hashes[order]
            rows = np.repeat([rowid for rowid, _ in batches], [len(a) for a in arrays])[order]
            marks.count += len(hashes)
            hit, known_rows = marks.rows_of(hashes) if not fresh else (hashes < 0, NO_ROWS)
            twice = hashes[1:][hashes[1:] == hashes[:-1]] if not fresh else NO_HASHES
            if hit.any() or len(twice):  # a repeat or a collision: count the texts
                values = set(hashes[hit].tolist()) | set(twice.tolist())
                again = np.isin(hashes, np.array(sorted(values), "<u8"))
                before = self._ids_with(known_rows, values)
                marks.count -= int(again.sum()) - len(self._ids_with(rows[again], values) - before)
            marks.add(hashes, rows)
        if log_rows:
            self.read_to = log_rows[-1][0]

    def _ids_with(self, rows: np.ndarray, values: set[int]) -> set[str]:
        """The ids in these rows of the log whose hashes are among ``values``."""
        found: set[str] = set()
        rowids = sorted(set(rows.tolist()))  # (np.unique would import numpy.ma: 40 ms)
        for start in range(0, len(rowids), CHUNK):
            chunk = rowids[start : start + CHUNK]
            query = f"SELECT event_ids FROM {LOG} WHERE rowid IN ({','.join('?' * len(chunk))})"
            for (text,) in read_rows(self.connection, query, chunk):
                ids = decode_ids(text)
                found.update(
                    i for i, h in zip(ids, hash_ids(ids).tolist(), strict=True) if h in values
                )
        return found

    def _new(self, key: tuple[str, str], event_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """Those of ``event_ids`` not marked (an exact check where a hash hits), and
        their hashes. An ``add`` of ids its ``unseen`` found new, with no mark learned
        since, reuses that answer."""
        if self.fresh[0] == (key, self.read_to) and all(map(self.fresh[1].__contains__, event_ids)):
            return event_ids, np.fromiter(map(self.fresh[1].get, event_ids), "<u8", len(event_ids))
        hashes = hash_ids(event_ids)
        order = np.argsort(hashes)
        hit = np.empty(len(hashes), bool)
        hit[order], rows = self.marks[key].rows_of(hashes[order])
        if hit.any():
            marked = self._ids_with(rows, set(hashes[hit].tolist()))
            hit[hit] = [event_ids[i] in marked for i in np.flatnonzero(hit).tolist()]
        new = list(compress(event_ids, (~hit).tolist()))
        self.fresh = (key, self.read_to), dict(zip(new, hashes[~hit].tolist(), strict=True))
        return new, hashes[~hit]


class Marks:
    """One (use case, kind)'s marks in memory: the ids' hashes, sorted, each with the rowid
    of the log's row that holds the id. The recent ones are in a smaller pair of arrays,
    merged into the main pair from time to time."""

    def __init__(self) -> None:
        self.runs = [(NO_HASHES, NO_ROWS), (NO_HASHES, NO_ROWS)]  # main, recent
        self.count = 0  # distinct ids

    def rows_of(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``hashes`` (sorted: a search then follows the last one's path through
        memory) a mark has, and the rows of the marks that have them."""
        hit, rows = np.zeros(len(hashes), bool), [NO_ROWS]
        for known, known_rows in self.runs:
            if not len(known):
                continue
            at = np.searchsorted(known, hashes)
            found = known[np.minimum(at, len(known) - 1)] == hashes
            if found.any():
                hit |= found
                ends = np.searchsorted(known, hashes[found], "right")
                rows += [
                    known_rows[a:b] for a, b in zip(at[found].tolist(), ends.tolist(), strict=True)
                ]
        return hit, np.concatenate(rows)

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        """Hold these marks (``hashes`` sorted)."""
        self.runs[1] = _merged(self.runs[1], hashes, rows)
        (main, _), (recent, recent_rows) = self.runs
        if len(recent) >= max(RECENT_MARKS, len(main) // 16):
            self.runs = [_merged(self.runs[0], recent, recent_rows), (NO_HASHES, NO_ROWS)]


def _merged(
    run: tuple[np.ndarray, np.ndarray], hashes: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A sorted run of marks with these (``hashes`` sorted) among them."""
    if not len(run[0]):
        return hashes, rows
    at = np.searchsorted(run[0], hashes)
    return np.insert(run[0], at, hashes), np.insert(run[1], at, rows)


def _adopt_keyed_marks(connection: sqlite3.Connection) -> None:
    """Move the marks of a file from before the log (table ``seen``, keyed by id) to the
    log, once: replicas opening it together wait for the write lock and look again."""
    keyed = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='seen'"
    if connection.execute(keyed).fetchone() is None:
        return
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        if connection.execute(keyed).fetchone() is not None:
            keyed_marks = connection.execute(
                "SELECT usecase, kind, event_id FROM seen ORDER BY usecase, kind"
            ).fetchall()
            for (usecase, kind), group in groupby(keyed_marks, key=itemgetter(0, 1)):
                ids = [event_id for _, _, event_id in group]
                connection.executemany(
                    LOG_INSERT,
                    [
                        _log_row(usecase, kind, ids[start : start + LOG_ROW_IDS])
                        for start in range(0, len(ids), LOG_ROW_IDS)
                    ],
                )
            connection.execute("DROP TABLE seen")


def _log_row(usecase: str, kind: str, event_ids: Sequence[str]) -> tuple[str, str, str, bytes]:
    return usecase, kind, encode_ids(event_ids).decode(), hash_ids(event_ids).tobytes()
