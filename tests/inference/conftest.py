"""The inference service's test stack: real broker, real MLflow, real Feast, real river models.

One stack per module (MLflow and Feast are slow to create): a home, a Feast
store, and three registered model versions (v1, v2, and v3 whose artifact is
tampered after registration). Each test serves its own use case (a copy of
``usecases/credit.yaml`` under a unique name), so its promotions and topics
are its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from river import compose, linear_model, preprocessing
from river.datasets import synth

from schemas import topics
from schemas.events import Promotion
from schemas.usecase import UseCase, load_usecase
from services.common import tracking
from services.common.bus import ensure_topics, start_consumer, start_producer
from services.common.featurestore import FeatureStoreSettings, definitions, open_store
from services.common.models.river_model import RiverModel
from services.common.prep.preparer import Preparer
from services.common.serde import decode
from services.inference.api import create_app
from services.inference.api import front as served_front
from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "credit-test"


def raw_events(n: int, seed: int = 7, function: int = 0) -> list[tuple[dict[str, Any], int]]:
    """Agrawal loan applications as raw credit events (fields as ingestion receives them)."""
    stream = synth.Agrawal(classification_function=function, seed=seed)
    events = []
    for i, (x, y) in enumerate(itertools.islice(stream, n)):
        event = {k: v for k, v in x.items()}
        event.update(
            event_id=f"e{seed}-{i}", entity_id=f"cust-{i}", timestamp="2026-01-01T00:00:00Z"
        )
        events.append((event, int(y)))
    return events


def request_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The use-case fields of a raw event (what a client sends as ``features``)."""
    return {k: v for k, v in event.items() if k not in ("event_id", "entity_id", "timestamp")}


def train(spec: UseCase, function: int) -> RiverModel:
    preparer = Preparer(spec)
    model = RiverModel(
        compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
        "classification",
        classes=[0, 1],
        positive=1,
    )
    for event, label in raw_events(300, seed=function + 1, function=function):
        model.learn_one(preparer.prepare(event).features, label)
    return model


@dataclass(frozen=True)
class Registered:
    version: str
    artifact_uri: str
    sha256: str
    model: RiverModel

    def promotion(self, usecase: str, action: str = "promote", **extra: Any) -> Promotion:
        return Promotion(
            usecase=usecase,
            action=action,  # type: ignore[arg-type]
            model_name=MODEL_NAME,
            model_version=self.version,
            artifact_uri=self.artifact_uri,
            artifact_sha256=self.sha256,
            reason="test",
            **extra,
        )


@dataclass
class Stack:
    home: Path
    base_spec: UseCase
    store: Any
    models: dict[str, Registered]

    def spec(self, name: str) -> UseCase:
        spec = self.base_spec.model_copy(update={"name": name})
        self.store.apply(definitions([spec], self.home))
        return spec


def _register(home: Path, model: RiverModel, scratch: Path) -> Registered:
    version, uri, sha = tracking.register_model(home, model, MODEL_NAME, scratch)
    return Registered(version, uri, sha, model)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("inference") / "home"
    home.mkdir()
    base = load_usecase(ROOT / "usecases" / "credit.yaml")
    store = open_store(FeatureStoreSettings(home=home), [base])
    scratch = home / "scratch"
    models = {
        "v1": _register(home, train(base, 0), scratch),
        "v2": _register(home, train(base, 2), scratch),
        "v3": _register(home, train(base, 4), scratch),
    }
    # Tamper with v3's artifact after its sha256 was recorded.
    tampered = Path(urlparse(models["v3"].artifact_uri).path) / RiverModel.FILENAME
    tampered.write_bytes(tampered.read_bytes() + b"tampered")
    yield Stack(home, base, store, models)


@pytest.fixture
def usecase(unique: str) -> str:
    return unique


@dataclass
class Served:
    spec: UseCase
    service: InferenceService
    client: httpx.AsyncClient
    bootstrap: str

    @property
    def name(self) -> str:
        return self.spec.name

    async def publish(self, *promotions: Promotion) -> None:
        await publish(
            self.bootstrap, topics.MODELS_PROMOTIONS, [p.model_dump_json() for p in promotions]
        )

    async def predict(self, body: Any, **headers: str) -> httpx.Response:
        return await self.client.post(f"/v1/predict/{self.name}", json=body, headers=headers)


async def publish(bootstrap: str, topic: str, values: list[str]) -> None:
    await ensure_topics(bootstrap, [topic])
    producer = await start_producer(bootstrap)
    try:
        for value in values:
            await producer.send(topic, value.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """At least ``expected`` events of ``topic`` (from its beginning), parsed."""
    consumer = await start_consumer(bootstrap, [topic], None)
    events: list[Any] = []
    try:
        await consumer.seek_to_beginning()
        deadline = asyncio.get_running_loop().time() + timeout
        while len(events) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    value = json.loads(record.value)
                    events.append(
                        decode(record.topic, record.value) if "event_type" in value else value
                    )
    finally:
        await consumer.stop()
    return events


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def serve(stack: Stack, bootstrap: str, usecase: str) -> AsyncIterator[Any]:
    """Start an inference service for a fresh use case: ``await serve(*promotions, **settings)``."""
    started: list[Served] = []

    async def start(*before: Promotion, front: bool = False, **overrides: Any) -> Served:
        """``front``: the app as ``python -m services.inference`` serves it (guard outermost)."""
        spec = stack.spec(usecase)
        if before:
            await publish(
                bootstrap, topics.MODELS_PROMOTIONS, [p.model_dump_json() for p in before]
            )
        settings = InferenceSettings(
            bootstrap=bootstrap,
            home=stack.home,
            poll_timeout_ms=50,
            prediction_linger_ms=5,
            **overrides,
        )
        service = InferenceService(settings, {spec.name: spec}, store=stack.store)
        await service.start()
        app: Any = create_app(service, manage=False, guard_inside=not front)
        if front:
            app = served_front(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        served = Served(spec, service, client, bootstrap)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.client.aclose()
        await served.service.stop()
