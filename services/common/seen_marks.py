"""The SQLite de-dup record's log (:mod:`services.common.seen`), and its marks in
memory: by (use case, kind), the 64-bit hashes of the ids, sorted in numpy arrays, each
with the rowid of the log's row that holds its id: 16 bytes a mark (twice that for a
moment while the main arrays take in the recent ones). A hash that hits says only
"maybe": the record checks the id's text against those rows.

>>> marks = Marks()
>>> hashes = hash_ids(["a", "b"])
>>> order = np.argsort(hashes)
>>> marks.add(hashes[order], np.array([7, 7])[order])
>>> hit, rows = marks.rows_of(np.sort(hash_ids(["b", "c"])))
>>> int(hit.sum()), rows.tolist()
(1, [7])
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter

import mmh3
import msgspec
import numpy as np

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
encode_ids = msgspec.json.Encoder().encode
decode_ids = msgspec.json.Decoder(list[str]).decode


def hash_ids(event_ids: Sequence[str]) -> np.ndarray:
    """The ids' 64-bit hashes, in order (the first half of MurmurHash3's x64 128 bits)."""
    digests = b"".join(map(mmh3.mmh3_x64_128_digest, map(str.encode, event_ids)))
    return np.frombuffer(digests, "<u8")[::2].copy()


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


def adopt_older_marks(connection: sqlite3.Connection) -> None:
    """Bring a file from before this form of the log to it."""
    _adopt_unhashed_rows(connection)
    _adopt_keyed_marks(connection)


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


def _adopt_unhashed_rows(connection: sqlite3.Connection) -> None:
    """Give the rows of a log from before the hashes (no column ``hashes``) theirs, once."""
    hashed = f"SELECT 1 FROM pragma_table_info('{LOG}') WHERE name = 'hashes'"
    if connection.execute(hashed).fetchone() is not None:
        return
    after = f"SELECT rowid, event_ids FROM {LOG} WHERE rowid > ? ORDER BY rowid LIMIT 100"
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        if connection.execute(hashed).fetchone() is None:
            connection.execute(f"ALTER TABLE {LOG} ADD COLUMN hashes BLOB")
            last = 0  # a hundred rows at a time: a large log's text is never all in memory
            while rows := connection.execute(after, [last]).fetchall():
                connection.executemany(
                    f"UPDATE {LOG} SET hashes = ? WHERE rowid = ?",
                    [(hash_ids(decode_ids(ids)).tobytes(), rowid) for rowid, ids in rows],
                )
                last = rows[-1][0]


def _log_row(usecase: str, kind: str, event_ids: Sequence[str]) -> tuple[str, str, str, bytes]:
    return usecase, kind, encode_ids(event_ids).decode(), hash_ids(event_ids).tobytes()
