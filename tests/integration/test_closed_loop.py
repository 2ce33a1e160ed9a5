"""Issue 7's end-to-end test: the loop closes by itself on the embedded stack.

Every service runs as its own process against the real broker, with real
Feast, MLflow, river, torch and evidently. A seeded credit stream drifts
partway; the test asserts, in order, a data-drift alert, a training request
naming it, a batch candidate for that request, its promotion, and the
inference service answering with the new version — and that on post-drift
data the new champion beats the old one.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas import topics
from schemas.events import ModelCandidate, Promotion
from schemas.usecase import UseCase, load_usecase
from services.cli.demo import stream_demo
from services.common import metrics, tracking
from services.common.broker import free_port
from services.common.errors import InvalidInput
from services.common.models import load_model
from services.common.prep import Preparer
from services.demo.data import demo_events
from tests.stack import ROOT, Stack, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = [
    "ingestion",
    "features",
    "online_trainer",
    "batch_trainer",
    "registry",
    "drift_detector",
    "inference",
]
EVENTS, DRIFT_AT, RATE, SEED = 9000, 1500, 60.0, 11


def fast_credit(directory: Path, name: str) -> Path:
    """The credit use case, tuned so the whole story fits in a few minutes."""
    spec = yaml.safe_load((ROOT / "usecases" / "credit.yaml").read_text())
    spec["models"]["online"].update(
        snapshot_every_rows=600, snapshot_every_seconds=600, drift_detector="none"
    )
    spec["models"]["batch"].update(
        min_rows=300, max_epochs=25, patience=4, tuning={"trials": 2, "timeout_seconds": 30}
    )
    spec["promotion"].update(
        mode="direct", margin=0.0, eval_rows=300, accept_online_candidates="until_champion"
    )
    spec["drift"].update(
        window_rows=300, step_rows=150, reference_rows=600, min_rows=150, cooldown_seconds=30
    )
    spec["demo"]["label_delay_seconds"] = 0.5
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def of(usecase: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("usecase") == usecase]


def score(
    spec: UseCase, promotion: Promotion, sample: tuple[list[dict[str, Any]], list[Any]], home: Path
) -> float:
    """The primary metric of a promoted model (its sha256 checked) on raw events."""
    events, labels = sample
    directory = tracking.download_model_dir(
        tracking.client(home), promotion.artifact_uri or "", home / "scored" / promotion.event_id
    )
    model = load_model(directory, promotion.artifact_sha256)
    preparer = Preparer(spec)
    rows = [preparer.prepare(event, learn=False).features for event in events]
    probabilities = model.predict_proba(rows)
    classes = list(spec.label.classes or [])
    result = metrics.classification_metrics(
        labels,
        model.predict(rows),
        probabilities,
        classes,
        spec.positive_class,
    )
    return float(result[spec.primary_metric])


def post_drift_sample(spec: UseCase) -> tuple[list[dict[str, Any]], list[Any]]:
    preparer = Preparer(spec)
    events, labels = [], []
    for item in demo_events(spec, events=DRIFT_AT + 1500, seed=SEED + 1, drift_at=DRIFT_AT):
        if not item.drifted:
            continue
        try:
            preparer.prepare(item.event, learn=False)
        except InvalidInput:
            continue
        events.append(item.event)
        labels.append(item.label["label"])
    return events, labels


def test_drift_to_retrained_champion_closes_by_itself(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    usecases = tmp_path / "usecases"
    spec = load_usecase(fast_credit(usecases, unique))
    stack = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        # Inference first, on its port, before the others take ephemeral ports.
        stack.start("inference", DRIFTLINE_PORT=str(port), DRIFTLINE_HEALTH_PORT="0")
        assert wait_until(lambda: _ready(url), timeout=180), stack.log("inference")[-3000:]
        for service in SERVICES:
            extra = {"DRIFTLINE_HEALTH_PORT": "0"}
            if service == "inference":
                continue
            if service == "drift_detector":
                extra["DRIFTLINE_PERFORMANCE_TOLERANCE"] = "1.0"  # let data drift lead
            stack.start(service, **extra)

        streamer = threading.Thread(
            target=lambda: asyncio.run(
                stream_demo(
                    bootstrap, spec, events=EVENTS, rate=RATE, seed=SEED,
                    drift_at=DRIFT_AT, label_delay=None, predict_url=url,
                )
            ),
            daemon=True,
        )  # fmt: skip
        streamer.start()

        def promoted_batch() -> list[dict[str, Any]]:
            promotions = of(unique, read_topic(bootstrap, topics.MODELS_PROMOTIONS, idle=0.5))
            return [p for p in promotions if p["action"] == "promote" and p["model_name"] == unique]

        assert wait_until(lambda: bool(promoted_batch()), timeout=420, interval=3), "\n".join(
            stack.log(s)[-1500:] for s in ("drift_detector", "registry", "batch_trainer")
        )

        alerts = of(unique, read_topic(bootstrap, topics.DRIFT_ALERTS))
        requests = of(unique, read_topic(bootstrap, topics.TRAINING_REQUESTS))
        candidates = of(unique, read_topic(bootstrap, topics.MODELS_CANDIDATES))
        promotions = [
            Promotion.model_validate(p)
            for p in of(unique, read_topic(bootstrap, topics.MODELS_PROMOTIONS))
        ]

        data_alerts = {a["alert_id"]: a for a in alerts if a["kind"] == "data"}
        assert data_alerts, "no data drift alert"
        request = next(r for r in requests if r["alert_id"] in data_alerts)
        alert = data_alerts[request["alert_id"]]
        assert request["reason"] == "drift"
        candidate = ModelCandidate.model_validate(
            next(c for c in candidates if c.get("training_request_id") == request["request_id"])
        )
        assert candidate.trainer == "batch" and candidate.baseline_metrics
        promotion = next(
            p for p in promotions
            if p.action == "promote" and p.model_version == candidate.model_version
            and p.model_name == candidate.model_name
        )  # fmt: skip
        first = next(p for p in promotions if p.action == "promote")
        assert first.model_name == f"{unique}-online"  # the online model was the first champion
        assert (
            alert["occurred_at"]
            <= request["occurred_at"]
            <= candidate.occurred_at.isoformat().replace("+00:00", "Z")
        )
        assert candidate.occurred_at <= promotion.occurred_at

        # The inference service answers with the new champion, without a restart.
        def serving_new() -> bool:
            answer = httpx.post(
                f"{url}/v1/predict/{unique}",
                json={"entity_id": "cust-00001", "features": _fields(spec)},
                timeout=5,
            )
            body = answer.json()
            item = body[0] if isinstance(body, list) else body
            return (
                answer.status_code == 200
                and item.get("model_version") == candidate.model_version
                and item.get("model_name") == unique
            )

        assert wait_until(serving_new, timeout=60), stack.log("inference")[-2000:]

        # On post-drift data the new champion beats the old one.
        sample = post_drift_sample(spec)
        new, old = (
            score(spec, promotion, sample, stack.home),
            score(spec, first, sample, stack.home),
        )
        assert new > old, f"new champion {new:.3f} vs old {old:.3f} on post-drift data"
    finally:
        stack.stop_all()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200  # inference's own
    except httpx.HTTPError:
        return False


def _fields(spec: UseCase) -> dict[str, Any]:
    item = next(iter(demo_events(spec, events=1, seed=99)))
    return {name: item.event[name] for name in spec.fields if name in item.event}
