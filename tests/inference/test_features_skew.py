"""Serving computes what ingestion computes: one raw event, through ``<uc>.raw`` and as a request.

The use case is credit with its optional ``commission`` imputed by a running
median, so a request that lacks it is imputed from ingestion's statistics.
Ingestion runs its real service body (consume loop, SQLite record, statistics
publisher) with a home of its own, as in the production profile where the
two services share no ``DRIFTLINE_HOME``; inference follows ``<uc>.stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas import topics
from schemas.events import FeatureRow
from schemas.usecase import UseCase, load_usecase
from services.common.featurestore import definitions
from services.common.health import HealthServer
from services.common.prep.preparer import Preparer
from services.inference.api import create_app
from services.inference.features import FeatureResolver, Item
from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings
from services.inference.stats import StatisticsFollower
from services.ingestion import service as ingestion
from tests.inference.conftest import (
    ROOT,
    Stack,
    publish,
    raw_events,
    read_topic,
    request_fields,
    until,
)
from tests.inference.test_stats_merge import publish_snapshots

pytestmark = pytest.mark.integration

LEARNED = 300  # events ingestion learns its statistics from before the probes


def median_commission_usecase(directory: Path, name: str) -> UseCase:
    """credit, with ``commission`` optional and imputed by its running median."""
    document = yaml.safe_load((ROOT / "usecases" / "credit.yaml").read_text())
    commission = document["fields"]["commission"]
    commission.pop("fill")
    commission.update(impute="median", required=False)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_usecase(path)


@contextlib.asynccontextmanager
async def ingesting(settings: ingestion.IngestionSettings) -> AsyncIterator[None]:
    """The ingestion service's body, running in this event loop."""
    stop = asyncio.Event()
    body = asyncio.create_task(
        ingestion.serve(settings, stop, HealthServer("ingestion", "127.0.0.1", 0))
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(body, 30)


async def ingested_rows(
    bootstrap: str, usecase: str, event_ids: set[str]
) -> dict[str, dict[str, float]]:
    """The features ingestion wrote for each of ``event_ids``, by event id."""
    rows: list[FeatureRow] = await read_topic(
        bootstrap, topics.features(usecase), LEARNED + len(event_ids)
    )
    return {row.source_event_id: row.features for row in rows if row.source_event_id in event_ids}


async def test_a_raw_event_and_a_request_get_the_same_features(
    stack: Stack, bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = median_commission_usecase(tmp_path / "usecases", unique)
    stack.store.apply(definitions([spec], stack.home))
    v1 = stack.models["v1"]
    await publish(bootstrap, topics.MODELS_PROMOTIONS, [v1.promotion(unique).model_dump_json()])
    learned = raw_events(LEARNED, seed=11)
    probe, _ = raw_events(1, seed=12)[0]
    full = {**probe, "event_id": "probe-full", "entity_id": "cust-probe-full"}
    missing = {**probe, "event_id": "probe-missing", "entity_id": "cust-probe-missing"}
    del missing["commission"]
    default = Preparer(spec).prepare(missing, learn=False).features  # no statistics yet

    service = InferenceService(
        InferenceSettings(bootstrap=bootstrap, home=stack.home, poll_timeout_ms=50),
        {unique: spec},
        store=stack.store,
    )
    app = create_app(service, manage=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    settings = ingestion.IngestionSettings(
        bootstrap=bootstrap,
        home=tmp_path / "ingestion-home",  # not inference's home
        usecases_dir=tmp_path / "usecases",
        group_prefix=unique,
        stats_publish_seconds=0.2,
    )
    try:
        async with ingesting(settings):
            # A fresh log: no statistics published yet, the spec's fallback is imputed.
            await service.start()
            resolver = service.resolvers[unique]
            before = resolver.resolve([Item(missing["entity_id"], None, request_fields(missing))])
            assert before[0].features == default

            await publish(bootstrap, topics.raw(unique), [json.dumps(e) for e, _ in learned])
            # Refreshed without a restart, from a snapshot of ingestion's statistics.
            await until(lambda: resolver.preparer.rows == LEARNED, timeout=60)
            await until(lambda: service.models.serving(unique).champion is not None)
            answers: dict[str, dict[str, Any]] = {}
            for event in (missing, full):
                body = {
                    "entity_id": event["entity_id"],
                    "event_id": event["event_id"],
                    "features": request_fields(event),
                }
                response = await client.post(f"/v1/predict/{unique}", json=body)
                assert response.status_code == 200, response.text
                answers[event["event_id"]] = response.json()
            served = resolver.resolve(
                [Item(e["entity_id"], e["event_id"], request_fields(e)) for e in (missing, full)]
            )

            # The same two events through <uc>.raw, the missing one first: both are
            # featurized with the statistics of the LEARNED events before them.
            await publish(bootstrap, topics.raw(unique), [json.dumps(missing), json.dumps(full)])
            ingested = await ingested_rows(bootstrap, unique, {"probe-missing", "probe-full"})
    finally:
        await client.aclose()
        await service.stop()

    assert ingested["probe-missing"] == served[0].features
    assert ingested["probe-full"] == served[1].features
    # The imputed commission is ingestion's running median, not the spec's fallback.
    assert served[0].features["commission_z"] != default["commission_z"]
    assert {k: v for k, v in default.items() if k != "commission_z"} == {
        k: v for k, v in served[0].features.items() if k != "commission_z"
    }
    for event_id, features in ingested.items():
        answer = answers[event_id]
        assert answer["feature_source"] == "request"
        assert answer["model_version"] == v1.version
        proba = v1.model.predict_proba([features])[0]
        assert answer["probabilities"] == {str(k): float(v) for k, v in proba.items()}


async def test_a_snapshot_that_does_not_fit_is_skipped_and_the_held_one_kept(
    stack: Stack, bootstrap: str, unique: str, tmp_path: Path
) -> None:
    spec = median_commission_usecase(tmp_path / "usecases", unique)
    ingested = Preparer(spec)
    for event, _ in raw_events(50, seed=13):
        ingested.prepare(event)
    resolver = FeatureResolver(spec, None)
    follower = StatisticsFollower(bootstrap, {unique: resolver}, refresh_seconds=0.05)
    await follower.start()  # an empty topic: nothing to apply
    try:
        assert follower.applied == 0 and resolver.preparer.rows == 0
        key = f"{unique}/0"  # ingestion's key: the raw partition's snapshot
        await publish_snapshots(bootstrap, unique, [(key, json.dumps(ingested.state()))])
        await until(lambda: resolver.preparer.rows == 50)
        other = {**ingested.state(), "usecase": "another", "rows": 7}
        await publish_snapshots(bootstrap, unique, [(key, "not json"), (key, json.dumps(other))])
        await publish_snapshots(bootstrap, unique, [(key, "[1, 2]")])
        await asyncio.sleep(0.5)  # ten refreshes over the records that do not fit
    finally:
        await follower.stop()
    assert follower.applied == 1
    assert resolver.preparer.state() == ingested.state()
