"""Which event ids are already in the store: the features service's idempotency record.

A SQLite table under the service's home. Ids are recorded after the store
writes succeed, so a crash between the two leaves at worst a re-write of the
same rows on redelivery (Parquet parts are replaced by name; the online
store keeps the last value), never a loss.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class SeenIds:
    """A durable set of (use case, kind, event id).

    >>> seen = SeenIds(":memory:")
    >>> sorted(seen.unseen("credit", "features", ["a", "b"]))
    ['a', 'b']
    >>> seen.add("credit", "features", ["a"])
    >>> seen.unseen("credit", "features", ["a", "b"])
    {'b'}
    """

    def __init__(self, path: Path | str) -> None:
        self.connection = sqlite3.connect(str(path))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS seen ("
            " usecase TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL,"
            " PRIMARY KEY (usecase, kind, event_id)) WITHOUT ROWID"
        )

    def unseen(self, usecase: str, kind: str, event_ids: Iterable[str]) -> set[str]:
        wanted = set(event_ids)
        if not wanted:
            return wanted
        found: set[str] = set()
        ids = list(wanted)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = (
                f"SELECT event_id FROM seen WHERE usecase=? AND kind=? AND event_id IN ({marks})"
            )
            found.update(row[0] for row in self.connection.execute(query, [usecase, kind, *chunk]))
        return wanted - found

    def add(self, usecase: str, kind: str, event_ids: Iterable[str]) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                [(usecase, kind, event_id) for event_id in event_ids],
            )

    def count(self, usecase: str, kind: str) -> int:
        query = "SELECT COUNT(*) FROM seen WHERE usecase=? AND kind=?"
        (total,) = self.connection.execute(query, (usecase, kind)).fetchone()
        return int(total)

    def close(self) -> None:
        self.connection.close()
