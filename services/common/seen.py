"""Which events a service has already handled: its idempotency record.

Ids are recorded only after the side effects they stand for are durable, so
a crash between the two leaves at worst a repeat of those side effects on
redelivery (which the next stage absorbs by event id), never a loss. A
service's small running state (ingestion's imputation statistics) is
recorded in the same transaction, so the two always agree.

Where the record lives (:func:`open_seen_ids`, ``DRIFTLINE_STATE_URL``):

- **unset** (the default, ``driftline up``): a SQLite file,
  ``DRIFTLINE_HOME/<service>/seen.db``. Replicas of a service on one machine
  share one home, hence one file: WAL lets readers run beside the one
  writer, and a writer that finds the file locked waits (``BUSY_TIMEOUT_S``)
  instead of failing with "database is locked". The marks are a log
  (table ``mark_batches``): each ``add`` appends one row at the end of the
  file, its ids as a JSON array and their 64-bit hashes as a blob. Each record
  holds, by (use case, kind), the hashes sorted in numpy arrays, each with the
  rowid of its row (16 bytes a mark), and reads the rows other replicas
  appended since its last look (by rowid) before it answers. A hash that hits
  is checked against the id text of its rows, so a collision never makes a new
  event a duplicate. Keyed by id, a batch of random ids dirtied a page of the
  B-tree each, so a mark cost more as the record grew (``unseen`` and ``add``:
  8 us CPU an id at 20,000 ids, 21 at 200,000); appended, 1.2 to 1.9 us at
  both (0.6 to 1.1 when the marks were Python sets, at 120 bytes a mark).
  Opening reads the hashes' blobs only (0.2 s CPU for 1,000,000 marks, against
  1.1 s for the sets). Files from before (a keyed table ``seen``, or a log
  without hashes) are brought to this form when first opened.
- **a PostgreSQL URL** (the production profile, infra/production.secrets.env):
  tables ``<group>_seen`` and ``<group>_state`` in that database, one pair
  per consumer group (``<group_prefix>-<service>``, so two stacks on one
  database keep apart). Every replica on every machine reads and writes the
  same marks, so the record follows a partition wherever it moves.

What a partition that moves (its holder SIGKILLed, or a rebalance) costs:

- ingestion: the events after the partition's last commit (at most one
  batch, ``DRIFTLINE_BATCH_EVENTS``) are processed again; those recorded as
  seen before the kill are skipped as duplicates where the new holder reads
  the same record, and sent to ``<uc>.features`` a second time, with the same
  row id, where it does not (a SQLite file on another machine). The
  imputation statistics learn none of them twice either way (they move with
  the partition, :mod:`services.ingestion.statistics`). An event id that a
  source sends again later is known as a duplicate by every replica that
  reads the same record: all of them with PostgreSQL, those on the same
  machine with SQLite.
- features: a row redelivered to the new holder is skipped where it reads
  the same record; elsewhere it is written again: the online store's write is
  an upsert of the same values, and the offline store gets the row in a
  second Parquet part, which the store's reader folds by event id
  (``featurestore``), so training sets and the online store hold it once.

So nothing is lost and nothing is counted twice downstream in either profile;
the de-duplication of a source's repeats holds across machines with
PostgreSQL, within one machine with SQLite.

A PostgreSQL connection that breaks (the server restarted) fails the next
call: the service exits and is restarted (compose, Kubernetes), and the batch
is redelivered; no reconnect is attempted here.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, SecretStr, field_validator

from services.common.errors import InvalidInput
from services.common.seen_marks import (
    LOG,
    LOG_INSERT,
    LOG_SINCE,
    NO_HASHES,
    NO_ROWS,
    Marks,
    adopt_older_marks,
    decode_ids,
    encode_ids,
    hash_ids,
)
from services.common.settings import CommonSettings

BUSY_TIMEOUT_S = 30.0
POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg2://", "postgres://")
# Ids a query asks about at once (SQLite allows 32,766 parameters).
CHUNK = 500
# Pages of write-ahead log between checkpoints (4 KiB each: a log of up to 40 MB).
CHECKPOINT_PAGES = 10_000
# PostgreSQL truncates identifiers at 63 bytes.
LONGEST_TABLE = 63


class StateSettings(CommonSettings):
    """Where the de-dup marks (and ingestion's statistics record) live."""

    state_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the de-dup record, which every replica on every machine "
        "reads; unset: a SQLite file, DRIFTLINE_HOME/<service>/seen.db",
    )

    @field_validator("state_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError(f"DRIFTLINE_STATE_URL must start with one of {POSTGRES_SCHEMES}")
        return value


@dataclass(frozen=True)
class Backend:
    """What differs between the two databases: the rest of :class:`SeenIds` is plain SQL."""

    connection: Any  # a DB-API 2 connection: sqlite3's or psycopg2's
    mark: str  # its parameter placeholder
    seen: str  # table names
    state: str
    insert_many: Callable[[Any, str, Sequence[tuple[Any, ...]]], None]
    log: bool = False  # marks appended without a key and held in memory (SQLite)


def sqlite_backend(path: Path | str) -> Backend:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One caller at a time, from whichever worker thread runs its flush.
    connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    connection.execute("PRAGMA journal_mode=WAL")
    # Fewer checkpoints than SQLite's default (1,000 pages): one copies a page that
    # several batches touched back into the file once.
    connection.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {LOG} ("
        " usecase TEXT NOT NULL, kind TEXT NOT NULL, hashes BLOB, event_ids TEXT NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    adopt_older_marks(connection)

    def insert_many(cursor: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cursor.executemany(sql, rows)

    return Backend(connection, "?", LOG, "state", insert_many, log=True)


def postgres_backend(url: str, prefix: str) -> Backend:
    """Tables ``<prefix>_seen`` and ``<prefix>_state`` in the database at ``url``."""
    import psycopg2
    from psycopg2.extras import execute_batch

    name = re.sub(r"[^a-z0-9_]", "_", prefix.lower())
    if not name or len(name) + len("_state") > LONGEST_TABLE:
        raise InvalidInput(f"table prefix {prefix!r}: 1 to {LONGEST_TABLE - 6} characters")
    seen, state = f"{name}_seen", f"{name}_state"
    dsn = "postgresql://" + url.split("://", 1)[1]  # libpq knows no +driver
    connection = psycopg2.connect(dsn, connect_timeout=10)
    with connection, connection.cursor() as cursor:
        # Replicas start together: without the lock, two CREATE TABLE IF NOT EXISTS
        # of one table can both go ahead, and one fails on PostgreSQL's catalog.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (seen,))
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {seen} ("
            " usecase TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL,"
            " PRIMARY KEY (usecase, kind, event_id))"
        )
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {state} (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def insert_many(cursor: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        execute_batch(cursor, sql, rows, page_size=CHUNK)  # one round trip a page

    return Backend(connection, "%s", seen, state, insert_many)


def open_seen_ids(
    settings: CommonSettings, service: str, state_url: SecretStr | None = None
) -> SeenIds:
    """``service``'s record: in PostgreSQL at ``state_url``, else its SQLite file."""
    if state_url is None:
        return SeenIds(settings.service_home(service) / "seen.db")
    return SeenIds(state_url.get_secret_value(), tables=settings.consumer_group(service))


class SeenIds:
    """A durable set of (use case, kind, event id), with named state beside it.

    ``where`` is a SQLite file (or ``":memory:"``) or a PostgreSQL URL, whose
    tables are named after ``tables`` (a consumer group).

    >>> seen = SeenIds(":memory:")
    >>> sorted(seen.unseen("credit", "features", ["a", "b"]))
    ['a', 'b']
    >>> seen.add("credit", "features", ["a"], state={"credit": {"rows": 1}})
    >>> seen.unseen("credit", "features", ["a", "b"])
    {'b'}
    >>> seen.state("credit"), seen.state("other")
    ({'rows': 1}, None)
    """

    def __init__(self, where: Path | str, *, tables: str = "") -> None:
        if str(where).startswith(POSTGRES_SCHEMES):
            self.backend = postgres_backend(str(where), tables)
        else:
            self.backend = sqlite_backend(where)
        self.connection = self.backend.connection
        # The log's marks (SQLite): those read so far, and the last rowid read.
        self.marks: defaultdict[tuple[str, str], Marks] = defaultdict(Marks)
        self.read_to = 0
        self.fresh: tuple[tuple[Any, ...], dict[str, int]] = ((), {})  # _new's last answer
        if self.backend.log:
            self._catch_up()

    def _catch_up(self) -> None:
        """Read the marks appended to the log since the last look (other replicas')."""
        self._learn(self._rows(f"{LOG_SINCE} ORDER BY rowid", [self.read_to]))

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
            for (text,) in self._rows(query, chunk):
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

    def _rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows one query returns; its (read) transaction ends with it."""
        with self.connection:
            cursor = self.connection.cursor()
            try:
                cursor.execute(sql, parameters)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def unseen(self, usecase: str, kind: str, event_ids: Iterable[str]) -> set[str]:
        wanted = set(event_ids)
        if not wanted:
            return wanted
        if self.backend.log:
            self._catch_up()
            return set(self._new((usecase, kind), list(wanted))[0])
        found: set[str] = set()
        ids, mark = list(wanted), self.backend.mark
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join([mark] * len(chunk))
            query = (
                f"SELECT event_id FROM {self.backend.seen}"
                f" WHERE usecase={mark} AND kind={mark} AND event_id IN ({marks})"
            )
            found.update(row[0] for row in self._rows(query, [usecase, kind, *chunk]))
        return wanted - found

    def add(
        self,
        usecase: str,
        kind: str,
        event_ids: Iterable[str],
        *,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Record ``event_ids`` (and replace the named ``state`` values) in one transaction."""
        backend, mark = self.backend, self.backend.mark
        if backend.log:  # marks already in the log are not appended again
            new, hashes = self._new((usecase, kind), list(dict.fromkeys(event_ids)))
            insert = LOG_INSERT
            rows: list[tuple[Any, ...]] = []
            if new:
                rows = [(usecase, kind, encode_ids(new).decode(), hashes.tobytes())]
        else:
            # In key order: a batch of random ids in order touches the key's B-tree pages
            # in turn (10.6 -> 7.5 us CPU an id, SQLite, 2,000-id batches, when it was keyed).
            new = sorted(set(event_ids))
            insert = (
                f"INSERT INTO {backend.seen} VALUES ({mark}, {mark}, {mark}) ON CONFLICT DO NOTHING"
            )
            rows = [(usecase, kind, event_id) for event_id in new]
        others: list[tuple[Any, ...]] = []
        last = self.read_to
        with self.connection:
            cursor = self.connection.cursor()
            try:
                backend.insert_many(cursor, insert, rows)
                if state:
                    backend.insert_many(
                        cursor,
                        f"INSERT INTO {backend.state} VALUES ({mark}, {mark})"
                        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        [(name, json.dumps(value)) for name, value in state.items()],
                    )
                if backend.log:
                    # This transaction holds the write lock: its row is the log's last,
                    # and those before it since the last look are other replicas'.
                    (top,) = cursor.execute(f"SELECT max(rowid) FROM {LOG}").fetchone()
                    last = top or 0
                    cursor.execute(f"{LOG_SINCE} AND rowid <= ?", [self.read_to, last - len(rows)])
                    others = cursor.fetchall()
            finally:
                cursor.close()
        if backend.log:  # committed: now the memory may hold them
            own = [(last, usecase, kind, rows[0][3])] if rows else []
            self._learn(others + own, fresh=not others)

    def state(self, name: str) -> Any | None:
        """The state last saved under ``name``, or None."""
        query = f"SELECT value FROM {self.backend.state} WHERE name={self.backend.mark}"
        rows = self._rows(query, [name])
        return json.loads(rows[0][0]) if rows else None

    def states(self, prefix: str) -> list[tuple[str, Any]]:
        """Every (name, state) whose name starts with ``prefix``, by name (sorted here:
        PostgreSQL's text order depends on the database's collation).

        >>> seen = SeenIds(":memory:")
        >>> seen.add("uc", "raw", [], state={"prep:uc/1": {"rows": 2}, "prep:other/0": {}})
        >>> seen.states("prep:uc/")
        [('prep:uc/1', {'rows': 2})]
        """
        mark = self.backend.mark
        query = (
            f"SELECT name, value FROM {self.backend.state} WHERE substr(name, 1, {mark}) = {mark}"
        )
        rows = sorted(self._rows(query, [len(prefix), prefix]))
        return [(name, json.loads(value)) for name, value in rows]

    def count(self, usecase: str, kind: str) -> int:
        if self.backend.log:
            self._catch_up()
            return self.marks[(usecase, kind)].count
        mark = self.backend.mark
        query = f"SELECT COUNT(*) FROM {self.backend.seen} WHERE usecase={mark} AND kind={mark}"
        ((total,),) = self._rows(query, [usecase, kind])
        return int(total)

    def close(self) -> None:
        self.connection.close()
