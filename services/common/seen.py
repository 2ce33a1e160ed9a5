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
  1.1 s for the sets). A file from before the log (a keyed table ``seen``)
  is brought to this form when first opened (:class:`SqliteMarks`).
- **a PostgreSQL URL** (the production profile, infra/production.secrets.env):
  tables ``<group>_seen`` and ``<group>_state`` in that database, one pair
  per consumer group (``<group_prefix>-<service>``, so two stacks on one
  database keep apart), asked by SQL (:class:`PostgresMarks`). Every replica
  on every machine reads and writes the same marks, so the record follows a
  partition wherever it moves.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, SecretStr, field_validator

from services.common.seen_marks import PostgresMarks, SqliteMarks, read_rows
from services.common.settings import CommonSettings

POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg2://", "postgres://")


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


class MarkStore(Protocol):
    """Where a record's marks live, and its state table: what differs between
    :class:`SqliteMarks` and :class:`PostgresMarks`. The state is read by
    :class:`SeenIds` in plain SQL; it is written by ``add``, in the marks' transaction."""

    connection: Any  # a DB-API 2 connection: sqlite3's or psycopg2's
    placeholder: str  # its parameter placeholder
    state_table: str

    def unseen(self, usecase: str, kind: str, event_ids: set[str]) -> set[str]:
        """Those of ``event_ids`` (not empty) not marked under (use case, kind)."""
        ...

    def add(
        self, usecase: str, kind: str, event_ids: Iterable[str], states: Sequence[tuple[str, str]]
    ) -> None:
        """Mark ``event_ids`` and write ``states`` (name, JSON text), in one transaction."""
        ...

    def count(self, usecase: str, kind: str) -> int:
        """The distinct ids marked under (use case, kind)."""
        ...


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
        self.store: MarkStore
        if str(where).startswith(POSTGRES_SCHEMES):
            self.store = PostgresMarks(str(where), tables)
        else:
            self.store = SqliteMarks(where)
        self.connection = self.store.connection

    def unseen(self, usecase: str, kind: str, event_ids: Iterable[str]) -> set[str]:
        wanted = set(event_ids)
        return self.store.unseen(usecase, kind, wanted) if wanted else wanted

    def add(
        self,
        usecase: str,
        kind: str,
        event_ids: Iterable[str],
        *,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Record ``event_ids`` (and replace the named ``state`` values) in one transaction."""
        states = [(name, json.dumps(value)) for name, value in (state or {}).items()]
        self.store.add(usecase, kind, event_ids, states)

    def state(self, name: str) -> Any | None:
        """The state last saved under ``name``, or None."""
        store = self.store
        query = f"SELECT value FROM {store.state_table} WHERE name={store.placeholder}"
        rows = read_rows(self.connection, query, [name])
        return json.loads(rows[0][0]) if rows else None

    def states(self, prefix: str) -> list[tuple[str, Any]]:
        """Every (name, state) whose name starts with ``prefix``, by name (sorted here:
        PostgreSQL's text order depends on the database's collation).

        >>> seen = SeenIds(":memory:")
        >>> seen.add("uc", "raw", [], state={"prep:uc/1": {"rows": 2}, "prep:other/0": {}})
        >>> seen.states("prep:uc/")
        [('prep:uc/1', {'rows': 2})]
        """
        table, mark = self.store.state_table, self.store.placeholder
        query = f"SELECT name, value FROM {table} WHERE substr(name, 1, {mark}) = {mark}"
        rows = sorted(read_rows(self.connection, query, [len(prefix), prefix]))
        return [(name, json.loads(value)) for name, value in rows]

    def count(self, usecase: str, kind: str) -> int:
        return self.store.count(usecase, kind)

    def close(self) -> None:
        self.connection.close()
