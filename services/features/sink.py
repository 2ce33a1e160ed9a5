"""The processor: buffer rows and labels per use case, write them a batch at a time.

``hand_off`` takes the batch's buffers and returns their write, which runs in a
worker thread while the consume loop reads and checks the next batch (see
:mod:`services.common.consume`); batches are written one after the other, so
each write's de-duplication sees every earlier batch's ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from feast import FeatureStore
from prometheus_client import Counter, Histogram

from schemas import topics
from schemas.events import FeatureRow
from schemas.inputs import Label
from schemas.topics import Topic
from schemas.usecase import UseCase
from services.common import featurestore
from services.common.errors import InvalidInput
from services.common.seen import SeenIds
from services.common.serde import (
    EXACT_INT,
    DecodedRow,
    FeatureRowFields,
    ViewRowFields,
    decode,
    view_row_decoder,
)

logger = logging.getLogger(__name__)

WRITTEN = Counter("driftline_features_written_total", "rows written to Feast", ["usecase", "kind"])
DUPLICATES = Counter(
    "driftline_features_duplicates_total", "rows skipped as already written", ["usecase", "kind"]
)
FLUSH_SECONDS = Histogram("driftline_features_flush_seconds", "time to write one micro-batch")


@dataclass
class Batch:
    """One micro-batch's buffers: rows and labels by use case, and the part names."""

    rows: dict[str, list[DecodedRow]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, list[Label]] = field(default_factory=lambda: defaultdict(list))
    part_names: dict[tuple[str, str], str] = field(default_factory=dict)


