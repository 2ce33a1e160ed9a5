"""The HTTP API on the real stack: answers, errors, limits, feedback, metrics."""

from __future__ import annotations

import pytest

from schemas import topics
from services.common.featurestore import write_features
from services.common.prep.preparer import Preparer
from tests.inference.conftest import Stack, raw_events, read_topic, request_fields

pytestmark = pytest.mark.integration


async def test_predict_with_request_fields(serve, stack: Stack) -> None:
    v1 = stack.models["v1"]
    served = await serve()
    await served.publish(v1.promotion(served.name))
    await until_champion(served)
    event, _ = raw_events(1, seed=99)[0]
    response = await served.predict(
        {"entity_id": "cust-9", "event_id": "ev-1", "features": request_fields(event)}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    expected_features = Preparer(served.spec).prepare(event, learn=False).features
    assert answer["model_version"] == v1.version
    assert answer["variant"] == "champion"
    assert answer["event_id"] == "ev-1"
    assert answer["feature_source"] == "request"
    assert answer["prediction"] == v1.model.predict([expected_features])[0]
    proba = v1.model.predict_proba([expected_features])[0]
    assert answer["probabilities"] == pytest.approx({str(k): v for k, v in proba.items()})
    assert len(answer["prediction_id"]) == 32


async def until_champion(served) -> None:  # type: ignore[no-untyped-def]
    from tests.inference.conftest import until

    await until(lambda: served.service.models.serving(served.name).champion is not None)


async def test_predict_from_online_features_only(serve, stack: Stack) -> None:
    v1 = stack.models["v1"]
    served = await serve()
    await served.publish(v1.promotion(served.name))
    await until_champion(served)
    event, _ = raw_events(1, seed=5)[0]
    row = Preparer(served.spec).prepare({**event, "entity_id": "cust-online"})
    write_features(stack.store, stack.home, served.spec, [row], "part-online")
    response = await served.predict([{"entity_id": "cust-online"}, {"entity_id": "cust-online"}])
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["feature_source"] for a in answers] == ["online", "online"]
    assert answers[0]["prediction"] == v1.model.predict([row.features])[0]
    proba = v1.model.predict_proba([row.features])[0]
    assert answers[0]["probabilities"] == pytest.approx({str(k): v for k, v in proba.items()})


async def test_sdk_and_direct_readers_agree(serve, stack: Stack) -> None:
    from services.inference.features import OnlineReader

    served = await serve()
    rows = [
        Preparer(served.spec).prepare({**event, "entity_id": f"r{i}"})
        for i, (event, _) in enumerate(raw_events(3, seed=11))
    ]
    write_features(stack.store, stack.home, served.spec, rows, "part-readers")
    ids = ["r0", "r1", "r2", "nobody"]
    direct = OnlineReader(stack.store, "direct").read(served.spec, ids)
    sdk = OnlineReader(stack.store, "sdk").read(served.spec, ids)
    assert direct == sdk
    assert direct[3] is None
    assert direct[0] == pytest.approx(rows[0].features)


