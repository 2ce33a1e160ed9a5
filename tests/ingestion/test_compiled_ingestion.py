"""Ingestion's compiled path changes nothing: the same rows, the same dead-letter reasons,
the same statistics, learned once.

The processor (``Ingestion``: ``begin``, ``process``, ``flush``, without a broker: its
rows are caught from the record batches it fills) and the preparer's exact path
(``parse``, ``validate``, ``clean(learn=...)``, ``featurize`` one event after another, as
ingestion did before the compiled path) are given the same raw events: every use case's
workload, the same events mangled, malformed messages and repeats. After every batch the
two agree on each event's outcome and on the partition's statistics.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.data import workload
from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import UseCase, load_usecase
from services.common.errors import InvalidInput
from services.common.prep import Preparer, feature_row_id
from services.common.prep.compiled import CompiledPreparer
from services.common.seen import SeenIds
from services.common.serde import encode_fields
from services.ingestion import processor as processor_module
from services.ingestion import statistics as statistics_module
from services.ingestion.processor import Ingestion
from services.ingestion.statistics import PartitionStatistics
from tests.common.test_prep_properties import events_for, plausible
from tests.inference.test_compiled_prep import mutated
from tests.ingestion.test_prep_fast_paths import OPEN, SPECS, odd_values

USECASES = Path(__file__).resolve().parents[2] / "usecases"
LEARNED_TO = 300  # the partition's snapshot has learned the offsets below: not learned again
BATCH = 400


class Batch:
    """A record batch that keeps the rows appended to it."""

    def __init__(self, rows: list[bytes]) -> None:
        self.rows = rows

    def append(self, *, timestamp: None, key: bytes, value: bytes) -> object:
        self.rows.append(value)
        return self


class Rows:
    """The rows' producer: one partition, every batch answered at once."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []

    def create_batch(self) -> Batch:
        return Batch(self.rows)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        answer = asyncio.get_running_loop().create_future()
        answer.set_result(None)
        return answer

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}


def consumer_record(topic: str, offset: int, value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, -1, len(value), ())


MADE_AT = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)  # every row's occurred_at


class ExactPath:
    """The preparer's exact answer for each event, in order, as ingestion gave it."""

    def __init__(self, spec: UseCase, state: dict[str, Any], learned_to: int) -> None:
        self.spec = spec
        self.learned_to = learned_to
        self.preparer = Preparer(spec, state)
        self.done: set[str] = set()

    def outcome(self, offset: int, raw: bytes) -> Any:
        preparer = self.preparer
        try:
            record = preparer.validate(preparer.parse(raw))
            if record.event_id in self.done:
                return ("duplicate",)
            clean = preparer.clean(record, learn=offset >= self.learned_to)
            features = preparer.featurize(clean)
        except InvalidInput as exc:
            return ("invalid", str(exc), exc.event_id)
        self.done.add(record.event_id)
        fields = {
            "event_id": feature_row_id(self.spec.name, clean.event_id),
            "event_type": "feature_row",
            "schema_version": 1,
            "occurred_at": MADE_AT,
            "usecase": self.spec.name,
            "source_event_id": clean.event_id,
            "entity_id": clean.entity_id,
            "event_timestamp": clean.timestamp,
            "features": features,
        }
        value = encode_fields(fields)  # the bytes ingestion wrote before the compiled path
        assert json.loads(value) == json.loads(FeatureRow(**fields).model_dump_json())
        return ("row", value)


