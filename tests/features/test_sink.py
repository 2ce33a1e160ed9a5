"""The features service's sink against a real temporary Feast repo and SQLite record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from services.common import dataset
from services.common import featurestore as fs
from services.common.errors import InvalidInput
from services.common.seen import SeenIds
from services.features.sink import FeatureSink
from tests.common.test_featurestore import SPEC, row
from tests.records import consumer_record as record


@pytest.fixture
def sink(home: Path) -> FeatureSink:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    return FeatureSink(store, {"toy": SPEC}, SeenIds(home / "seen.db"), home)


async def feed(sink: FeatureSink, first: int, rows: list[Any]) -> None:
    for offset, item in enumerate(rows, start=first):
        await sink.process(record(topics.features("toy"), offset, item.model_dump_json().encode()))
    await sink.flush()


async def test_many_small_batches_are_compacted_and_read_back_once(
    sink: FeatureSink, home: Path
) -> None:
    for i in range(40):
        await feed(sink, i, [row(f"e{i}", f"u{i % 3}", i, float(i))])
    parts = list(fs.features_dir(home, "toy").glob("*.parquet"))
    assert len(parts) <= 32
    frame = dataset.read_dataset(fs.features_dir(home, "toy"))
    assert sorted(frame[fs.EVENT_ID]) == sorted(f"e{i}" for i in range(40))


async def test_a_redelivered_batch_writes_nothing_new(sink: FeatureSink, home: Path) -> None:
    batch = [row("e1", "alice", 0, 1.0), row("e2", "bob", 1, 2.0)]
    await feed(sink, 0, batch)
    await feed(sink, 0, batch)
    await feed(sink, 2, [batch[1], row("e3", "carol", 2, 3.0)])
    frame = dataset.read_dataset(fs.features_dir(home, "toy"))
    assert sorted(frame[fs.EVENT_ID]) == ["e1", "e2", "e3"]
    assert sink.seen.count("toy", "features") == 3
    online = fs.online_features(sink.store, SPEC, ["alice", "bob", "carol"])
    assert [r["x"] for r in online] == [1.0, 2.0, 3.0]


async def test_a_row_with_text_features_is_refused_with_the_names(sink: FeatureSink) -> None:
    bad = row("e1", "alice", 0, 1.0).model_copy(update={"features": {"x": "one", "c_1": 1.0}})
    with pytest.raises(InvalidInput, match="c_2"):
        await sink.process(record(topics.features("toy"), 0, bad.model_dump_json().encode()))


async def test_a_row_with_every_feature_but_one_text_is_refused_naming_it(
    sink: FeatureSink,
) -> None:
    features = {"x": 1.0, "c_1": "yes", "c_2": 0.0}
    bad = row("e1", "alice", 0, 1.0).model_copy(update={"features": features})
    with pytest.raises(InvalidInput, match=r"features \['c_1'\] are text"):
        await sink.process(record(topics.features("toy"), 0, bad.model_dump_json().encode()))
