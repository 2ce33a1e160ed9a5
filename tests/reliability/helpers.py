"""Small builders the reliability tests share: a registered river model and its promotion."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import yaml

from schemas import topics
from schemas.events import FeatureRow, Promotion
from schemas.inputs import Label
from schemas.usecase import UseCase, load_usecase
from services.common import dataset, featurestore, tracking
from services.common.broker import free_port, port_open
from services.common.bus import ensure_topics, start_producer
from services.common.promotions.history import ModelRef
from tests.inference.conftest import train
from tests.stack import Stack, wait_until


def registered_credit_ref(home: Path, model_name: str) -> tuple[UseCase, ModelRef, str]:
    """The credit use case, the reference a loader is given for a model registered as its
    champion under ``home`` (:func:`register_credit_model`), and the model's sha256."""
    spec = load_usecase(Path(__file__).resolve().parents[2] / "usecases" / "credit.yaml")
    promotion = register_credit_model(home, spec, model_name)
    assert promotion.artifact_uri is not None and promotion.artifact_sha256 is not None
    ref = ModelRef(model_name, promotion.model_version, promotion.artifact_uri,
                   promotion.artifact_sha256)  # fmt: skip
    return spec, ref, promotion.artifact_sha256


def register_credit_model(home: Path, spec: UseCase, model_name: str) -> Promotion:
    """Train a small river classifier, register it in the MLflow store under ``home``,
    and return the promotion that makes it the champion of ``spec``."""
    model = train(spec, function=0)
    scratch = home / "scratch"
    return tracking.register_champion(
        home, spec.name, model, model_name, scratch, reason="reliability test"
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
    wait_ready(stack, base)
    return base, promotion


def wait_ready(stack: Stack, base: str, log: str = "inference", timeout: float = 120) -> None:
    """Wait until the inference service at ``base`` answers ``/readyz`` with 200.

    On time out the assertion shows the end of ``log`` (the process's log name).
    """

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(ready, timeout=timeout), f"{base} not ready:\n{stack.tail(log, 3000)}"


def spec_stack(bootstrap: str, spec: UseCase, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose use-case folder holds ``spec`` (for a fixture to yield from)."""
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    document = spec.model_dump(mode="json", exclude_none=True)
    (usecases / f"{spec.name}.yaml").write_text(yaml.safe_dump(document))
    running = Stack(bootstrap, tmp_path / "home", usecases, tmp_path)
    yield running
    running.stop_all()


def write_labeled_frame(home: Path, spec: UseCase, frame: pd.DataFrame, part: str) -> None:
    """Labeled rows to Feast's offline store, as the features service writes them.

    ``frame`` has the feature columns, ``label``, ``event_id``, ``entity_id``,
    ``event_timestamp`` and, optionally, ``label_timestamp`` (else the event's).
    """
    records = frame.to_dict("records")
    names = spec.feature_names()
    rows = [
        FeatureRow(
            usecase=spec.name,
            source_event_id=row["event_id"],
            entity_id=row["entity_id"],
            event_timestamp=row["event_timestamp"],
            features={name: row[name] for name in names},
        )
        for row in records
    ]
    labels = [
        Label(
            event_id=row["event_id"],
            label=row["label"].item() if hasattr(row["label"], "item") else row["label"],
            timestamp=row.get("label_timestamp", row["event_timestamp"]),
        )
        for row in records
    ]
    directory = featurestore.features_dir(home, spec.name)
    dataset.write_parquet_part(directory, featurestore.rows_frame(spec, rows), part)
    featurestore.write_labels(home, spec, labels, part)
