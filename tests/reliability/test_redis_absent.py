"""Redis absent in the production profile: inference answers 503 with the reason, then recovers.

The inference service runs with ``DRIFTLINE_FEAST_PROFILE=production`` and its
online store (Redis) at a loopback port where nothing listens. A request that
carries every field is scored from the request alone; one that needs the
entity's online features must be answered 503 naming the online store, not
500. Once a real redis-server comes up on that port, the same request is
answered from the online store without restarting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from schemas.events import FeatureRow
from schemas.usecase import load_usecase
from services.common import featurestore
from services.common.broker import free_port
from services.common.prep.preparer import Preparer
from services.inference.api import create_app
from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings
from tests.inference.conftest import raw_events, request_fields
from tests.reliability import tally
from tests.reliability.helpers import (
    RedisServer,
    register_credit_model,
    send_promotion,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_predict_needing_online_features_is_503_while_redis_is_down_then_recovers(
    bootstrap: str, unique: str, home: Path, tmp_path: Path
) -> None:
    spec = load_usecase(ROOT / "usecases" / "credit.yaml").model_copy(update={"name": unique})
    await send_promotion(bootstrap, register_credit_model(home, spec, f"{unique}-model"))
    redis_port = free_port()
    settings = InferenceSettings(
        bootstrap=bootstrap,
        home=home,
        feast_profile="production",
        redis_url=f"127.0.0.1:{redis_port}",
        poll_timeout_ms=50,
        prediction_linger_ms=5,
    )
    service = InferenceService(settings, {spec.name: spec})
    await service.start()
    redis = RedisServer(redis_port, tmp_path / "redis.log")
    app = create_app(service, manage=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    try:
        assert service.models.champion(spec.name) is not None
        event, _ = raw_events(1, seed=11)[0]
        url = f"/v1/predict/{spec.name}"

        # Every field in the request: no online read, scored while Redis is down.
        full = await client.post(url, json={"entity_id": "c1", "features": request_fields(event)})
        assert full.status_code == 200, full.text
        assert full.json()["feature_source"] == "request"

        # Only the entity: the online store is needed and unreachable. The service
        # answers with an error and stays up (checked by the recovery below).
        down = await client.post(url, json={"entity_id": "c1"})
        assert down.status_code >= 500, (down.status_code, down.text)

        # Redis comes up; the entity's row is pushed; the same request is answered.
        redis.start()
        row = Preparer(spec).prepare({**event, "entity_id": "c1"})
        assert isinstance(row, FeatureRow)
        row = row.model_copy(update={"event_timestamp": datetime.now(UTC)})
        featurestore.write_features(service.store, home, spec, [row], "reliability-redis")
        up = await client.post(url, json={"entity_id": "c1"})
        assert up.status_code == 200, up.text
        assert up.json()["feature_source"] == "online"
        tally.add("faults_injected")
        tally.add("faults_survived")
        assert up.json()["model_version"] == service.models.champion(spec.name).champion.ref.version
    finally:
        await client.aclose()
        await service.stop()
        redis.stop()
    assert down.status_code == 503, down.text
    reason = str(down.json()["detail"]).lower()
    assert "redis" in reason or "online" in reason, reason
