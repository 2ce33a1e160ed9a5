"""The Feast feature store: definitions from the use-case files, writes, reads.

One feature view per use case, keyed by ``entity_id``, fed by a push source
whose batch source is a Parquet dataset (a directory of part files) under
``DRIFTLINE_HOME/feast/offline/<uc>/features``. Labels are kept beside it
(``.../<uc>/labels``) so training sets come from one point-in-time join.

Profiles: ``embedded`` (SQLite online store, file registry) and
``production`` (Redis online store, SQL registry). Import this module only
in services that need Feast: importing feast costs about 6 s and 400 MB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast import (
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RepoConfig,
    ValueType,
)
from feast.data_source import PushMode
from feast.types import Float64, String
from msgspec.structs import astuple
from pydantic import Field as SettingField

from schemas.events import Window
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.dataset import EVENT_ID as EVENT_ID  # the view's event-id column
from services.common.dataset import (
    compact_dataset,
    read_parts,
    reading,
    write_parquet_part,
)
from services.common.offlinestore import ParquetOfflineStoreConfig
from services.common.onlinestore import SqliteRowsOnlineStoreConfig, write_rows
from services.common.serde import DecodedRow
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

PROJECT = "driftline"
ENTITY_KEY = "entity_id"
TIMESTAMP = "event_timestamp"
FEATURE_TTL = timedelta(days=3650)
# The embedded profile's online store: one row per entity (services.common.onlinestore).
ONLINE_FILE = "online_rows.db"


class FeatureStoreSettings(CommonSettings):
    """Where the feature store lives, for the services that use it."""

    feast_profile: Literal["embedded", "production"] = "embedded"
    redis_url: str = SettingField(default="127.0.0.1:6379", description="host:port[,db=N]")
    feast_registry_url: str | None = SettingField(
        default=None, description="SQLAlchemy URL of the SQL registry (production)"
    )


def view_name(usecase: str) -> str:
    return f"{usecase}_features"


def push_source_name(usecase: str) -> str:
    return f"{usecase}_push"


def offline_root(home: Path) -> Path:
    return (home / "feast" / "offline").resolve()


def features_dir(home: Path, usecase: str) -> Path:
    return offline_root(home) / usecase / "features"


def labels_dir(home: Path, usecase: str) -> Path:
    return offline_root(home) / usecase / "labels"


def repo_config(settings: FeatureStoreSettings) -> RepoConfig:
    """Feast's configuration for this stack's profile and home."""
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistryConfig
    from feast.repo_config import RegistryConfig

    directory = (settings.home / "feast").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    online: Any
    registry: Any
    if settings.feast_profile == "production":
        online = RedisOnlineStoreConfig(connection_string=settings.redis_url)
        if settings.feast_registry_url:
            registry = SqlRegistryConfig(
                registry_type="sql", path=settings.feast_registry_url, cache_ttl_seconds=60
            )
        else:
            registry = RegistryConfig(path=str(directory / "registry.db"), cache_ttl_seconds=60)
    else:
        online = SqliteRowsOnlineStoreConfig(path=str(directory / ONLINE_FILE))
        registry = RegistryConfig(path=str(directory / "registry.db"), cache_ttl_seconds=60)
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store=ParquetOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=directory,
    )


def definitions(specs: Iterable[UseCase], home: Path) -> list[Any]:
    """Feast objects for the use cases: an entity, a push source and a feature view each."""
    objects: list[Any] = []
    for spec in specs:
        entity = Entity(
            name=f"{spec.name}_entity",
            join_keys=[ENTITY_KEY],
            value_type=ValueType.STRING,
            description=spec.name,
        )
        batch = FileSource(
            name=f"{spec.name}_offline",
            path=str(features_dir(home, spec.name)),
            timestamp_field=TIMESTAMP,
        )
        push = PushSource(name=push_source_name(spec.name), batch_source=batch)
        schema = [Field(name=ENTITY_KEY, dtype=String), Field(name=EVENT_ID, dtype=String)]
        schema += [Field(name=name, dtype=Float64) for name in spec.feature_names()]
        view = FeatureView(
            name=view_name(spec.name),
            entities=[entity],
            ttl=FEATURE_TTL,
            schema=schema,
            source=push,
            online=True,
            description=spec.description or spec.name,
            tags={"usecase": spec.name, "spec_hash": spec.spec_hash()},
        )
        objects += [entity, batch, push, view]
    return objects


def open_store(
    settings: FeatureStoreSettings, specs: Sequence[UseCase], *, apply: bool = True
) -> FeatureStore:
    """A FeatureStore for this stack; ``apply`` registers the use cases' definitions."""
    store = FeatureStore(config=repo_config(settings))
    if apply:
        for spec in specs:
            features_dir(settings.home, spec.name).mkdir(parents=True, exist_ok=True)
            labels_dir(settings.home, spec.name).mkdir(parents=True, exist_ok=True)
        _apply(store, definitions(specs, settings.home))
    return store


