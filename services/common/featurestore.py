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

import fcntl
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
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
from pydantic import Field as SettingField

from schemas.events import FeatureRow, Window
from schemas.inputs import Label
from schemas.usecase import UseCase
from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

PROJECT = "driftline"
ENTITY_KEY = "entity_id"
TIMESTAMP = "event_timestamp"
EVENT_ID = "source_event_id"
FEATURE_TTL = timedelta(days=3650)


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
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
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
        online = SqliteOnlineStoreConfig(path=str(directory / "online.db"))
        registry = RegistryConfig(path=str(directory / "registry.db"), cache_ttl_seconds=60)
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": "file"},
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


def rows_frame(spec: UseCase, rows: Sequence[FeatureRow]) -> pd.DataFrame:
    """Feature rows as the frame Feast and the Parquet dataset expect (fixed column order)."""
    names = spec.feature_names()
    frame = pd.DataFrame(
        {
            ENTITY_KEY: [row.entity_id for row in rows],
            TIMESTAMP: pd.to_datetime([row.event_timestamp for row in rows], utc=True),
            EVENT_ID: [row.source_event_id for row in rows],
            **{name: [float(row.features[name]) for row in rows] for name in names},
        }
    )
    return frame


def write_parquet_part(directory: Path, frame: pd.DataFrame, part_name: str) -> Path:
    """Write one part file atomically (temp name, then rename); a rewrite replaces it."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{part_name}.parquet"
    temporary = directory / f".{part_name}.{uuid.uuid4().hex}.tmp"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    temporary.replace(final)
    return final


@contextmanager
def _dataset_lock(directory: Path, operation: int) -> Iterator[bool]:
    """Hold a dataset's lock (``fcntl.LOCK_SH`` or ``LOCK_EX``); yields whether it was taken.

    Readers share it; compaction, which removes parts, takes it alone and
    without waiting. The kernel drops a killed process's lock.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, operation)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def reading(*directories: Path) -> Iterator[None]:
    """Keep the datasets' parts in place while they are read (compaction waits)."""
    with ExitStack() as stack:
        for directory in directories:
            stack.enter_context(_dataset_lock(directory, fcntl.LOCK_SH))
        yield


def compact_dataset(directory: Path, max_parts: int = 32) -> int:
    """Merge a dataset's parts into one when there are more than ``max_parts``.

    Feast's file offline store reads every part on each retrieval; thousands of
    small parts (one per consumed batch) make a training set take minutes. Only
    the one writer of a dataset calls this, after its own write. While anyone
    reads the dataset (``reading``) it is left for a later write, so a reader
    never finds a part gone. A crash between writing the merged part and
    removing the old ones leaves duplicate rows, which every reader drops by
    event id. Returns how many parts were merged.
    """
    parts = sorted(p for p in directory.glob("*.parquet")) if directory.exists() else []
    if len(parts) <= max_parts:
        return 0
    with _dataset_lock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB) as alone:
        if not alone:
            return 0
        frame = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
        write_parquet_part(directory, _unique_events(frame), f"compacted-{uuid.uuid4().hex}")
        for part in parts:
            part.unlink(missing_ok=True)
    return len(parts)


def write_features(
    store: FeatureStore,
    home: Path,
    spec: UseCase,
    rows: Sequence[FeatureRow],
    part_name: str,
    *,
    online_last_write_wins: bool = False,
) -> None:
    """Write feature rows to the offline store (a Parquet part) and the online store (push).

    ``online_last_write_wins``: the online store keeps the last row written for
    an entity whatever its timestamp (Feast's SQLite store does), so only each
    entity's last row of ``rows`` is pushed, and the store ends the same.
    """
    if not rows:
        return
    frame = rows_frame(spec, rows)
    write_parquet_part(features_dir(home, spec.name), frame, part_name)
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


def read_dataset(directory: Path) -> pd.DataFrame:
    """Every part of a Parquet dataset (an empty frame when there is none)."""
    if not directory.exists():
        return pd.DataFrame()
    with reading(directory):
        return _read_parts(directory)


def _read_parts(directory: Path) -> pd.DataFrame:
    """The dataset's rows, one per event (the caller holds it: ``reading``)."""
    parts = sorted(directory.glob("*.parquet")) if directory.exists() else []
    if not parts:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    return _unique_events(frame)


def _unique_events(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per event: a batch redelivered after a crash may have been written twice."""
    for key in (EVENT_ID, "event_id"):
        if key in frame.columns:
            return frame.drop_duplicates(key, keep="last").reset_index(drop=True)
    return frame


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


def _point_in_time_join(
    store: FeatureStore, home: Path, spec: UseCase, window: Window | None
) -> pd.DataFrame:
    labels = _read_parts(labels_dir(home, spec.name))
    events = _read_parts(features_dir(home, spec.name))
    columns = [*spec.feature_names(), "label", "event_id", ENTITY_KEY, TIMESTAMP, "label_timestamp"]
    if labels.empty or events.empty:
        return pd.DataFrame(columns=columns)
    labels = labels.drop_duplicates("event_id", keep="last")
    events = events.drop_duplicates(EVENT_ID, keep="last")[[EVENT_ID, ENTITY_KEY, TIMESTAMP]]
    joined = labels.merge(events, left_on="event_id", right_on=EVENT_ID, how="inner")
    if window is not None:
        if window.start is not None:
            joined = joined[joined[TIMESTAMP] >= pd.Timestamp(window.start)]
        if window.end is not None:
            joined = joined[joined["label_timestamp"] <= pd.Timestamp(window.end)]
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
