"""Hot swap, tampered artifacts, canary and shadow routing on the real stack."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from schemas import topics
from schemas.events import DeadLetter, DriftAlert, Prediction
from services.inference.routing import bucket
from tests.inference.conftest import Stack, raw_events, read_topic, request_fields, until

pytestmark = pytest.mark.integration


def body(n: int, seed: int = 1, prefix: str = "cust") -> list[dict[str, Any]]:
    return [
        {
            "entity_id": f"{prefix}-{i}",
            "event_id": f"{prefix}-{seed}-{i}",
            "features": request_fields(e),
        }
        for i, (e, _) in enumerate(raw_events(n, seed=seed))
    ]


async def test_promotion_swaps_model_version_under_load_with_zero_failures(
    serve, stack: Stack
) -> None:
    v1, v2 = stack.models["v1"], stack.models["v2"]
    served = await serve(v1.promotion("unused-usecase"))
    await served.publish(v1.promotion(served.name))
    await until(lambda: served.service.models.serving(served.name).champion is not None)
    statuses: Counter[int] = Counter()
    versions: list[str] = []
    stop = asyncio.Event()
    requests = body(4)

    async def client_loop(worker: int) -> None:
        while not stop.is_set():
            response = await served.predict(requests[worker])
            statuses[response.status_code] += 1
            if response.status_code == 200:
                versions.append(response.json()["model_version"])
            await asyncio.sleep(0)  # in-process transport: let the listener run between requests

    clients = [asyncio.create_task(client_loop(w)) for w in range(4)]
    await until(lambda: len(versions) >= 40)
    await served.publish(v2.promotion(served.name, previous_version=v1.version))
    await until(lambda: versions[-1:] == [v2.version] and versions.count(v2.version) >= 40)
    stop.set()
    await asyncio.gather(*clients)
    assert set(statuses) == {200}, statuses
    first_v2 = versions.index(v2.version)
    assert set(versions[:first_v2]) == {v1.version}
    assert set(versions[first_v2:]) == {v2.version}  # no flapping back once swapped


async def test_tampered_artifact_is_refused_and_old_champion_keeps_serving(
    serve, stack: Stack
) -> None:
    v1, v3 = stack.models["v1"], stack.models["v3"]
    served = await serve(v1.promotion("unused-usecase"))
    await served.publish(v1.promotion(served.name))
    await until(lambda: served.service.models.serving(served.name).champion is not None)
    await served.publish(v3.promotion(served.name, previous_version=v1.version))
    await until(lambda: served.service.models.refusals == 1)
    response = await served.predict(body(1)[0])
    assert response.status_code == 200
    assert response.json()["model_version"] == v1.version
    alerts = [
        a
        for a in await read_topic(served.bootstrap, topics.DRIFT_ALERTS, 1, timeout=5)
        if isinstance(a, DriftAlert) and a.usecase == served.name
    ]
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.kind, alert.severity, alert.method) == ("quality", "critical", "artifact_sha256")
    assert alert.champion_version == v1.version and alert.details["model_version"] == v3.version
    assert "sha256" in str(alert.details["reason"])
    dead = await read_topic(served.bootstrap, topics.deadletter(served.name), 1)
    assert isinstance(dead[0], DeadLetter) and dead[0].topic == topics.MODELS_PROMOTIONS


async def test_replay_at_start_skips_a_tampered_promotion(
    serve, stack: Stack, usecase: str
) -> None:
    v1, v2, v3 = stack.models["v1"], stack.models["v2"], stack.models["v3"]
    served = await serve(
        v1.promotion(usecase),
        v2.promotion(usecase, "canary", traffic_share=0.5),
        v3.promotion(usecase, previous_version=v1.version),
    )
    serving = served.service.models.serving(usecase)
    assert served.service.ready
    assert serving.champion is not None and serving.champion.ref.version == v1.version
    assert serving.challenger is not None and serving.challenger.ref.version == v2.version
    assert served.service.models.refusals == 1


async def test_canary_split_is_sticky_by_entity_and_matches_the_share(
    serve, stack: Stack, usecase: str
) -> None:
    v1, v2 = stack.models["v1"], stack.models["v2"]
    served = await serve(v1.promotion(usecase), v2.promotion(usecase, "canary", traffic_share=0.3))
    requests = body(200, seed=2, prefix="canary")
    first = (await served.predict(requests)).json()
    again = (await served.predict(requests)).json()
    assert [a["variant"] for a in first] == [a["variant"] for a in again]
    for request, answer in zip(requests, first, strict=True):
        challenger = bucket(request["entity_id"]) < 0.3
        assert answer["variant"] == ("challenger" if challenger else "champion")
        assert answer["model_version"] == (v2.version if challenger else v1.version)
    share = sum(a["variant"] == "challenger" for a in first) / len(first)
    assert 0.2 <= share <= 0.4


async def test_shadow_answers_with_champion_and_logs_both(
    serve, stack: Stack, usecase: str
) -> None:
    v1, v2 = stack.models["v1"], stack.models["v2"]
    served = await serve(v1.promotion(usecase), v2.promotion(usecase, "shadow"))
    requests = body(5, seed=4)
    answers = (await served.predict(requests)).json()
    assert {(a["variant"], a["model_version"]) for a in answers} == {("champion", v1.version)}
    logged = await read_topic(served.bootstrap, topics.predictions(usecase), 10)
    assert all(isinstance(p, Prediction) for p in logged)
    by_variant = {
        variant: sorted(p.source_event_id for p in logged if p.variant == variant)
        for variant in ("champion", "shadow")
    }
    assert by_variant["champion"] == by_variant["shadow"] == sorted(r["event_id"] for r in requests)
    assert {p.model_version for p in logged if p.variant == "shadow"} == {v2.version}
    models = (await served.client.get(f"/v1/models/{usecase}")).json()
    assert models["mode"] == "shadow" and models["challenger"]["model_version"] == v2.version
