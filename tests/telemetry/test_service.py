"""The telemetry service as a process on the real broker: windows, story, actions, recovery."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from schemas.events import DeadLetter, DriftAlert, Prediction, Promotion, TrainingRequest, Window
from services.common.broker import free_port
from services.common.bus import ensure_topics
from services.telemetry.layout import Layout, partition_counts, source_topics
from tests.common.test_epoch import topic_configs
from tests.stack import Stack, publish_raw, read_topic, wait_until

pytestmark = pytest.mark.integration


def start_telemetry(stack: Stack, port: int, **env: str) -> None:
    stack.start("telemetry", DRIFTLINE_CONSOLE_PORT=str(port), **env)
    assert wait_until(lambda: document(port) is not None, 90), stack.tail("telemetry")


def document(port: int) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/telemetry", timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def feed(bootstrap: str, uc: str, home: Path) -> None:
    """A small loop's worth of events on every topic the service reads."""
    raw = [json.dumps({"event_id": f"e{i}"}).encode() for i in range(30)]
    publish_raw(bootstrap, topics.raw(uc), raw)
    predictions = [
        Prediction(
            usecase=uc, source_event_id=f"e{i}", entity_id=f"c{i}", model_name=uc,
            model_version="1", variant="champion", prediction=i % 2,
            probabilities={"0": 1 - 0.1 * (i % 10), "1": 0.1 * (i % 10)}, latency_ms=1.0 + i,
        ).model_dump_json().encode()
        for i in range(10)
    ]  # fmt: skip
    publish_raw(bootstrap, topics.predictions(uc), predictions)
    labels = [json.dumps({"event_id": f"e{i}", "label": i % 2}).encode() for i in range(10)]
    publish_raw(bootstrap, topics.labels(uc), labels)
    dead = [
        DeadLetter(
            usecase=uc, service="ingestion", payload="{}", topic=topics.raw(uc),
            reason=f"field 'age': expected an integer in [18, 100], got {500 + i}",
        ).model_dump_json().encode()
        for i in range(2)
    ]  # fmt: skip
    publish_raw(bootstrap, topics.deadletter(uc), dead)
    first = Promotion(usecase=uc, action="promote", model_name=uc, model_version="1", reason="go")
    publish_raw(bootstrap, topics.MODELS_PROMOTIONS, [first.model_dump_json().encode()])
    report = home / "drift_detector" / "reports" / uc / "data-a1.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html><body>evidently report</body></html>")
    alert = DriftAlert(
        usecase=uc, alert_id="a1", kind="data", severity="critical", method="ks",
        window=Window(rows=500), drift_share=0.5, report_path=str(report),
    )  # fmt: skip
    publish_raw(bootstrap, topics.DRIFT_ALERTS, [alert.model_dump_json().encode()])
    request = TrainingRequest(usecase=uc, reason="drift", alert_id="a1")
    publish_raw(bootstrap, topics.TRAINING_REQUESTS, [request.model_dump_json().encode()])


async def partitions_of(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


def settled(port: int, uc: str) -> dict[str, Any] | None:
    doc = document(port)
    view = doc.get(uc) if doc else None
    if view is None or view["throughput"]["raw"]["seen"] < 30 or not view["timeline"]:
        return None
    # The series holds whole seconds only: the one still arriving is left out.
    if sum(view["throughput"]["raw"]["series"]) < 30:
        return None
    if view["predictions_by_variant"].get("champion") != 10 or len(view["timeline"]) < 3:
        return None
    return view if view["models"]["live"].get("champion", {}).get("joined") == 10 else None


def test_windows_story_actions_and_recovery(stack: Stack, unique: str, bootstrap: str) -> None:
    asyncio.run(ensure_topics(bootstrap, topics.all_topics([unique])))
    port = free_port()
    start_telemetry(stack, port)
    feed(bootstrap, unique, stack.home)
    assert wait_until(lambda: settled(port, unique) is not None, 60), (
        document(port),
        stack.tail("telemetry"),
    )
    view = settled(port, unique)
    assert view is not None
    assert sum(view["throughput"]["raw"]["series"]) == 30  # the 1 s tumbling windows
    dead = view["deadletters"]
    assert dead["last_minute"] == 2 and dead["share_of_raw"] == pytest.approx(2 / 30)
    assert dead["top_reasons"] == [["ingestion: field 'age': expected an integer in [N, N]", 2]]
    latency = view["latency_ms"]  # 1..10 ms: the median bucket holds 5 ms, within 25 %
    assert latency["count"] == 10 and 5.0 <= latency["p50"] <= 6.25 and latency["p99"] >= 10
    assert view["models"]["champion"]["label"] == f"{unique} v1"
    assert view["models"]["live"]["champion"]["metrics"]["accuracy"] == 1.0
    assert [m["kind"] for m in view["timeline"]] == ["champion", "drift", "request"]
    report = httpx.get(f"http://127.0.0.1:{port}{view['alerts'][0]['report']}")
    assert report.status_code == 200 and "evidently report" in report.text

    # The changelog topics exist with the partitions faust expects (driftline made them):
    # each its source topics' count (the global topics' is whatever made them first).
    app_id = f"{stack.env['DRIFTLINE_GROUP_PREFIX']}-telemetry"
    layout = Layout(asyncio.run(partition_counts(bootstrap, source_topics([unique]))))
    wanted = layout.changelogs(app_id)
    assert f"{app_id}-throughput-p1-changelog" in wanted
    assert asyncio.run(partitions_of(bootstrap, list(wanted))) == wanted
    # ... and with the cleanup faust gives them: compacted, windows deleted once expired.
    configs = asyncio.run(topic_configs(bootstrap, list(wanted)))
    for name, expected in layout.changelog_configs(app_id).items():
        assert {k: configs[name][k] for k in expected} == expected, name

    # The retrain button's request: the event `driftline retrain` publishes.
    answer = httpx.post(f"http://127.0.0.1:{port}/api/{unique}/retrain").json()
    requests = read_topic(bootstrap, topics.TRAINING_REQUESTS)
    mine = [r for r in requests if r["event_id"] == answer["event_id"]]
    assert mine and mine[0]["usecase"] == unique and mine[0]["reason"] == "manual"
    # Counts reach the tables (and their changelogs) at most every 0.5 s, at the next
    # event of the streams: the burst above is written when one more arrives after it.
    time.sleep(0.6)
    publish_raw(bootstrap, topics.raw(unique), [json.dumps({"event_id": "e30"}).encode()])
    changelog = f"{app_id}-throughput-p1-changelog"
    assert wait_until(lambda: len(read_topic(bootstrap, changelog, idle=0.5)) >= 1, 30)
    refused = httpx.post(f"http://127.0.0.1:{port}/api/{unique}/promote")
    assert refused.status_code == 409  # no challenger on trial

    # SIGKILL, then a start with an API key: the story comes back from the changelogs.
    stack.kill("telemetry")
    start_telemetry(stack, port, DRIFTLINE_API_KEY="s3cret")
    deadline = time.monotonic() + 30
    view = None
    while time.monotonic() < deadline:
        view = (document(port) or {}).get(unique)
        if view and view["models"]["champion"] and len(view["timeline"]) >= 3:
            break
        time.sleep(0.5)
    assert view is not None and view["models"]["champion"]["label"] == f"{unique} v1", view
    assert "recovered" in stack.log("telemetry")
    url = f"http://127.0.0.1:{port}/api/{unique}/rollback"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"X-API-Key": "wrong"}).status_code == 401
    # With the key, rollback of a lone champion has nothing to go back to.
    assert httpx.post(url, headers={"X-API-Key": "s3cret"}).status_code == 409
