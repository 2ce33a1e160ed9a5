"""Demo streams: seeded, drift that a detector and a model can see, published to the broker."""

from __future__ import annotations

import asyncio
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from river import tree

from schemas import topics
from schemas.usecase import UseCase, load_usecase
from services.cli.demo import stream_demo
from services.common.bus import start_consumer
from services.common.prep import Preparer
from services.demo.data import SOURCES, DemoError, demo_events

USECASES = Path(__file__).resolve().parents[2] / "usecases"
START = datetime(2026, 1, 1, tzinfo=UTC)


def spec_named(name: str, **demo_params: Any) -> UseCase:
    spec = load_usecase(USECASES / f"{name}.yaml")
    assert spec.demo is not None
    demo = spec.demo.model_copy(update={"params": {**spec.demo.params, **demo_params}})
    return spec.model_copy(update={"demo": demo})


def test_same_seed_same_stream_and_another_seed_another() -> None:
    spec = spec_named("credit")
    one = list(demo_events(spec, events=200, seed=7, drift_at=100, start=START))
    two = list(demo_events(spec, events=200, seed=7, drift_at=100, start=START))
    other = list(demo_events(spec, events=200, seed=8, drift_at=100, start=START))
    assert one == two
    assert [e.event for e in one] != [e.event for e in other]


