"""The embedded profile's Feast online store: SQLite, one row per entity.

Feast's own SQLite store keeps one row per feature per entity (44 rows and
44 ``INSERT``\\ s for one credit row, each value a serialized proto). This store
keeps one row per entity of a view, all of its features in one JSON object::

    CREATE TABLE "<project>_<view>_rows" (
        entity_key TEXT PRIMARY KEY,   -- the entity's join value (see entity_text)
        event_ts REAL NOT NULL,        -- seconds since the epoch, UTC
        created_ts REAL,
        features TEXT NOT NULL)        -- {"<feature>": value, ...}

It is a Feast online store (``online_store: type:
services.common.onlinestore.SqliteRowsOnlineStore``): Feast's
``get_online_features``, ``push`` and ``materialize`` go through
``online_write_batch`` and ``online_read`` as with any store. The features
service writes a whole micro-batch with :func:`write_rows`, straight from its
rows, in one transaction, without Feast's per-value proto conversion;
:func:`read_entities` and :func:`read_rows` read rows back as plain values.
Like Feast's SQLite store, the last write of an entity wins whatever its
timestamp.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydantic_core
from feast import Entity, FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from msgspec import Struct
from msgspec.json import Encoder
from pydantic import StrictStr

BUSY_TIMEOUT_S = 30.0
# The feature of a row that is the event's own id (featurestore.EVENT_ID).
EVENT_ID = "source_event_id"
# The file's page: a credit row is about 800 bytes, five to a 4 KiB page (SQLite's
# default), where a micro-batch's upsert of 1,300 of 2,000 entities cost 4.1 us a row;
# 1.8 to 2.2 us with 16 KiB pages (/tmp/ingest-tools/online_layout.py). Only a new file
# takes it: SQLite keeps an existing file's page size.
PAGE_BYTES = 16_384
# Ids a query asks about at once (SQLite allows 32,766 parameters).
CHUNK = 500
# The proto field of each scalar Feast type's values (other types: Feast's converter).
SCALAR_FIELDS = {
    "DOUBLE": "double_val",
    "FLOAT": "float_val",
    "INT64": "int64_val",
    "INT32": "int32_val",
    "STRING": "string_val",
    "BOOL": "bool_val",
}


class SqliteRowsOnlineStoreConfig(FeastConfigBaseModel):
    """Where the one-row-per-entity SQLite file is (relative paths: under the repo path)."""

    type: Literal["services.common.onlinestore.SqliteRowsOnlineStore"] = (
        "services.common.onlinestore.SqliteRowsOnlineStore"
    )
    path: StrictStr = "online_rows.db"


def database_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    if config.repo_path and not path.is_absolute():
        path = Path(config.repo_path) / path
    return path


def table_name(project: str, view: str) -> str:
    """The SQLite table of one feature view."""
    return f"{project}_{view}_rows"


def entity_text(entity_key: EntityKeyProto, serialization_version: int = 3) -> str:
    """An entity's key in the table: its join value when there is one string join key
    (``entity_id``), else Feast's serialized key in hex.

    >>> key = EntityKeyProto(join_keys=["entity_id"], entity_values=[ValueProto(string_val="c7")])
    >>> entity_text(key)
    'c7'
    """
    values = entity_key.entity_values
    if len(values) == 1 and values[0].WhichOneof("val") == "string_val":
        return str(values[0].string_val)
    return serialize_entity_key(
        entity_key, entity_key_serialization_version=serialization_version
    ).hex()


_connections: dict[str, sqlite3.Connection] = {}
_lock = threading.Lock()


def connect(path: Path) -> sqlite3.Connection:
    """One connection per file and process, shared by the threads (writes take ``_lock``)."""
    key = str(path)
    with _lock:
        connection = _connections.get(key)
        if connection is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(key, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a new file's; else kept
            connection.execute("PRAGMA journal_mode=WAL")  # readers beside the one writer
            _connections[key] = connection
        return connection


def disconnect(path: Path) -> None:
    with _lock:
        connection = _connections.pop(str(path), None)
    if connection is not None:
        connection.close()


def create_table(connection: sqlite3.Connection, table: str) -> None:
    connection.execute(
        f'CREATE TABLE IF NOT EXISTS "{table}" (entity_key TEXT PRIMARY KEY,'
        " event_ts REAL NOT NULL, created_ts REAL, features TEXT NOT NULL) WITHOUT ROWID"
    )


def utc_seconds(moment: datetime) -> float:
    """Seconds since the epoch; a naive time is taken as UTC (as Feast does)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else utc_seconds(moment)


