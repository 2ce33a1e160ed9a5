"""Security checks against real processes: the API key, request size limits, the sha256
check of model artifacts, and that no secret reaches a log line or ``/metrics``.

The inference service and ingestion run as processes at DEBUG level with a
distinctive API key and pseudonym salt; after requests that succeed and
fail (missing and wrong keys, oversized bodies, a tampered promotion, bad
events), neither value may appear in their logs, their answers or their metrics.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas import topics
from schemas.usecase import load_usecase
from services.common.models import load_model
from services.common.models.protocol import ArtifactMismatch
from services.common.models.river_model import RiverModel
from tests.inference.conftest import raw_events, request_fields
from tests.integration.test_ingest_path import valid_events
from tests.reliability.helpers import (
    publish_promotion,
    served_inference,
)
from tests.stack import ROOT, Stack, publish_raw, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "key-" + uuid.uuid4().hex
SALT = "salt-" + uuid.uuid4().hex
SECRETS = (API_KEY, SALT)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret reached {where}"
        assert secret[-12:] not in text, f"part of a secret reached {where}"


def test_api_key_size_limits_sha256_and_no_secret_in_logs(stack: Stack, unique: str) -> None:
    secrets = {"DRIFTLINE_API_KEY": API_KEY, "DRIFTLINE_PSEUDONYM_SALT": SALT}
    debug = {"DRIFTLINE_LOG_LEVEL": "DEBUG", **secrets}
    base, champion = served_inference(stack, unique, **debug)
    stack.start("ingestion", **debug)
    url = f"{base}/v1/predict/{unique}"
    body = {"entity_id": "c1", "features": request_fields(raw_events(1, seed=3)[0][0])}
    answers: list[httpx.Response] = []

    with httpx.Client(timeout=30) as client:
        # The API key: required on /v1/*, compared exactly, never echoed.
        for headers in (
            {},
            {"X-API-Key": ""},
            {"X-API-Key": API_KEY[:-1]},
            {"X-API-Key": API_KEY + "x"},
        ):
            answer = client.post(url, json=body, headers=headers)
            assert answer.status_code == 401, (headers, answer.text)
            answers.append(answer)
        assert client.get(f"{base}/v1/models/{unique}").status_code == 401
        ok = client.post(url, json=body, headers={"X-API-Key": API_KEY})
        assert ok.status_code == 200, ok.text
        answers.append(ok)
        # Probes and scrapers stay open.
        assert client.get(f"{base}/healthz").status_code == 200
        metrics = client.get(f"{base}/metrics")
        assert metrics.status_code == 200
        answers.append(metrics)

        # Request size limits: a declared length, and a streamed body with none.
        key = {"X-API-Key": API_KEY}
        big = {"entity_id": "c1", "features": {"pad": "x" * 1_100_000}}
        assert client.post(url, json=big, headers=key).status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b'{"entity_id": "c1", "features": {"pad": "'
            for _ in range(20):
                yield b"x" * 100_000
            yield b'"}}'

        streamed = client.post(
            url, content=chunks(), headers={**key, "content-type": "application/json"}
        )
        assert streamed.status_code == 413
        # The key check comes before the size check: no key, no reading of a huge body.
        assert client.post(url, json=big).status_code == 401

        # A promotion whose artifact does not match its sha256 is refused.
        tampered = champion.model_copy(
            update={"event_id": uuid.uuid4().hex, "artifact_sha256": "0" * 64}
        )
        publish_promotion(stack.bootstrap, tampered)

        def refusals() -> list[dict[str, object]]:
            return read_topic(stack.bootstrap, topics.deadletter(unique))

        assert wait_until(lambda: bool(refusals()), timeout=60), stack.log("inference")[-3000:]
        letters = refusals()
        assert any("sha256" in str(letter["reason"]) for letter in letters), letters
        models = client.get(f"{base}/v1/models/{unique}", headers=key).json()
        assert models["champion"]["artifact_sha256"] == champion.artifact_sha256

    # Ingestion with the salt: good and bad events, DEBUG logs.
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    events = valid_events(spec, 50)
    raw = [json.dumps(e).encode() for e in events] + [b"{broken", b'{"event_id": 1}']
    publish_raw(stack.bootstrap, topics.raw(unique), raw)
    assert wait_until(
        lambda: len(read_topic(stack.bootstrap, topics.features(unique))) >= len(events), 120
    ), stack.log("ingestion")[-3000:]

    stack.stop_all()  # flush every log line
    for answer in answers:
        assert_no_secret(answer.text, f"an answer of {answer.request.url.path}")
    for service in ("inference", "ingestion"):
        log = stack.log(service)
        assert log, service
        assert_no_secret(log, f"the {service} log")
    for topic in (topics.features(unique), topics.deadletter(unique), topics.predictions(unique)):
        assert_no_secret(json.dumps(read_topic(stack.bootstrap, topic)), topic)


def test_load_model_refuses_an_artifact_whose_sha256_differs(tmp_path: Path) -> None:
    from river import linear_model

    model = RiverModel(linear_model.LogisticRegression(), "classification", classes=[0, 1])
    path = model.save(tmp_path / "model")
    load_model(tmp_path / "model")  # loads without a check
    with pytest.raises(ArtifactMismatch, match="sha256"):
        load_model(tmp_path / "model", "0" * 64)
    from services.common.models import sha256_of

    good = sha256_of(path)
    assert load_model(tmp_path / "model", good) is not None
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactMismatch):
        load_model(tmp_path / "model", good)