def test_events_carry_ids_entities_a_clock_and_late_labels() -> None:
    spec = spec_named("credit")
    stream = list(demo_events(spec, events=300, seed=1, start=START))
    first, last = stream[0], stream[-1]
    assert set(first.event) == {"event_id", "entity_id", "timestamp", *spec.fields}
    assert first.event["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert last.event["timestamp"] == "2026-01-01T00:04:59+00:00"
    assert first.label == {
        "event_id": first.event["event_id"],
        "label": first.label["label"],
        "timestamp": "2026-01-01T00:00:02+00:00",
    }
    entities = [e.event["entity_id"] for e in stream]
    assert len(set(entities)) < len(entities)  # customers come back
    assert len({e.event["event_id"] for e in stream}) == len(stream)
    assert not any(e.drifted for e in stream)


def agrawal_f0(x: dict[str, Any]) -> int:
    return int(x["age"] < 40 or x["age"] >= 60)


def agrawal_f1(x: dict[str, Any]) -> int:
    age, salary = x["age"], x["salary"]
    if age < 40:
        return int(50_000 <= salary <= 100_000)
    if age < 60:
        return int(75_000 <= salary <= 125_000)
    return int(25_000 <= salary <= 75_000)


def test_credit_drift_changes_the_concept_and_the_covariates() -> None:
    spec = spec_named("credit", dirty_share=0.0)
    stream = list(demo_events(spec, events=2000, seed=3, drift_at=1000, start=START))
    before = [e for e in stream if not e.drifted]
    after = [e for e in stream if e.drifted]
    assert len(before) == len(after) == 1000

    def agreement(items: list[Any], rule: Any) -> float:
        return statistics.mean(rule(e.event) == e.label["label"] for e in items)

    # Concept: labels follow function 0 before (5% noise), function 1 after.
    assert agreement(before, agrawal_f0) > 0.9 and agreement(after, agrawal_f1) > 0.9
    assert agreement(after, agrawal_f0) < 0.7
    # Covariates: richer and younger applicants.
    salary = [statistics.mean(e.event["salary"] for e in part) for part in (before, after)]
    age = [statistics.mean(e.event["age"] for e in part) for part in (before, after)]
    assert salary[1] > salary[0] + 20_000
    assert age[1] < age[0] - 8


def test_a_model_fitted_before_the_drift_loses_accuracy_after_it() -> None:
    spec = spec_named("credit", dirty_share=0.0)
    preparer = Preparer(spec)
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    hits: dict[bool, list[bool]] = {False: [], True: []}
    for item in demo_events(spec, events=2500, seed=5, drift_at=2000, start=START):
        x, y = preparer.prepare(item.event).features, item.label["label"]
        if item.index < 1500:
            model.learn_one(x, y)
        else:
            hits[item.drifted].append(model.predict_one(x) == y)
    before, after = statistics.mean(hits[False]), statistics.mean(hits[True])
    assert before > 0.8
    assert after < before - 0.25


@pytest.mark.parametrize("name", ["phishing", "friedman"])
def test_other_demos_stream_events_their_preparer_accepts(name: str) -> None:
    spec = spec_named(name)
    preparer = Preparer(spec)
    stream = list(demo_events(spec, events=300, seed=2, drift_at=150, start=START))
    rows = [preparer.prepare(item.event) for item in stream]
    assert len(rows) == 300
    assert sum(item.drifted for item in stream) == 150


def test_phishing_drift_flips_the_concept() -> None:
    spec = spec_named("phishing")
    plain = list(demo_events(spec, events=400, seed=4, start=START))
    drifted = list(demo_events(spec, events=400, seed=4, drift_at=0, start=START))
    positive = [statistics.mean(bool(e.label["label"]) for e in s) for s in (plain, drifted)]
    assert abs(positive[0] - positive[1]) > 0.1


def test_a_dirty_share_sends_some_events_to_cleaning_and_some_to_rejection() -> None:
    spec = spec_named("credit", dirty_share=0.5)
    preparer = Preparer(spec)
    outcomes = {"ok": 0, "rejected": 0}
    for item in demo_events(spec, events=200, seed=6, start=START):
        try:
            preparer.prepare(item.event)
            outcomes["ok"] += 1
        except Exception as exc:  # only InvalidInput is allowed
            assert type(exc).__name__ == "InvalidInput", exc
            outcomes["rejected"] += 1
    assert outcomes["ok"] > 100 and outcomes["rejected"] > 10


def test_unknown_sources_and_missing_demo_sections_are_explained() -> None:
    spec = spec_named("credit")
    assert {"agrawal", "river_dataset", "friedman"} <= set(SOURCES)
    broken = spec.model_copy(update={"demo": spec.demo.model_copy(update={"source": "nope"})})
    with pytest.raises(DemoError, match=r"unknown demo\.source 'nope'"):
        next(demo_events(broken, events=1))
    with pytest.raises(DemoError, match="has no demo section"):
        next(demo_events(spec.model_copy(update={"demo": None}), events=1))


async def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = await start_consumer(bootstrap, [topic], None)
    found: list[Any] = []
    try:
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            found.extend(r for records in batches.values() for r in records)
            if len(found) >= count:
                break
    finally:
        await consumer.stop()
    return found


@pytest.mark.integration
def test_stream_demo_publishes_events_and_late_labels(
    bootstrap: str, unique: str, make_topics: Any
) -> None:
    spec = spec_named("credit").model_copy(update={"name": unique})
    make_topics(topics.raw(unique), topics.labels(unique))
    seen: list[int] = []

    async def publish_and_read() -> tuple[Any, list[Any], list[Any]]:
        summary = await stream_demo(
            bootstrap,
            spec,
            events=50,
            rate=0,
            seed=9,
            drift_at=25,
            label_delay=0.2,
            progress=seen.append,
            start=START,
        )
        raw, labels = await asyncio.gather(
            read_all(bootstrap, topics.raw(unique), 50),
            read_all(bootstrap, topics.labels(unique), 50),
        )
        return summary, raw, labels

    summary, raw, labels = asyncio.run(publish_and_read())
    assert (summary.events, summary.labels, seen[-1]) == (50, 50, 50)
    expected = list(demo_events(spec, events=50, seed=9, drift_at=25, start=START))
    assert [json.loads(r.value) for r in raw] == [e.event for e in expected]
    assert [r.key.decode() for r in raw] == [e.event["entity_id"] for e in expected]
    assert [json.loads(r.value) for r in labels] == [e.label for e in expected]


@pytest.mark.integration
def test_the_demo_command_streams_a_use_case_that_is_only_a_yaml_file(
    bootstrap: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from services.cli.demo import register

    text = (USECASES / "credit.yaml").read_text()
    (tmp_path / f"{unique}.yaml").write_text(text)
    monkeypatch.setenv("DRIFTLINE_BOOTSTRAP", bootstrap)
    monkeypatch.setenv("DRIFTLINE_USECASES_DIR", str(tmp_path))
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from flattening "demo"
        """Nothing."""

    runner = CliRunner()
    missing = runner.invoke(app, ["demo", "nope"])
    assert missing.exit_code == 2 and "no use case 'nope'" in missing.output
    result = runner.invoke(
        app, ["demo", unique, "--events", "20", "--rate", "0", "--label-delay", "0"]
    )
    assert result.exit_code == 0, result.output
    assert f"published 20 events to {unique}.raw and 20 labels" in result.output
    assert len(asyncio.run(read_all(bootstrap, topics.raw(unique), 20))) == 20


def test_the_examples_in_the_docstrings_hold() -> None:
    import doctest

    import services.demo.data

    found = doctest.testmod(services.demo.data)  # the pure stream carries the examples
    assert found.attempted > 0 and found.failed == 0
