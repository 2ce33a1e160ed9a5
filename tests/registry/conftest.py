"""Real river models registered in a real MLflow store, gate frames, and the running service.

River's Agrawal generator (classification function 1: approval by age and
salary bands) gives models of known, distinct quality on the same held-out
rows: a Hoeffding tree (ROC AUC about 0.75), a logistic regression (about
0.63), and a logistic regression taught inverted labels (about 0.37).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from aiokafka import AIOKafkaConsumer
from river import linear_model, preprocessing, tree
from river.datasets import synth

from schemas.events import ModelCandidate, Window
from schemas.usecase import UseCase
from services.common import tracking
from services.common.health import HealthServer
from services.common.models.river_model import RiverModel
from services.registry.promoter import Registry
from services.registry.service import run
from services.registry.settings import RegistrySettings

START = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = ["salary", "commission", "age", "hvalue", "hyears", "loan"]
TRAIN_ROWS = 600


def agrawal_rows(n: int, seed: int = 7) -> list[tuple[dict[str, float], int]]:
    stream = synth.Agrawal(classification_function=1, seed=seed)
    return [({k: float(x[k]) for k in FEATURES}, int(y)) for x, y in itertools.islice(stream, n)]


ROWS = agrawal_rows(1200)


def gate_frame(rows: list[tuple[dict[str, float], int]] = ROWS) -> pd.DataFrame:
    """Labeled feature rows as the offline store returns them (labels as strings)."""
    return pd.DataFrame(
        [
            {
                **x,
                "label": str(y),
                "event_id": f"e{i:05d}",
                "entity_id": f"c{i % 40}",
                "event_timestamp": START + timedelta(seconds=i),
                "label_timestamp": START + timedelta(seconds=i + 1),
            }
            for i, (x, y) in enumerate(rows)
        ]
    )


def gate_data(spec: UseCase, window: Window | None) -> pd.DataFrame:
    """A ``DRIFTLINE_GATE_DATA`` source (the registry calls it with the spec and window)."""
    return gate_frame()


def make_spec(name: str, **promotion: Any) -> UseCase:
    return UseCase.model_validate(
        {
            "name": name,
            "task": "classification",
            "label": {"classes": [0, 1], "positive": 1},
            "fields": {f: {"type": "float"} for f in FEATURES},
            "features": [{"kind": "passthrough", "field": f} for f in FEATURES],
            "metrics": {"primary": "roc_auc"},
            "promotion": {"margin": 0.02, "min_quality": 0.6, "eval_rows": 400, **promotion},
        }
    )


ESTIMATORS: dict[str, Callable[[], Any]] = {
    "tree": lambda: tree.HoeffdingTreeClassifier(grace_period=50),
    "linear": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
    "inverted": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
}


def train(kind: str) -> RiverModel:
    model = RiverModel(ESTIMATORS[kind](), "classification", classes=[0, 1], positive=1)
    for x, y in ROWS[:TRAIN_ROWS]:
        model.learn_one(x, 1 - y if kind == "inverted" else y)
    return model


def register(
    home: Path,
    spec: UseCase,
    kind: str,
    *,
    reported: float = 0.7,
    window_end: datetime | None = None,
    trainer: str = "batch",
) -> ModelCandidate:
    """Train a river model, register it in MLflow as a new version, describe it as a candidate."""
    client = tracking.client(home)
    experiment = tracking.experiment_id(home, spec.name)
    run_id = client.create_run(experiment, tags={"trainer": trainer}).info.run_id
    client.log_metric(run_id, f"test_{spec.primary_metric}", reported)
    client.log_metric(run_id, spec.primary_metric, reported)
    name = spec.name if trainer == "batch" else f"{spec.name}-online"
    with tempfile.TemporaryDirectory() as scratch:
        model_file = train(kind).save(Path(scratch) / "model")
        version, uri, sha = tracking.register_model_dir(
            client, run_id, name, Path(scratch) / "model", model_file,
            tags={"trainer": trainer, "flavor": "river"},
        )  # fmt: skip
    end = window_end or START + timedelta(seconds=TRAIN_ROWS)
    return ModelCandidate(
        usecase=spec.name,
        model_name=name,
        model_version=version,
        trainer=trainer,  # type: ignore[arg-type]
        flavor="river",
        metrics={spec.primary_metric: reported},
        data_window=Window(start=START, end=end, rows=TRAIN_ROWS),
        artifact_uri=uri,
        artifact_sha256=sha,
        run_id=run_id,
    )


def aliases(home: Path, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in tracking.client(home).get_registered_model(name).aliases.items()}


@dataclass
class Running:
    """A registry service running in the test's event loop."""

    registry: Registry
    frames: list[Window | None] = field(default_factory=list)


@asynccontextmanager
async def running_registry(
    bootstrap: str,
    home: Path,
    spec: UseCase,
    *,
    group: str,
    frame: pd.DataFrame | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Running]:
    settings = RegistrySettings(
        bootstrap=bootstrap, home=home, group_id=group, min_gate_rows=50, poll_timeout_ms=50
    )
    windows: list[Window | None] = []

    def data_source(asked: UseCase, window: Window | None) -> pd.DataFrame:
        if window is None or window.start is None or window.start != window.end:
            windows.append(window)  # not the warm-up's empty window (test_warm_up)
        return (frame if frame is not None else gate_frame()).copy()

    ready: asyncio.Future[Registry] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    health = HealthServer("registry", "127.0.0.1", 0)
    task = asyncio.create_task(
        run(
            settings,
            data_source,
            stop,
            health,
            served={spec.name: spec},
            clock=clock,
            on_ready=ready.set_result,
        )
    )
    try:
        registry = await asyncio.wait_for(asyncio.shield(ready), 60)
        yield Running(registry, windows)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a state that follows events asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def read_topic(
    bootstrap: str, topic: str, keep: Callable[[dict[str, Any]], bool], count: int,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """The first ``count`` messages of ``topic`` that ``keep`` accepts (topics are shared)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    value = json.loads(record.value)
                    if keep(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found
