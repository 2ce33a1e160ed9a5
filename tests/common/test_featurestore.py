"""The Feast feature store: point-in-time training sets and both online stores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from schemas.events import Window
from schemas.inputs import Label
from services.common import dataset
from services.common import featurestore as fs
from tests.common.toy import SPEC, T0, row


def label(event_id: str, minutes: float, value: int) -> Label:
    return Label(event_id=event_id, label=value, timestamp=T0 + timedelta(minutes=minutes))


@pytest.fixture
def store(home: Path):  # type: ignore[no-untyped-def]
    return fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])


def test_a_feature_changed_after_the_label_does_not_leak(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    # e1 at minute 0 (x=1), labelled at minute 5; the same entity's x changes to 99
    # at minute 10, after the label. e2 at minute 20 sees the new value.
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.0)], "part-a")
    fs.write_features(store, home, SPEC, [row("e2", "alice", 10, 99.0)], "part-b")
    fs.write_labels(home, SPEC, [label("e1", 5, 1), label("e2", 20, 0)], "labels-a")

    frame = fs.training_frame(store, home, SPEC)
    assert list(frame["event_id"]) == ["e1", "e2"]
    assert list(frame["x"]) == [1.0, 99.0]
    assert list(frame["label"]) == ["1", "0"]
    assert set(frame.columns) >= {"x", "c_1", "c_2", "label", "entity_id", "event_timestamp"}


def test_a_window_keeps_only_labels_known_by_its_end(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [row(f"e{i}", f"u{i % 3}", i, float(i)) for i in range(10)]
    fs.write_features(store, home, SPEC, rows, "part-a")
    fs.write_labels(home, SPEC, [label(f"e{i}", i + 0.5, i % 2) for i in range(10)], "l")
    window = Window(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=6))
    frame = fs.training_frame(store, home, SPEC, window)
    assert list(frame["event_id"]) == ["e2", "e3", "e4", "e5"]


def test_the_cheap_count_is_what_the_join_returns_and_skips_feast(  # type: ignore[no-untyped-def]
    store, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_HOME", str(home))
    window = Window(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=6))
    assert fs.labelled_rows(SPEC, window) == 0  # nothing written yet
    rows = [row(f"e{i}", f"u{i % 3}", i, float(i)) for i in range(10)]
    fs.write_features(store, home, SPEC, rows, "part-a")
    assert fs.labelled_rows(SPEC, window) == 0  # features without labels do not count
    fs.write_labels(home, SPEC, [label(f"e{i}", i + 0.5, i % 2) for i in range(10)], "l")
    assert fs.labelled_rows(SPEC, window) == len(fs.training_frame(store, home, SPEC, window)) == 4
    assert fs.labelled_rows(SPEC, None) == 10

    def no_feast(*args: object, **kwargs: object) -> None:
        raise AssertionError("the count must not run Feast's point-in-time join")

    monkeypatch.setattr(type(store), "get_historical_features", no_feast)
    assert fs.labelled_rows(SPEC, window) == 4


def test_rewriting_a_part_replaces_it(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.0)], "same-part")
    fs.write_features(store, home, SPEC, [row("e1", "alice", 0, 1.0)], "same-part")
    assert len(dataset.read_dataset(fs.features_dir(home, "toy"))) == 1


def test_no_data_gives_an_empty_frame_with_the_columns(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    frame = fs.training_frame(store, home, SPEC)
    assert frame.empty
    assert "label" in frame.columns


def test_online_read_returns_the_latest_row(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    fs.write_features(
        store, home, SPEC, [row("e1", "alice", 0, 1.0), row("e2", "bob", 1, 2.0)], "p"
    )
    fs.write_features(store, home, SPEC, [row("e3", "alice", 2, 3.0)], "q")
    alice, nobody = fs.online_features(store, SPEC, ["alice", "nobody"])
    assert alice["source_event_id"] == "e3" and alice["x"] == 3.0
    assert nobody["x"] is None


def redis_available() -> bool:
    from services.common.broker import port_open

    return port_open("127.0.0.1", 6379)


@pytest.mark.integration
@pytest.mark.skipif(
    not redis_available(), reason="no Redis at 127.0.0.1:6379 for the production profile"
)
def test_production_profile_serves_online_features_from_redis(home: Path, unique: str) -> None:
    import redis

    spec = SPEC.model_copy(update={"name": unique})
    settings = fs.FeatureStoreSettings(
        home=home, feast_profile="production", redis_url="127.0.0.1:6379"
    )
    store = fs.open_store(settings, [spec])
    fs.write_features(store, home, spec, [row("e1", "carol", 0, 7.0)], "p")
    (carol,) = fs.online_features(store, spec, ["carol"])
    assert carol["x"] == 7.0 and carol["source_event_id"] == "e1"
    client = redis.Redis(host="127.0.0.1", port=6379)
    assert any(client.scan_iter(count=1000)), "nothing was written to Redis"


def test_many_parts_are_compacted_and_nothing_is_lost(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(40):
        fs.write_features(store, home, SPEC, [row(f"e{i}", f"u{i % 4}", i, float(i))], f"p{i:03d}")
    parts = list(fs.features_dir(home, "toy").glob("*.parquet"))
    assert len(parts) <= 32
    data = dataset.read_dataset(fs.features_dir(home, "toy"))
    assert sorted(data[fs.EVENT_ID]) == sorted(f"e{i}" for i in range(40))
    fs.write_labels(home, SPEC, [label(f"e{i}", i + 0.5, i % 2) for i in range(40)], "l")
    assert len(fs.training_frame(store, home, SPEC)) == 40


def test_compaction_waits_while_a_reader_holds_the_dataset(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    directory = fs.features_dir(home, "toy")
    with dataset.reading(directory):
        for i in range(40):
            fs.write_features(
                store, home, SPEC, [row(f"e{i}", f"u{i % 4}", i, float(i))], f"p{i:03d}"
            )
        held = sorted(directory.glob("*.parquet"))
    assert len(held) == 40, "a part was removed while the dataset was being read"
    fs.write_features(store, home, SPEC, [row("e40", "u0", 40, 40.0)], "p040")
    assert len(list(directory.glob("*.parquet"))) == 1
    assert len(dataset.read_dataset(directory)) == 41


def test_parts_from_pandas_and_from_pyarrow_join_together(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    # An older home holds parts pandas wrote (its metadata, nanosecond times); new
    # parts are written with pyarrow directly. One point-in-time join reads both.
    old = fs.rows_frame(SPEC, [row("e1", "alice", 0, 1.0)])
    dataset.write_parquet_part(fs.features_dir(home, "toy"), old, "old-part")
    fs.write_features(store, home, SPEC, [row("e2", "alice", 10, 99.0)], "new-part")
    fs.write_labels(home, SPEC, [label("e1", 5, 1), label("e2", 20, 0)], "labels-a")

    frame = fs.training_frame(store, home, SPEC)
    assert list(frame["event_id"]) == ["e1", "e2"]
    assert list(frame["x"]) == [1.0, 99.0]


def test_the_parquet_offline_store_answers_as_feasts_dask_store(store, home: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd
    from feast.infra.offline_stores.dask import DaskOfflineStore

    from services.common.offlinestore import ParquetOfflineStore

    # alice: two rows (minutes 0 and 10) and a late one (minute 30, after every entity
    # time); bob: a row at minute 5 only; carol: none. Two entity rows at one instant.
    rows = [row("a0", "alice", 0, 1.0), row("a1", "alice", 10, 2.0), row("b0", "bob", 5, 3.0)]
    fs.write_features(store, home, SPEC, rows, "part-a")
    fs.write_features(store, home, SPEC, [row("a2", "alice", 30, 4.0)], "part-b")
    at = [0, 5, 10, 12, 12, 20, 4, 5, 25, 3]
    who = ["alice"] * 6 + ["bob"] * 3 + ["carol"]
    entity_df = pd.DataFrame(
        {"entity_id": who, "event_timestamp": [T0 + timedelta(minutes=m) for m in at]}
    )
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    view = store.get_feature_view(fs.view_name(SPEC.name))
    refs = [f"{view.name}:{name}" for name in [fs.EVENT_ID, *SPEC.feature_names()]]
    short = view.__copy__()
    short.ttl = timedelta(minutes=6)  # alice's row of minute 10 is too old at minute 20
    for candidate, full_names in ((view, False), (short, True)):
        answers = [
            offline.get_historical_features(
                store.config,
                [candidate],
                refs,
                entity_df,
                store.registry,
                store.project,
                full_names,
            )
            .to_df()
            .sort_values(["entity_id", "event_timestamp"], kind="stable")
            .reset_index(drop=True)
            for offline in (ParquetOfflineStore, DaskOfflineStore)
        ]
        ours, feasts = answers
        assert list(ours.columns) == list(feasts.columns)
        pd.testing.assert_frame_equal(ours, feasts, check_dtype=False)
    # ttl 6 minutes: alice at 20 and bob at 25 have only stale rows, bob at 4 only a late
    # one: those entity rows are gone; carol, with no rows at all, keeps hers, empty.
    assert ours[f"{view.name}__{fs.EVENT_ID}"].tolist() == ["a0", "a0", "a1", "a1", "b0", None]


def test_feast_is_configured_with_the_parquet_offline_store(store) -> None:  # type: ignore[no-untyped-def]
    from services.common.offlinestore import ParquetOfflineStore

    assert type(store._get_provider().offline_store) is ParquetOfflineStore
