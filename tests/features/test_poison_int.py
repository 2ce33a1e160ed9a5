"""A feature given as an int that a float cannot hold exactly (pyarrow refuses to convert
it) is refused by name and dead-lettered; the batch's other rows are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from schemas.events import DeadLetter
from services.common import dataset
from services.common import featurestore as fs
from services.common.consume import ConsumeLoop
from services.common.deadletter import DeadLetterPolicy
from services.common.errors import InvalidInput
from services.common.seen import SeenIds
from services.common.serde import EXACT_INT, FeatureRowFields, decode, decode_feature_row
from services.features.sink import FeatureSink
from tests.common.toy import SPEC, row
from tests.records import consumer_record as record

REASON = "integers beyond 2**53 either side of 0, which a float cannot hold exactly"


class OneBatch:
    """A consumer whose one poll returns ``records``."""

    def __init__(self, records: list[Any]) -> None:
        self.batches = [{("topic", 0): records}]
        self.commits = 0

    async def getmany(self, **_: Any) -> dict[Any, list[Any]]:
        return self.batches.pop() if self.batches else {}

    def assignment(self) -> set[Any]:
        return set()

    async def commit(self, offsets: Any = None) -> None:
        self.commits += 1


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes) -> None:
        self.messages.append((topic, value))


def encoded(event_id: str, minutes: int, **features: Any) -> bytes:
    good = row(event_id, f"u{minutes}", minutes, float(minutes))
    return (
        good.model_copy(update={"features": {**good.features, **features}})
        .model_dump_json()
        .encode()
    )


async def test_a_row_with_an_int_a_float_cannot_hold_is_dead_lettered_by_name_and_the_rest_written(
    home: Path,
) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    sink = FeatureSink(store, {"toy": SPEC}, SeenIds(home / "seen.db"), home)
    # A seven-digit time fraction sends a row through pydantic (decode) as well.
    slow_row = json.loads(encoded("e4", 4, c_2=-(2**53) - 1))
    slow_row["event_timestamp"] = slow_row["event_timestamp"].replace("Z", ".1234567Z")
    slow = json.dumps(slow_row).encode()
    values = [
        encoded("e1", 1, c_1=EXACT_INT),  # the largest exact one is a number like any
        encoded("e2", 2, x=2**53 + 1),
        encoded("e3", 3, extra=2**80),  # a key outside the view is not written: no matter
        slow,
        encoded("e5", 5, c_1=10**30),
    ]
    records = [record(topics.features("toy"), offset, value) for offset, value in enumerate(values)]
    sent = Sent()
    policy = DeadLetterPolicy("features", sent)  # type: ignore[arg-type]
    consumer = OneBatch(records)
    loop = ConsumeLoop(consumer, sink, policy)  # type: ignore[arg-type]
    assert await loop.run_once() == 5
    assert await loop.run_once() == 0
    frame = dataset.read_dataset(fs.features_dir(home, "toy"))
    assert sorted(frame[fs.EVENT_ID]) == ["e1", "e3"]
    assert frame.set_index(fs.EVENT_ID).loc["e1", "c_1"] == float(EXACT_INT)
    assert consumer.commits == 1 and policy.count == 3
    letters = [decode(topic, value) for topic, value in sent.messages]
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    reasons = [(letter.offset, letter.reason) for letter in letters]  # type: ignore[union-attr]
    assert reasons == [
        (1, f"features ['x'] are {REASON}"),
        (3, f"features ['c_2'] are {REASON}"),
        (4, f"features ['c_1'] are {REASON}"),
    ]
    assert json.loads(letters[0].payload)["features"]["x"] == 2**53 + 1  # type: ignore[union-attr]


def test_the_fast_decode_keeps_exact_ints_and_leaves_larger_ones_to_pydantic() -> None:
    assert isinstance(decode_feature_row(encoded("e1", 1, c_1=-EXACT_INT)), FeatureRowFields)
    for big in (2**53 + 1, -(2**53) - 1, 2**64, 10**400):
        decoded = decode_feature_row(encoded("e1", 1, c_1=big))
        assert not isinstance(decoded, FeatureRowFields) and decoded.features["c_1"] == big


async def test_the_sink_refuses_the_row_as_it_comes_from_pydantic(home: Path) -> None:
    store = fs.open_store(fs.FeatureStoreSettings(home=home), [SPEC])
    sink = FeatureSink(store, {"toy": SPEC}, SeenIds(home / "seen.db"), home)
    with pytest.raises(InvalidInput, match=r"features \['x', 'c_2'\] are integers beyond"):
        await sink.process(
            record(topics.features("toy"), 0, encoded("e1", 1, x=2**60, c_2=-(2**60)))
        )