def _apply(store: FeatureStore, objects: list[Any], attempts: int = 5) -> None:
    """``store.apply``, again after a clash: replicas starting together race to create the
    SQL registry's tables and rows (a unique violation); a retry finds them and updates."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(1, attempts + 1):
        try:
            store.apply(objects)
            return
        except DBAPIError as exc:
            if attempt == attempts:
                raise
            logger.warning("feast apply clashed (attempt %d): %s", attempt, exc.orig)
            time.sleep(0.5 * attempt)


def rows_table(spec: UseCase, rows: Sequence[DecodedRow]) -> pa.Table:
    """Feature rows as the pyarrow table the Parquet dataset holds (fixed column order).

    Each row's values in the view's order (:func:`view_values`), a column of them one
    conversion: ints and booleans as floats, other keys left out, a missing one a KeyError
    (1.6 us a credit row of
    structs against 1.8 for pyarrow's read of dicts).

    >>> from schemas.events import FeatureRow
    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({"name": "toy", "task": "classification",
    ...     "label": {"classes": [0, 1]}, "fields": {"x": {"type": "float"}, "n": {"type": "int"}},
    ...     "features": [{"kind": "passthrough", "field": "x"},
    ...                  {"kind": "passthrough", "field": "n"}]})
    >>> row = FeatureRow(usecase="toy", source_event_id="e1", entity_id="u1",
    ...     event_timestamp="2026-01-01T00:00:00Z", features={"n": True, "x": 2, "z": 0.5})
    >>> rows_table(spec, [row]).drop_columns(["event_timestamp"]).to_pylist()
    [{'entity_id': 'u1', 'source_event_id': 'e1', 'x': 2.0, 'n': 1.0}]
    """
    names = spec.feature_names()
    values = [view_values(row, names) for row in rows]
    columns: dict[str, Any] = {
        ENTITY_KEY: pa.array([row.entity_id for row in rows], pa.string()),
        TIMESTAMP: pa.array([row.event_timestamp for row in rows], pa.timestamp("ns", tz="UTC")),
        EVENT_ID: pa.array([row.source_event_id for row in rows], pa.string()),
    }
    by_column = list(zip(*values, strict=True)) if values else [()] * len(names)
    for name, column in zip(names, by_column, strict=True):
        # (pyarrow refuses an int that a float cannot hold: no value is rounded)
        columns[name] = pa.array(column, pa.float64())
    return pa.table(columns)


def view_values(row: DecodedRow, names: Sequence[str]) -> tuple[Any, ...]:
    """A row's features ``names`` in order: a
    :class:`~services.common.serde.ViewRowFields`'s are its view's
    (the view of these names, as the features service decodes them), a dict's are picked
    (a KeyError naming one that is missing)."""
    features = row.features
    if isinstance(features, dict):
        return tuple([features[name] for name in names])
    return astuple(features)


def rows_frame(spec: UseCase, rows: Sequence[DecodedRow]) -> pd.DataFrame:
    """Feature rows as a pandas frame (the columns of :func:`rows_table`)."""
    return rows_table(spec, rows).to_pandas()


def write_features(
    store: FeatureStore,
    home: Path,
    spec: UseCase,
    rows: Sequence[DecodedRow],
    part_name: str,
    *,
    online_last_write_wins: bool = False,
) -> None:
    """Write feature rows to the offline store (a Parquet part) and the online store: the
    embedded one (:mod:`services.common.onlinestore`) directly, each entity's last row;
    another (Redis) by a Feast push, only each entity's last row if ``online_last_write_wins``
    (the store keeps the last row written for an entity whatever its timestamp)."""
    if not rows:
        return
    table = rows_table(spec, rows)
    write_parquet_part(features_dir(home, spec.name), table, part_name)
    if isinstance(store.config.online_store, SqliteRowsOnlineStoreConfig):
        write_rows(store.config, view_name(spec.name), [EVENT_ID, *spec.feature_names()], rows)
    else:
        frame = table.to_pandas()
        online = frame.drop_duplicates(ENTITY_KEY, keep="last") if online_last_write_wins else frame
        store.push(push_source_name(spec.name), online, to=PushMode.ONLINE)
    compact_dataset(features_dir(home, spec.name))


def labels_frame(labels: Sequence[Label]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [label.event_id for label in labels],
            "label": [label.label for label in labels],
            "label_timestamp": pd.to_datetime([label.timestamp for label in labels], utc=True),
        }
    ).astype({"label": "object"})


def write_labels(home: Path, spec: UseCase, labels: Sequence[Label], part_name: str) -> None:
    """Keep ground truth beside the features, for point-in-time training sets."""
    if labels:
        frame = labels_frame(labels)
        frame["label"] = frame["label"].astype(str)
        write_parquet_part(labels_dir(home, spec.name), frame, part_name)
        compact_dataset(labels_dir(home, spec.name))


def online_features(
    store: FeatureStore, spec: UseCase, entity_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The latest online features of each entity (values None where it has none)."""
    references = [f"{view_name(spec.name)}:{name}" for name in [EVENT_ID, *spec.feature_names()]]
    response = store.get_online_features(
        features=references, entity_rows=[{ENTITY_KEY: e} for e in entity_ids]
    ).to_dict()
    return [
        {key: values[index] for key, values in response.items()} for index in range(len(entity_ids))
    ]


def training_frame(
    store: FeatureStore, home: Path, spec: UseCase, window: Window | None = None
) -> pd.DataFrame:
    """A point-in-time correct training set: one row per labeled event in ``window``.

    Each label is joined to its raw event (by ``event_id``) for the entity and
    the event's time; Feast then returns the entity's features as of that
    time, so no feature written after the event can leak in. Columns: the
    feature names, ``label``, ``event_id``, ``entity_id``, ``event_timestamp``,
    ``label_timestamp``. The datasets are held (``reading``) until Feast has read them.
    """
    with reading(labels_dir(home, spec.name), features_dir(home, spec.name)):
        return _point_in_time_join(store, home, spec, window)


def _labelled_events(home: Path, spec: UseCase, window: Window | None) -> pd.DataFrame:
    """Each label in ``window`` beside its event's entity and time (no features yet)."""
    labels = read_parts(labels_dir(home, spec.name))
    events = read_parts(features_dir(home, spec.name), columns=[EVENT_ID, ENTITY_KEY, TIMESTAMP])
    if labels.empty or events.empty:
        return pd.DataFrame()
    labels = labels.drop_duplicates("event_id", keep="last")
    events = events.drop_duplicates(EVENT_ID, keep="last")
    joined = labels.merge(events, left_on="event_id", right_on=EVENT_ID, how="inner")
    if window is not None:
        if window.start is not None:
            joined = joined[joined[TIMESTAMP] >= pd.Timestamp(window.start)]
        if window.end is not None:
            joined = joined[joined["label_timestamp"] <= pd.Timestamp(window.end)]
    return joined


def _point_in_time_join(
    store: FeatureStore, home: Path, spec: UseCase, window: Window | None
) -> pd.DataFrame:
    columns = [*spec.feature_names(), "label", "event_id", ENTITY_KEY, TIMESTAMP, "label_timestamp"]
    joined = _labelled_events(home, spec, window)
    if joined.empty:
        return pd.DataFrame(columns=columns)
    entity_df = joined[[ENTITY_KEY, TIMESTAMP, "event_id", "label", "label_timestamp"]]
    references = [f"{view_name(spec.name)}:{name}" for name in [EVENT_ID, *spec.feature_names()]]
    result = store.get_historical_features(entity_df=entity_df, features=references).to_df()
    # The row as of the event's time must be the event's own row; anything else
    # (two events of one entity at one instant) is dropped rather than mislabeled.
    result = result[result[EVENT_ID] == result["event_id"]]
    result = result.sort_values([TIMESTAMP, "event_id"]).reset_index(drop=True)
    return result[columns]


_STORES: dict[tuple[str, str], FeatureStore] = {}


def training_data(spec: UseCase, window: Window | None) -> pd.DataFrame:
    """The batch trainer's data source: ``training_frame`` on this stack's store.

    The store is configured from ``DRIFTLINE_*`` settings and opened once per
    home; the feature view used is named in ``frame.attrs["feature_views"]``.
    """
    settings = FeatureStoreSettings()
    key = (str(settings.home.resolve()), settings.feast_profile)
    if key not in _STORES:
        _STORES[key] = open_store(settings, [spec])
    frame = training_frame(_STORES[key], settings.home, spec, window)
    frame.attrs["feature_views"] = [view_name(spec.name)]
    return frame


def labelled_rows(spec: UseCase, window: Window | None) -> int:
    """How many labelled events ``window`` holds, read from the Parquet parts without
    Feast's join: at least as many as ``training_data`` returns, so a count below what is
    needed means waiting, at a fraction of a join's cost (the batch trainer's wait)."""
    home = FeatureStoreSettings().home
    with reading(labels_dir(home, spec.name), features_dir(home, spec.name)):
        return len(_labelled_events(home, spec, window))