async def test_422_names_the_field(serve, stack: Stack) -> None:
    served = await serve()
    await served.publish(stack.models["v1"].promotion(served.name))
    await until_champion(served)
    missing = await served.predict({"features": {}})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "entity_id"]
    event, _ = raw_events(1)[0]
    bad = await served.predict(
        [
            {"entity_id": "c1"},
            {"entity_id": "c2", "features": {**request_fields(event), "age": "old"}},
        ]
    )
    assert bad.status_code == 422
    detail = bad.json()["detail"][0]
    assert detail["loc"] == ["body", 1, "features", "age"]
    assert "expected an integer" in detail["msg"]
    unknown = await served.predict({"entity_id": "never-seen", "features": {"age": 30}})
    assert unknown.status_code == 422
    detail = unknown.json()["detail"][0]
    assert detail["loc"] == ["body", "features", "salary"]
    assert "no online features" in detail["msg"] and "'loan'" in detail["msg"]
    extra = await served.predict({"entity_id": "c1", "colour": "red"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "colour"]


async def test_503_before_any_champion_and_404_for_unknown(serve) -> None:
    served = await serve()
    response = await served.predict({"entity_id": "c1"})
    assert response.status_code == 503
    assert response.json()["detail"] == f"no champion for use case {served.name} yet"
    unknown = await served.client.post("/v1/predict/nosuchcase", json={"entity_id": "c1"})
    assert unknown.status_code == 404
    ready = await served.client.get("/readyz")
    assert ready.status_code == 200


async def test_413_for_a_body_over_the_limit(serve) -> None:
    served = await serve(max_body_bytes=2000)
    big = {"entity_id": "c1", "features": {"note": "x" * 3000}}
    assert (await served.predict(big)).status_code == 413

    async def chunks():  # no Content-Length: the body itself is counted
        for _ in range(5):
            yield b" " * 1000

    streamed = await served.client.post(f"/v1/predict/{served.name}", content=chunks())
    assert streamed.status_code == 413
    assert (await served.predict({"entity_id": "c1"})).status_code == 503  # small: passes


async def test_401_with_api_key(serve) -> None:
    served = await serve(api_key="s3cret")
    assert (await served.predict({"entity_id": "c1"})).status_code == 401
    assert (await served.predict({"entity_id": "c1"}, **{"X-API-Key": "wrong"})).status_code == 401
    passed = await served.predict({"entity_id": "c1"}, **{"X-API-Key": "s3cret"})
    assert passed.status_code == 503  # through the guard; no champion yet
    assert (await served.client.get("/healthz")).status_code == 200
    assert "s3cret" not in repr(served.service.settings)


async def test_predictions_and_feedback_reach_their_topics(serve, stack: Stack) -> None:
    v1 = stack.models["v1"]
    served = await serve()
    await served.publish(v1.promotion(served.name))
    await until_champion(served)
    events = raw_events(3, seed=3)
    body = [
        {"entity_id": e["entity_id"], "event_id": e["event_id"], "features": request_fields(e)}
        for e, _ in events
    ]
    answers = (await served.predict(body)).json()
    logged = await read_topic(served.bootstrap, topics.predictions(served.name), 3)
    assert sorted(p.prediction_id for p in logged) == sorted(a["prediction_id"] for a in answers)
    assert {p.source_event_id for p in logged} == {e["event_id"] for e, _ in events}
    assert all(p.model_version == v1.version and p.variant == "champion" for p in logged)
    feedback = [{"event_id": e["event_id"], "label": y} for e, y in events]
    response = await served.client.post(f"/v1/feedback/{served.name}", json=feedback)
    assert response.status_code == 202 and response.json() == {"published": 3}
    labels = await read_topic(served.bootstrap, topics.labels(served.name), 3)
    assert [(x["event_id"], x["label"]) for x in labels] == [(e["event_id"], y) for e, y in events]
    bad = await served.client.post(
        f"/v1/feedback/{served.name}", json={"event_id": "e", "label": 7}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "label"]


async def test_metrics_and_models_endpoint(serve, stack: Stack) -> None:
    v1 = stack.models["v1"]
    served = await serve()
    await served.publish(v1.promotion(served.name))
    await until_champion(served)
    event, _ = raw_events(1)[0]
    await served.predict({"entity_id": "c1", "features": request_fields(event)})
    text = (await served.client.get("/metrics")).text
    assert (
        f'driftline_inference_request_seconds_bucket{{le="0.5",model_version="{v1.version}",'
        f'usecase="{served.name}"}}' in text
    )
    assert (
        f'driftline_inference_predictions_total{{model_version="{v1.version}",'
        f'usecase="{served.name}",variant="champion"}} 1.0' in text
    )
    models = (await served.client.get(f"/v1/models/{served.name}")).json()
    assert models["champion"]["model_version"] == v1.version
    assert models["champion"]["artifact_sha256"] == v1.sha256
    assert models["challenger"] is None
    docs = await served.client.get("/openapi.json")
    assert "/v1/predict/{usecase}" in docs.json()["paths"]


async def test_the_served_app_keeps_the_contract_with_its_guard_in_front(
    serve, stack: Stack
) -> None:
    """``python -m services.inference`` serves the guard outermost: the same answers."""
    v1 = stack.models["v1"]
    served = await serve(front=True, api_key="s3cret", max_body_bytes=4000)
    key = {"X-API-Key": "s3cret"}
    await served.publish(v1.promotion(served.name))
    await until_champion(served)
    event, _ = raw_events(1, seed=99)[0]
    body = {"entity_id": "cust-9", "event_id": "ev-1", "features": request_fields(event)}
    assert (await served.predict(body)).status_code == 401
    answer = await served.predict(body, **key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    expected_features = Preparer(served.spec).prepare(event, learn=False).features
    assert answer.json()["prediction"] == v1.model.predict([expected_features])[0]
    assert answer.json()["feature_source"] == "request"
    many = await served.predict([body, {**body, "event_id": "ev-2"}], **key)
    assert [a["event_id"] for a in many.json()] == ["ev-1", "ev-2"]
    big = {"entity_id": "c1", "features": {"note": "x" * 5000}}
    assert (await served.predict(big, **key)).status_code == 413
    bad = await served.predict({**body, "features": {**body["features"], "age": "old"}}, **key)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "features", "age"]
    flag = await served.client.post(
        f"/v1/predict/{served.name}?explain=maybe", json=body, headers=key
    )
    assert flag.status_code == 422 and flag.json()["detail"][0]["loc"] == ["query", "explain"]
    assert (await served.client.post("/v1/predict/nope", json=body, headers=key)).status_code == 404
    assert (await served.client.get("/healthz")).status_code == 200
    models = await served.client.get(f"/v1/models/{served.name}", headers=key)
    assert models.json()["champion"]["model_version"] == v1.version
    metrics = await served.client.get("/metrics")
    assert "driftline_inference_requests_total" in metrics.text
    assert (await served.client.get("/openapi.json")).status_code == 200
