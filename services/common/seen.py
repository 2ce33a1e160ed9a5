"""Which events a service has already handled: its idempotency record.

A SQLite database under the service's home (ingestion and the features
service each keep one). Ids are recorded only after the side effects they
stand for are durable, so a crash between the two leaves at worst a repeat
of those side effects on redelivery (which the next stage absorbs by event
id), never a loss. A service's small running state (ingestion's imputation
statistics) is recorded in the same transaction, so the two always agree.

Replicas of a service on one machine share one home, hence one file: WAL
lets readers run beside the one writer, and a writer that finds the file
locked waits (``BUSY_TIMEOUT_S``) instead of failing with "database is
locked".

Replicas on different machines each have their own file, and the marks do
not move with a partition. What that costs when a partition moves to a
replica on another machine (its holder SIGKILLed, or a rebalance):

- ingestion: the events after the partition's last commit (at most one
  batch, ``DRIFTLINE_BATCH_EVENTS``) are processed again and their rows sent
  to ``<uc>.features`` a second time, with the same row id; the imputation
  statistics do not learn them twice (they move with the partition,
  :mod:`services.ingestion.statistics`). An event id that a source sends
  again later, after the move, is not known as a duplicate there.
- features: a row redelivered to the new replica (at most one batch after
  the last commit) is written again: the online store's write is an upsert
  of the same values, and the offline store gets the row in a second Parquet
  part, which the store's reader folds by event id (``featurestore``), so
  training sets and the online store hold it once; the Parquet files hold it
  twice.

So nothing is lost and nothing is counted twice downstream, but the
de-duplication of a source's repeats holds within one machine only. A home
any replica can read (a compacted changelog topic co-partitioned with the
input, or the production profile's PostgreSQL) is not provided here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0


class SeenIds:
    """A durable set of (use case, kind, event id), with named state beside it.

    >>> seen = SeenIds(":memory:")
    >>> sorted(seen.unseen("credit", "features", ["a", "b"]))
    ['a', 'b']
    >>> seen.add("credit", "features", ["a"], state={"credit": {"rows": 1}})
    >>> seen.unseen("credit", "features", ["a", "b"])
    {'b'}
    >>> seen.state("credit"), seen.state("other")
    ({'rows': 1}, None)
    """

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One caller at a time, from whichever worker thread runs its flush.
        self.connection = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False
        )
        self.connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS seen ("
            " usecase TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL,"
            " PRIMARY KEY (usecase, kind, event_id)) WITHOUT ROWID"
        )
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
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

    def add(
        self,
        usecase: str,
        kind: str,
        event_ids: Iterable[str],
        *,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Record ``event_ids`` (and replace the named ``state`` values) in one transaction."""
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                [(usecase, kind, event_id) for event_id in event_ids],
            )
            if state:
                self.connection.executemany(
                    "INSERT OR REPLACE INTO state VALUES (?, ?)",
                    [(name, json.dumps(value)) for name, value in state.items()],
                )

    def state(self, name: str) -> Any | None:
        """The state last saved under ``name``, or None."""
        row = self.connection.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def states(self, prefix: str) -> list[tuple[str, Any]]:
        """Every (name, state) whose name starts with ``prefix``, by name.

        >>> seen = SeenIds(":memory:")
        >>> seen.add("uc", "raw", [], state={"prep:uc/1": {"rows": 2}, "prep:other/0": {}})
        >>> seen.states("prep:uc/")
        [('prep:uc/1', {'rows': 2})]
        """
        query = "SELECT name, value FROM state WHERE substr(name, 1, ?) = ? ORDER BY name"
        rows = self.connection.execute(query, (len(prefix), prefix))
        return [(name, json.loads(value)) for name, value in rows]

    def count(self, usecase: str, kind: str) -> int:
        query = "SELECT COUNT(*) FROM seen WHERE usecase=? AND kind=?"
        (total,) = self.connection.execute(query, (usecase, kind)).fetchone()
        return int(total)

    def close(self) -> None:
        self.connection.close()