def compare(
    spec: UseCase,
    raws: list[bytes],
    tmp_path: Path,
    monkeypatch: Any,
    learned_to: int = LEARNED_TO,
    batch_size: int = BATCH,
) -> set[str]:
    """Run both paths over ``raws``; return the kinds of outcome compared."""
    start = {**Preparer(spec).state(), "offset": learned_to, "log_epoch": "log"}

    async def snapshots(bootstrap: str, usecase: str) -> dict[int, dict[str, Any]]:
        return {0: json.loads(json.dumps(start))}

    async def epoch(bootstrap: str) -> str:
        return "log"

    monkeypatch.setattr(statistics_module, "read_snapshots", snapshots)
    monkeypatch.setattr(statistics_module, "log_epoch", epoch)
    monkeypatch.setattr(processor_module, "utcnow", lambda: MADE_AT)
    exact = ExactPath(spec, start, learned_to)
    kinds: set[str] = set()

    async def run() -> None:
        seen = SeenIds(tmp_path / f"{spec.name}.db")
        rows = Rows()
        statistics = PartitionStatistics({spec.name: spec}, seen, None, "")  # type: ignore[arg-type]
        ingestion = Ingestion(statistics, rows)  # type: ignore[arg-type]
        records = [consumer_record(topics.raw(spec.name), o, v) for o, v in enumerate(raws)]
        for first in range(0, len(records), batch_size):
            batch = records[first : first + batch_size]
            if first // batch_size % 2 == 0:  # else record by record, as a processor without begin
                await ingestion.begin(batch)
            for record in batch:
                before = len(rows.rows)
                try:
                    await ingestion.process(record)
                except InvalidInput as exc:
                    got: Any = ("invalid", str(exc), exc.event_id)
                else:
                    got = ("row", rows.rows[-1]) if len(rows.rows) > before else ("duplicate",)
                expected = exact.outcome(record.offset, record.value)
                assert got == expected, record.offset
                kinds.add(expected[0])
            await ingestion.flush()
            learned = statistics.preparers[(spec.name, 0)]
            assert learned.state() == exact.preparer.state()
        seen.close()

    asyncio.run(run())
    return kinds


def stream(spec: UseCase, count: int, seed: int) -> list[bytes]:
    """``count`` workload events, a third of them mangled, with repeats and malformed ones."""
    chance = random.Random(seed)
    events = workload(spec, count, seed=seed).events
    raws: list[bytes] = []
    for event in events:
        roll = chance.random()
        if roll < 0.3:
            event = mutated(spec, event, chance)
        elif roll < 0.33:
            event = {**event, spec.entity_key: chance.choice([7, " c1 ", True, None])}
        elif roll < 0.35:
            event = {**event, "event_id": chance.choice([12, " padded "])}
        elif roll < 0.4 and raws:  # a repeat: the same bytes, or the same id with new fields
            earlier = json.loads(chance.choice(raws)) if chance.random() < 0.5 else None
            if earlier is not None and isinstance(earlier, dict) and "event_id" in earlier:
                event = {**event, "event_id": earlier["event_id"]}
        raws.append(json.dumps(event).encode())
        if chance.random() < 0.01:
            raws.append(chance.choice([b"{oops", b"[1]", b"", b"null", b'{"a": NaN}']))
        if chance.random() < 0.005:
            raws.append(json.dumps({**event, "pad": "x" * spec.max_event_bytes}).encode())
    return raws