class FeatureSink:
    """Buffers feature rows and labels; ``flush`` writes them to Feast once each."""

    def __init__(
        self,
        store: FeatureStore,
        specs: dict[str, UseCase],
        seen: SeenIds,
        home: Any,
        *,
        online_last_write_wins: bool = True,
    ):
        self.store = store
        self.specs = specs
        self.seen = seen
        self.home = home
        # see featurestore.write_features
        self.online_last_write_wins = online_last_write_wins
        self.names = {name: spec.feature_names() for name, spec in specs.items()}
        self.name_sets = {name: set(names) for name, names in self.names.items()}
        # Each use case's decode of its rows: a struct of its view's features.
        self.decoders = {name: view_row_decoder(names) for name, names in self.names.items()}
        self.batch = Batch()  # what ``process`` has buffered since the last hand-off
        # Each topic's use case and declared topic, looked up once a topic name.
        self._topics: dict[str, tuple[UseCase | None, Topic[Any] | None]] = {}

    def _topic(self, name: str) -> tuple[UseCase | None, Topic[Any] | None]:
        found = self._topics.get(name)
        if found is None:
            spec = self.specs.get(topics.usecase_of(name) or "")
            found = self._topics[name] = (spec, topics.topic_of(name))
        return found

    async def process(self, record: Any) -> None:
        spec, declared = self._topic(record.topic)
        if spec is None:
            raise InvalidInput(f"topic {record.topic!r} belongs to no configured use case")
        event: Any
        if declared is topics.FEATURES:  # the hot path: a row's fields, no pydantic model
            event = self.decoders[spec.name](record.value)
        else:
            event = decode(declared or record.topic, record.value)
        if isinstance(event, ViewRowFields):  # every feature of the view, numbers all exact
            kind = "features"
            self.batch.rows[spec.name].append(event)
        elif isinstance(event, (FeatureRowFields, FeatureRow)):
            kind = "features"
            self._check_row(spec, event)
            self.batch.rows[spec.name].append(event)
        elif isinstance(event, Label):
            kind = "labels"
            self._check_label(spec, event)
            self.batch.labels[spec.name].append(event)
        else:
            raise InvalidInput(f"topic {record.topic!r} is neither feature rows nor labels")
        self._note_part(spec.name, kind, record)

    def _note_part(self, usecase: str, kind: str, record: Any) -> None:
        # Name the Parquet part after where its batch starts and (content_name)
        # what it holds: a redelivered batch with the same fresh rows replaces its
        # own part instead of adding a copy, and one with other rows never
        # overwrites a part whose rows are already recorded as written.
        part_names = self.batch.part_names
        if (usecase, kind) not in part_names:  # (the name made once a batch)
            part_names[(usecase, kind)] = f"{record.topic}-{record.partition}-{record.offset:012d}"

    def _check_row(self, spec: UseCase, row: FeatureRow | FeatureRowFields) -> None:
        names = self.names[spec.name]
        features = row.features
        if not features.keys() >= self.name_sets[spec.name]:
            missing = [name for name in names if name not in features]
            raise InvalidInput(f"feature row lacks features {missing}", event_id=row.event_id)
        # A row's fields (decode_feature_row) hold numbers only, their ints within EXACT_INT;
        # the model may hold text, or an int that would fail the batch's Parquet write.
        if not isinstance(row, FeatureRow):
            return
        if str in set(map(type, features.values())):
            text = [k for k, v in row.features.items() if isinstance(v, str)]
            raise InvalidInput(f"features {text} are text, expected numbers", event_id=row.event_id)
        inexact = [k for k in names if type(v := features[k]) is int and abs(v) > EXACT_INT]
        if inexact:
            raise InvalidInput(
                f"features {inexact} are integers beyond 2**53 either side of 0, which a float"
                " cannot hold exactly",
                event_id=row.event_id,
            )

    def _check_label(self, spec: UseCase, label: Label) -> None:
        if spec.class_of(label.label) is not None:
            return
        expected = (
            f"one of {spec.label.classes}" if spec.task == "classification" else "a finite number"
        )
        raise InvalidInput(
            f"field 'label': expected {expected}, got {label.label!r}", event_id=label.event_id
        )

    async def flush(self) -> None:
        """Write the buffered batch (in a worker thread, so the consumer keeps fetching)."""
        await (await self.hand_off())

    async def hand_off(self) -> Awaitable[None]:
        """Take the buffered batch; return its write, in a worker thread."""
        batch, self.batch = self.batch, Batch()
        return asyncio.to_thread(self.write, batch)

    def write(self, batch: Batch) -> None:
        started = time.perf_counter()
        for usecase, rows in batch.rows.items():
            fresh = self._fresh(usecase, "features", [r.source_event_id for r in rows])
            unique = {r.source_event_id: r for r in rows if r.source_event_id in fresh}
            part = content_name(batch.part_names[(usecase, "features")], unique)
            featurestore.write_features(
                self.store,
                self.home,
                self.specs[usecase],
                list(unique.values()),
                part,
                online_last_write_wins=self.online_last_write_wins,
            )
            self.seen.add(usecase, "features", unique)
            WRITTEN.labels(usecase, "features").inc(len(unique))
        for usecase, labels in batch.labels.items():
            fresh = self._fresh(usecase, "labels", [label.event_id for label in labels])
            by_id = {label.event_id: label for label in labels if label.event_id in fresh}
            part = content_name(batch.part_names[(usecase, "labels")], by_id)
            featurestore.write_labels(self.home, self.specs[usecase], list(by_id.values()), part)
            self.seen.add(usecase, "labels", by_id)
            WRITTEN.labels(usecase, "labels").inc(len(by_id))
        FLUSH_SECONDS.observe(time.perf_counter() - started)

    def _fresh(self, usecase: str, kind: str, event_ids: list[str]) -> set[str]:
        fresh = self.seen.unseen(usecase, kind, event_ids)
        duplicates = len(event_ids) - len(fresh)
        if duplicates:
            DUPLICATES.labels(usecase, kind).inc(duplicates)
            logger.info(
                "skipped already-written usecase=%s kind=%s count=%d", usecase, kind, duplicates
            )
        return fresh


def content_name(base: str, event_ids: Any) -> str:
    """A part name for ``base`` and exactly these event ids.

    >>> content_name("uc.features-0-000000000010", ["b", "a"]) == content_name(
    ...     "uc.features-0-000000000010", ["a", "b"])
    True
    >>> content_name("p", ["a"]) == content_name("p", ["a", "b"])
    False
    """
    digest = hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()[:16]
    return f"{base}-{digest}"
