"""Every service's small HTTP surface."""

from __future__ import annotations

import httpx
from prometheus_client import Counter

from services.common.health import HealthServer

SEEN = Counter("driftline_test_health_seen", "a counter only this test increments")


async def test_health_ready_and_metrics() -> None:
    ready = False
    server = HealthServer("probe", "127.0.0.1", 0, ready=lambda: ready)
    port = await server.start()
    SEEN.inc(3)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/healthz")
            assert health.json() == {"status": "ok", "service": "probe"}
            assert (await client.get("/readyz")).status_code == 503
            ready = True
            assert (await client.get("/readyz")).status_code == 200
            metrics = await client.get("/metrics")
            assert "driftline_test_health_seen_total 3.0" in metrics.text
    finally:
        await server.stop()