@pytest.mark.parametrize("path", sorted(USECASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_ingestion_equals_the_exact_path_on_every_workload(
    path: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    spec = load_usecase(path)
    read, compiled = CompiledPreparer.read, []

    def counted(self: CompiledPreparer, payload: dict[str, Any]) -> Any:
        found = read(self, payload)
        compiled.append(found is not None)
        return found

    monkeypatch.setattr(CompiledPreparer, "read", counted)
    kinds = compare(spec, stream(spec, 2000, seed=11), tmp_path, monkeypatch)
    assert kinds == {"row", "invalid", "duplicate"}
    assert 0.5 < sum(compiled) / len(compiled) < 0.95  # both paths, the compiled one mostly


def test_a_spec_with_imputed_required_fields_learns_once(tmp_path: Path, monkeypatch: Any) -> None:
    """Fields imputed from the median while others are learned: an event that the compiled
    path hands to the preparer is learned by the preparer alone."""
    document = load_usecase(USECASES / "credit.yaml").model_dump()
    for name in ("salary", "age", "elevel"):
        document["fields"][name]["required"] = False
    spec = UseCase.model_validate(document)
    raws = []
    chance = random.Random(5)
    for event in workload(spec, 1200, seed=5).events:
        if chance.random() < 0.3:
            event = {k: v for k, v in event.items() if k not in ("salary", "age", "elevel")}
        raws.append(json.dumps(event).encode())
    assert compare(spec, raws, tmp_path, monkeypatch) == {"row"}


def test_a_pseudonymizing_spec_takes_the_exact_path(tmp_path: Path, monkeypatch: Any) -> None:
    assert not CompiledPreparer(Preparer(OPEN)).enabled
    raws = [json.dumps({**e, "email": f"{i}@x"}).encode() for i, e in enumerate(
        workload(load_usecase(USECASES / "credit.yaml"), 50).events)]  # fmt: skip
    assert "invalid" in compare(OPEN, raws, tmp_path, monkeypatch)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_ingestion_equals_the_exact_path_on_arbitrary_events(
    spec: UseCase, data: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mixed = events_for(spec) | plausible(spec) | plausible(spec)
    odd = st.fixed_dictionaries({}, optional={name: odd_values for name in spec.fields})
    raws = []
    for _ in range(24):  # learned from the 8th on
        payload = data.draw(mixed)
        if data.draw(st.booleans()):
            payload = {**payload, **data.draw(odd)}
        if raws and data.draw(st.integers(0, 5)) == 0:  # the id of an earlier event
            earlier = json.loads(data.draw(st.sampled_from(raws)))
            payload = {**payload, "event_id": earlier.get("event_id")}
        try:
            raws.append(json.dumps(payload).encode())
        except ValueError:  # an integer too long for json
            continue
    with pytest.MonkeyPatch.context() as monkeypatch:
        compare(spec, raws, tmp_path_factory.mktemp("seen"), monkeypatch, 8, 6)


def test_features_that_sum_past_the_largest_float_are_the_preparers(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The compiled path checks its outputs with one sum: finite outputs whose sum is not
    go to the preparer, which gives the row (and a feature that is not finite, its reason)."""
    spec = UseCase.model_validate(
        {
            "name": "huge",
            "task": "regression",
            "fields": {"a": {"type": "float"}, "b": {"type": "float"}},
            "features": [
                {"kind": "passthrough", "field": "a"},
                {"kind": "passthrough", "field": "b"},
                {"kind": "ratio", "numerator": "a", "denominator": "b"},
            ],
        }
    )
    base = {"entity_id": "c", "timestamp": "2026-01-01T00:00:00Z"}
    values = [(1.0, 2.0), (1e308, 1e308), (-1e308, -1e308), (1e308, 1e-10), (1e308, -1e308)]
    raws = [
        json.dumps({**base, "event_id": f"e{i}", "a": a, "b": b}).encode()
        for i, (a, b) in enumerate(values)
    ]
    compiled = CompiledPreparer(Preparer(spec))
    assert [compiled.read(json.loads(raw)) is None for raw in raws] == [0, 1, 1, 1, 0]
    assert compare(spec, raws, tmp_path, monkeypatch, learned_to=0) == {"row", "invalid"}


def test_an_id_that_is_not_unicode_text_is_a_dead_letter_not_a_failed_batch(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """JSON's lone ``\\ud800`` escape makes a Python str that UTF-8 cannot write: such an id
    is refused by name (before, the batch's de-dup query raised, and the batch came back)."""
    spec = load_usecase(USECASES / "credit.yaml")
    events = workload(spec, 6, seed=3).events
    raws = [json.dumps(event).encode() for event in events]
    raws[2] = json.dumps({**events[2], "event_id": "e" + chr(0xD800)}).encode()
    raws[4] = json.dumps({**events[4], "entity_id": "c" + chr(0xDFFF)}).encode()
    assert b"\\ud800" in raws[2]
    assert compare(spec, raws, tmp_path, monkeypatch, learned_to=0) == {"row", "invalid"}
    for raw in (raws[2], raws[4]):
        with pytest.raises(InvalidInput, match="not Unicode text"):
            Preparer(spec).prepare(raw)
