"""Small builders the reliability tests share: a registered river model and its promotion."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from river import compose, linear_model, preprocessing
from river.datasets import synth

from schemas import topics
from schemas.events import Promotion
from schemas.usecase import UseCase, load_usecase
from services.common import tracking
from services.common.broker import free_port, port_open
from services.common.bus import ensure_topics, start_producer
from services.common.models.river_model import RiverModel
from services.common.prep.preparer import Preparer
from tests.stack import Stack, wait_until


def credit_events(n: int, seed: int = 7, prefix: str = "e") -> list[tuple[dict[str, Any], int]]:
    """Agrawal loan applications as raw credit events, with their labels."""
    stream = synth.Agrawal(classification_function=0, seed=seed)
    events = []
    for i, (x, y) in enumerate(itertools.islice(stream, n)):
        event = dict(x)
        event.update(
            event_id=f"{prefix}{seed}-{i}",
            entity_id=f"cust-{i}",
            timestamp="2026-01-01T00:00:00Z",
        )
        events.append((event, int(y)))
    return events


def request_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The use-case fields of a raw event (what a client sends as ``features``)."""
    return {k: v for k, v in event.items() if k not in ("event_id", "entity_id", "timestamp")}


def register_credit_model(home: Path, spec: UseCase, model_name: str) -> Promotion:
    """Train a small river classifier, register it in the MLflow store under ``home``,
    and return the promotion that makes it the champion of ``spec``."""
    preparer = Preparer(spec)
    model = RiverModel(
        compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
        "classification",
        classes=[0, 1],
        positive=1,
    )
    for event, label in credit_events(200, seed=1):
        model.learn_one(preparer.prepare(event).features, label)
    client = tracking.client(home)
    run_id = client.create_run(tracking.experiment_id(home, model_name)).info.run_id
    directory = home / "scratch" / uuid.uuid4().hex
    path = model.save(directory)
    version, uri, sha = tracking.register_model_dir(client, run_id, model_name, directory, path)
    return Promotion(
        usecase=spec.name,
        action="promote",
        model_name=model_name,
        model_version=version,
        artifact_uri=uri,
        artifact_sha256=sha,
        reason="reliability test",
    )


async def send_promotion(bootstrap: str, promotion: Promotion) -> None:
    """Publish one promotion to ``models.promotions`` and wait for the acknowledgement."""
    await ensure_topics(bootstrap, [topics.MODELS_PROMOTIONS])
    producer = await start_producer(bootstrap)
    try:
        await producer.send_and_wait(topics.MODELS_PROMOTIONS, promotion.model_dump_json().encode())
    finally:
        await producer.stop()


def publish_promotion(bootstrap: str, promotion: Promotion) -> None:
    asyncio.run(send_promotion(bootstrap, promotion))


class RedisServer:
    """A real redis-server on a loopback port, no persistence (for the production profile)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def served_inference(stack: Stack, usecase: str, **env: str) -> tuple[str, Promotion]:
    """Start the inference service as a process serving ``usecase`` (already copied into the
    stack's use-case folder) with a champion; return its base URL and the promotion."""
    spec = load_usecase(Path(stack.env["DRIFTLINE_USECASES_DIR"]) / f"{usecase}.yaml")
    promotion = register_credit_model(stack.home, spec, f"{usecase}-model")
    publish_promotion(stack.bootstrap, promotion)
    port = free_port()
    stack.start("inference", DRIFTLINE_PORT=str(port), DRIFTLINE_USECASES=usecase, **env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(ready, timeout=120), stack.log("inference")[-3000:]
    return base, promotion
