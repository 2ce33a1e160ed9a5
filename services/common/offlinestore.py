"""Feast's file offline store with a point-in-time join done in pandas, not dask.

``ParquetOfflineStore`` is Feast's ``DaskOfflineStore`` (the ``file`` store) with one
method replaced: ``get_historical_features`` for an entity frame and plain feature views
(file sources without field mapping, created-timestamp column or join-key mapping, no
on-demand views) reads each view's Parquet files with pyarrow and joins them with
``pandas.merge_asof`` (by join keys, backward, no older than the view's ttl), the answer
Feast's dask join gives. Anything else goes to the dask store. Registered with
``offline_store={"type": "services.common.offlinestore.ParquetOfflineStore"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureView, FileSource
from feast.infra.offline_stores.dask import (
    DaskOfflineStore,
    DaskOfflineStoreConfig,
    DaskRetrievalJob,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig

STORE_TYPE = "services.common.offlinestore.ParquetOfflineStore"


class ParquetOfflineStoreConfig(DaskOfflineStoreConfig):
    """The file offline store's configuration, selecting :class:`ParquetOfflineStore`."""

    type: Literal["services.common.offlinestore.ParquetOfflineStore"] = STORE_TYPE  # type: ignore[assignment]


class _FrameJob(DaskRetrievalJob):
    """A retrieval job whose frame is already computed (pandas, not dask)."""

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self.evaluation_function().reset_index(drop=True)

    def _to_arrow_internal(self, timeout: int | None = None) -> Any:
        import pyarrow

        return pyarrow.Table.from_pandas(self.evaluation_function())


def _plain(view: FeatureView) -> bool:
    source = view.batch_source
    return (
        isinstance(source, FileSource)
        and not source.field_mapping
        and not source.created_timestamp_column
        and not view.projection.join_key_map
        and "://" not in source.path
    )


def _as_utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).astype("datetime64[ns, UTC]")


def _read_view(config: RepoConfig, view: FeatureView, columns: list[str]) -> pd.DataFrame:
    source = view.batch_source
    assert isinstance(source, FileSource)
    path = Path(FileSource.get_uri_for_file_path(Path(str(config.repo_path)), source.path))
    table = pq.read_table(path, columns=columns)
    return table.to_pandas()


def point_in_time_join(
    config: RepoConfig,
    entity_df: pd.DataFrame,
    views: dict[FeatureView, list[str]],
    full_feature_names: bool,
    timestamp_col: str = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL,
) -> pd.DataFrame:
    """Each entity row beside each view's features as of its time (none older than ttl)."""
    result = entity_df.copy()
    result[timestamp_col] = _as_utc(result[timestamp_col])
    result = result.sort_values(timestamp_col, kind="stable")
    for view, features in views.items():
        keys = [column.name for column in view.entity_columns]
        stamp = view.batch_source.timestamp_field  # type: ignore[union-attr]
        right = _read_view(config, view, [*keys, stamp, *features])
        prefix = view.projection.name_to_use() + "__"  # type: ignore[no-untyped-call]
        names = {
            feature: prefix + feature if full_feature_names else feature for feature in features
        }
        right = right.rename(columns={**names, stamp: "__feature_time"})
        right["__feature_time"] = _as_utc(right["__feature_time"])
        right = right.dropna(subset=["__feature_time"]).sort_values("__feature_time", kind="stable")
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() != 0 else None
        # As Feast's join: one answer per entity row's keys and time (the last such row).
        result = result.drop_duplicates([*keys, timestamp_col], keep="last")
        result = pd.merge_asof(
            result,
            right,
            left_on=timestamp_col,
            right_on="__feature_time",
            by=keys,
            direction="backward",
            allow_exact_matches=True,
            tolerance=pd.Timedelta(ttl) if ttl is not None else None,
        )
        # As Feast's join: an entity with rows but none in time (late, or older than
        # ttl) loses the entity row; an entity without any row keeps it, features empty.
        known = pd.MultiIndex.from_frame(right[keys].drop_duplicates())
        missed = result["__feature_time"].isna().to_numpy()
        present = pd.MultiIndex.from_frame(result[keys]).isin(known)
        result = result[~(missed & present)].drop(columns="__feature_time")
    return result


class ParquetOfflineStore(DaskOfflineStore):
    """Feast's file offline store; historical features by pandas' as-of join."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        from feast.on_demand_feature_view import OnDemandFeatureView

        on_demand = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        if (
            not isinstance(entity_df, pd.DataFrame)
            or DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL not in entity_df.columns
            or on_demand
            or not all(_plain(view) for view in feature_views)
        ):
            return DaskOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                filter_by_created_timestamp,
                **kwargs,
            )
        by_name = {view.projection.name_to_use(): view for view in feature_views}  # type: ignore[no-untyped-call]
        views: dict[FeatureView, list[str]] = {}
        for ref in feature_refs:
            name, feature = ref.split(":", 1)
            views.setdefault(by_name[name], []).append(feature)
        stamps = _as_utc(entity_df[DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL])
        frame = point_in_time_join(config, entity_df, views, full_feature_names)
        return _FrameJob(
            evaluation_function=lambda: frame,
            full_feature_names=full_feature_names,
            repo_path=str(config.repo_path),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(set(entity_df.columns) - {DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL}),
                min_event_timestamp=stamps.min().to_pydatetime() if len(stamps) else None,
                max_event_timestamp=stamps.max().to_pydatetime() if len(stamps) else None,
            ),
        )