def _upsert(connection: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    with _lock, connection:
        create_table(connection, table)
        connection.executemany(f'INSERT OR REPLACE INTO "{table}" VALUES (?, ?, ?, ?)', rows)


def _encoder() -> Callable[[Any], str]:
    """Compact JSON text of Feast's values: pydantic-core's encoder (about 3x the
    standard library's for a 44-float row)."""
    to_json = pydantic_core.to_json
    return lambda value: to_json(value).decode()


# A feature row's features (text, numbers, booleans) as compact JSON: msgspec's encoder,
# 3.0 us for a 44-float row against pydantic-core's 4.6, the same text (5,000 of 5,000
# workload rows byte-equal).
_encode_row = Encoder().encode


def write_rows(config: RepoConfig, view: str, names: Sequence[str], rows: Sequence[Any]) -> None:
    """Each entity's last row of ``rows`` (feature rows): the features ``names``
    (``source_event_id`` is the row's own), straight from the rows, no protos. One
    transaction."""
    last = list({row.entity_id: row for row in rows}.values())
    wanted = [name for name in names if name != EVENT_ID]
    created = datetime.now(UTC).timestamp()
    encoded = []
    for row in last:
        features = row.features
        if isinstance(features, dict) and len(features) != len(wanted):  # the view's only
            features = {name: features[name] for name in wanted}
        encoded.append(
            (
                row.entity_id,
                utc_seconds(row.event_timestamp),
                created,
                row_text(row.source_event_id, features),
            )
        )
    _upsert(connect(database_path(config)), table_name(config.project, view), encoded)


def row_text(event_id: str, features: dict[str, Any] | Struct) -> str:
    """A row's stored JSON: ``{"source_event_id": ..., **features}``, the two encoded
    apart and joined (1.2 us a credit row against 2.3 for the merged dict), the same text.
    ``features`` is a dict or a struct of the view's features (which msgspec writes as
    the object of its names, in the view's order).

    >>> row_text("e1", {"x": 1.5, "c": True}), row_text("e1", {})
    ('{"source_event_id":"e1","x":1.5,"c":true}', '{"source_event_id":"e1"}')
    """
    if isinstance(features, dict) and (not features or EVENT_ID in features):
        return _encode_row({EVENT_ID: event_id, **features}).decode()
    body = _encode_row(features)
    if body == b"{}":  # a struct of no features
        return (_ROW_START + _encode_row(event_id) + b"}").decode()
    return (_ROW_START + _encode_row(event_id) + b"," + body[1:]).decode()


_ROW_START = b'{"' + EVENT_ID.encode() + b'":'


def read_entities(
    connection: sqlite3.Connection, table: str, entity_ids: Sequence[str]
) -> dict[str, tuple[float, dict[str, Any]]]:
    """``{entity id: (event seconds, features)}`` of the entities that have a row.

    The direct reader of this layout (what inference and the B4 baseline read)."""
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for start in range(0, len(entity_ids), CHUNK):
        chunk = list(entity_ids[start : start + CHUNK])
        marks = ",".join("?" * len(chunk))
        query = (
            f'SELECT entity_key, event_ts, features FROM "{table}" WHERE entity_key IN ({marks})'
        )
        for entity, moment, features in connection.execute(query, chunk):
            found[entity] = (moment, pydantic_core.from_json(features))
    return found


def _read_or_none(
    config: RepoConfig, view: str, entity_ids: Sequence[str]
) -> dict[str, tuple[float, dict[str, Any]]]:
    """:func:`read_entities` of a view's table; nothing before its first write."""
    connection = connect(database_path(config))
    try:
        return read_entities(connection, table_name(config.project, view), entity_ids)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return {}


def read_rows(
    config: RepoConfig, view: str, entity_ids: Sequence[str], names: Sequence[str]
) -> list[dict[str, Any] | None]:
    """Each entity's features ``names`` as plain values, or None when it has no row: a
    direct reader for the inference service (no Feast protos on the way)."""
    found = _read_or_none(config, view, entity_ids)
    rows: list[dict[str, Any] | None] = []
    for entity in entity_ids:
        row = found.get(entity)
        rows.append(None if row is None else {name: row[1].get(name) for name in names})
    return rows


def _proto_maker(view: FeatureView) -> Callable[[str, Any], ValueProto]:
    kinds = {field.name: field.dtype.to_value_type() for field in view.features}

    def make(name: str, value: Any) -> ValueProto:
        if value is None:
            return ValueProto()
        kind = kinds.get(name)
        scalar = SCALAR_FIELDS.get(kind.name) if kind is not None else None
        proto = ValueProto()
        if scalar == "double_val" or scalar == "float_val":
            setattr(proto, scalar, float(value))
            return proto
        if scalar is not None:
            setattr(proto, scalar, value)
            return proto
        return python_values_to_proto_values([value], kind)[0] if kind else ValueProto()

    return make


class SqliteRowsOnlineStore(OnlineStore):
    """Feast's online store interface over the one-row-per-entity table."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        version = config.entity_key_serialization_version
        dumps = _encoder()
        rows = [
            (
                entity_text(key, version),
                _seconds(moment),
                _seconds(created),
                dumps({n: feast_value_type_to_python_type(v) for n, v in values.items()}),
            )
            for key, values, moment, created in data
        ]
        connection = connect(database_path(config))
        _upsert(connection, table_name(config.project, table.name), rows)
        if progress:
            progress(len(rows))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        version = config.entity_key_serialization_version
        ids = [entity_text(key, version) for key in entity_keys]
        found = _read_or_none(config, table.name, ids)
        make = _proto_maker(table)
        wanted = set(requested_features) if requested_features else None
        answers: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for entity in ids:
            row = found.get(entity)
            if row is None:
                answers.append((None, None))
                continue
            moment, features = row
            values = {
                name: make(name, value)
                for name, value in features.items()
                if wanted is None or name in wanted
            }
            answers.append((datetime.fromtimestamp(moment, UTC), values))
        return answers

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        connection = connect(database_path(config))
        with _lock, connection:
            for view in tables_to_keep:
                create_table(connection, table_name(config.project, view.name))
            for view in tables_to_delete:
                connection.execute(
                    f'DROP TABLE IF EXISTS "{table_name(config.project, view.name)}"'
                )

    def teardown(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entities: Sequence[Entity],
    ) -> None:
        connection = connect(database_path(config))
        with _lock, connection:
            for view in tables:
                connection.execute(
                    f'DROP TABLE IF EXISTS "{table_name(config.project, view.name)}"'
                )
