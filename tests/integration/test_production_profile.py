"""Issue 14 point 5: the production profile runs here, on this machine's Redis and PostgreSQL.

The settings are infra/production.env and infra/production.secrets.env, the
files docker-compose.yml and infra/k8s read, with their host names replaced
by local addresses (``localize``): Feast with the Redis online store and the
SQL registry on PostgreSQL, MLflow's tracking server with its runs and model
registry on PostgreSQL, ingestion's and the features service's de-dup marks on
PostgreSQL (``DRIFTLINE_STATE_URL``), topics with 3 partitions, consumer groups. The broker
is the embedded tansu (no Kafka here). ``driftline up`` runs every service,
with 2 replicas each of ingestion, features and inference.

The loop: demo events in, feature rows in Redis through Feast, the online
model promoted and served by both inference replicas; then drift, a training request,
a batch candidate registered in MLflow (PostgreSQL), its promotion, and both
replicas serving it. Each run has its own PostgreSQL databases (dropped
after) and an empty Redis database (flushed after).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas import topics
from schemas.usecase import load_usecase
from services.cli.demo import stream_demo
from services.common.broker import free_port
from tests.integration.test_closed_loop import fast_credit, of
from tests.stack import ROOT, read_topic, wait_until
from tests.test_compose import production_settings

# About 5 minutes on two busy cores; the limit leaves room for a loaded CI machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REDIS = ("127.0.0.1", 6379)
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
REPLICAS = "ingestion=2,features=2,inference=2"
UP = [sys.executable, "-m", "services.cli", "up", "--external-broker", "--no-view"]
# Events before drift (the online model becomes the champion on them), then drifted ones.
BEFORE, AFTER, RATE, SEED = 3000, 4000, 120.0, 23


@pytest.fixture
def redis_db() -> Iterator[int]:
    """An empty Redis database (1-15) on this machine's server, flushed after the test."""
    redis = pytest.importorskip("redis", reason="the redis driver is not installed")
    databases = list(range(1, 16))
    random.shuffle(databases)
    for number in databases:
        client = redis.Redis(*REDIS, db=number, socket_connect_timeout=2)
        try:
            if client.dbsize() == 0:
                break
        except redis.exceptions.ConnectionError as exc:
            pytest.skip(f"no Redis at {REDIS[0]}:{REDIS[1]}: {exc}")
    else:
        pytest.skip("every Redis database 1-15 holds keys: none is free for this test")
    client.set("driftline:test:claimed", "1")  # keep it from a concurrent run's choice
    yield number
    client.flushdb()


def postgres_admin() -> Any:
    """An autocommit connection to this machine's PostgreSQL; a skip, saying why, without one."""
    psycopg2 = pytest.importorskip("psycopg2", reason="the psycopg2 driver is not installed")
    try:
        admin = psycopg2.connect(**POSTGRES, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES['host']}:{POSTGRES['port']}: {exc}")
    admin.autocommit = True
    return admin


@pytest.fixture
def postgres_databases() -> Iterator[dict[str, str]]:
    """Fresh PostgreSQL databases (MLflow's, Feast's registry, the de-dup marks), dropped after."""
    admin = postgres_admin()
    run = uuid.uuid4().hex[:10]
    names = {part: f"driftline_test_{run}_{part}" for part in ("mlflow", "feast", "state")}
    with admin.cursor() as cursor:
        for name in names.values():
            cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield names
    finally:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def local_database(url: str, database: str) -> str:
    """A production database URL pointed at this machine's server and ``database``."""
    from sqlalchemy.engine import make_url

    local = make_url(url).set(
        host=POSTGRES["host"],
        port=int(POSTGRES["port"]),
        username=str(POSTGRES["user"]),
        password=None,
        database=database,
    )
    return local.render_as_string(hide_password=False)


def localize(
    settings: dict[str, str],
    *,
    bootstrap: str,
    home: Path,
    redis_db: int,
    databases: dict[str, str],
    mlflow_url: str,
) -> dict[str, str]:
    """The production settings with each host name replaced by this machine's address.

    Only addresses change; every other setting (group mode, partitions, the
    Feast profile, the API key) is used as the files define it. A key missing
    from the files is a KeyError here, so the files and this test cannot drift apart.
    """
    local = dict(settings)
    replaced = {
        "DRIFTLINE_BOOTSTRAP": bootstrap,
        "DRIFTLINE_HOME": str(home),
        "DRIFTLINE_HEALTH_HOST": "127.0.0.1",
        "DRIFTLINE_HEALTH_PORT": "0",  # replicas on one machine: each its own port
        "DRIFTLINE_REDIS_URL": f"{REDIS[0]}:{REDIS[1]},db={redis_db}",
        "DRIFTLINE_MLFLOW_URI": mlflow_url,
        "DRIFTLINE_FEAST_REGISTRY_URL": local_database(
            settings["DRIFTLINE_FEAST_REGISTRY_URL"], databases["feast"]
        ),
        "MLFLOW_BACKEND_STORE_URI": local_database(
            settings["MLFLOW_BACKEND_STORE_URI"], databases["mlflow"]
        ),
        "DRIFTLINE_STATE_URL": local_database(settings["DRIFTLINE_STATE_URL"], databases["state"]),
    }
    for key, value in replaced.items():
        if key not in settings:
            raise KeyError(f"{key} is not in infra/production*.env")
        local[key] = value
    return local


class MlflowServer:
    """``mlflow server`` as docker-compose.yml runs it, on a loopback port."""

    def __init__(self, backend: str, artifacts: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow = Path(sys.executable).with_name("mlflow")
        argv = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--backend-store-uri", backend, "--workers", "1"]
        argv += ["--artifacts-destination", str(artifacts), "--serve-artifacts"]
        self.log = log
        self.process = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 120) -> None:
        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, timeout), self.log.read_text()[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def predicted_by(
    client: httpx.Client, url: str, usecase: str, api_key: str, fields: dict[str, Any]
) -> tuple[str, str]:
    """The (model name, version) that answers one prediction from ``url`` ('' when none)."""
    try:
        answer = client.post(
            f"{url}/v1/predict/{usecase}",
            json={"entity_id": "cust-00001", "features": fields},
            headers={"X-API-Key": api_key},
            timeout=5,
        )
    except httpx.HTTPError:
        return ("", "")
    if answer.status_code != 200:
        return ("", "")
    body = answer.json()
    return (str(body.get("model_name", "")), str(body.get("model_version", "")))


class Sampler:
    """Asks each inference replica which model answers, every half second, in a thread:
    a champion replaced while the test reads topics is still seen (order of first answers)."""

    def __init__(self, urls: list[str], usecase: str, api_key: str, fields: dict[str, Any]):
        self.seen: dict[str, list[tuple[str, str]]] = {url: [] for url in urls}
        self._args = (usecase, api_key, fields)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self._stop.wait(0.5):
                for url, seen in self.seen.items():
                    model = predicted_by(client, url, *self._args)
                    if model[0] and model not in seen:
                        seen.append(model)

    def served(self, model: tuple[str, str]) -> bool:
        """Whether every replica has answered with ``model``."""
        return all(model in seen for seen in self.seen.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def promotions(bootstrap: str, usecase: str) -> list[dict[str, Any]]:
    found = of(usecase, read_topic(bootstrap, topics.MODELS_PROMOTIONS, idle=0.5))
    return [p for p in found if p["action"] == "promote"]


def rows(database: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg2

    connection = psycopg2.connect(**{**POSTGRES, "dbname": database})
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return list(cursor.fetchall())
    finally:
        connection.close()


def test_the_closed_loop_on_redis_and_postgresql(
    bootstrap: str,
    unique: str,
    tmp_path: Path,
    redis_db: int,
    postgres_databases: dict[str, str],
) -> None:
    import redis

    production = production_settings()
    assert production["DRIFTLINE_FEAST_PROFILE"] == "production"
    assert production["DRIFTLINE_CONSUMER_MODE"] == "group"
    assert production["DRIFTLINE_PARTITIONS"] == "3"
    home = tmp_path / "home"
    mlflow = MlflowServer(
        local_database(production["MLFLOW_BACKEND_STORE_URI"], postgres_databases["mlflow"]),
        tmp_path / "mlartifacts",
        tmp_path / "mlflow.log",
    )
    settings = localize(
        production,
        bootstrap=bootstrap,
        home=home,
        redis_db=redis_db,
        databases=postgres_databases,
        mlflow_url=mlflow.url,
    )
    usecases = tmp_path / "usecases"
    spec = load_usecase(quick_credit(usecases, unique))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")},
        **settings,
        "DRIFTLINE_USECASES_DIR": str(usecases),
        "DRIFTLINE_GROUP_PREFIX": unique,
        "DRIFTLINE_PORT": str(port),
        "DRIFTLINE_PERFORMANCE_TOLERANCE": "1.0",  # data drift leads, as in the closed loop test
        "PYTHONUNBUFFERED": "1",
    }
    api_key = settings["DRIFTLINE_API_KEY"]
    log = tmp_path / "up.log"
    up: subprocess.Popen[bytes] | None = None
    sampler: Sampler | None = None
    started = time.monotonic()
    try:
        up = subprocess.Popen(  # while the MLflow server starts: nothing needs it before events
            [*UP, "--replicas", REPLICAS],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

        def inference_urls() -> list[str]:
            return re.findall(r"started inference-\d \((http://[0-9.:]+)/docs\)", log.read_text())

        def running(text: str) -> bool:
            """Whether ``up`` logged ``text``; it must not have exited."""
            assert up is not None and up.poll() is None, log.read_text()[-6000:]
            return text in log.read_text()

        assert wait_until(lambda: len(inference_urls()) == 2, timeout=180), log.read_text()[-4000:]
        urls = inference_urls()
        assert wait_until(lambda: running("started online_trainer"), timeout=180)
        mlflow.wait()
        print(f"stack and mlflow server up in {time.monotonic() - started:.0f}s")

        def stream(events: int, seed: int, drift_at: int | None) -> None:
            """Demo events (and their labels) in a thread, predictions asked of one replica."""
            threading.Thread(
                target=lambda: asyncio.run(
                    stream_demo(
                        bootstrap, spec, events=events, rate=RATE, seed=seed, drift_at=drift_at,
                        label_delay=None, predict_url=urls[0], api_key=api_key,
                    )
                ),
                daemon=True,
            ).start()  # fmt: skip

        stream(BEFORE, SEED, drift_at=None)
        sampler = Sampler(urls, unique, api_key, _fields(spec))

        # Events in, feature rows in Redis through Feast.
        online = redis.Redis(*REDIS, db=redis_db)
        assert wait_until(lambda: running("") and online.dbsize() > 100, timeout=120), (
            log.read_text()[-4000:]
        )
        store = _online_store(settings, spec)
        assert wait_until(lambda: _online_row(store, spec, "cust-00001"), timeout=60)

        # The online model is the first champion, and both replicas serve it.
        assert wait_until(
            lambda: running("") and bool(promotions(bootstrap, unique)), timeout=150, interval=2
        ), log.read_text()[-6000:]
        first = promotions(bootstrap, unique)[0]
        assert first["model_name"] == f"{unique}-online"
        champion = (first["model_name"], str(first["model_version"]))
        assert wait_until(lambda: sampler.served(champion), 60), sampler.seen

        # Drift: an alert, a training request, a batch candidate in MLflow (PostgreSQL).
        stream(AFTER, SEED + 1, drift_at=0)  # another seed: other event ids

        def candidate() -> dict[str, Any] | None:
            requests = of(unique, read_topic(bootstrap, topics.TRAINING_REQUESTS, idle=0.5))
            asked = {r["request_id"] for r in requests if r["reason"] == "drift"}
            found = of(unique, read_topic(bootstrap, topics.MODELS_CANDIDATES, idle=0.5))
            mine = [c for c in found if c.get("training_request_id") in asked]
            return mine[0] if mine else None

        assert wait_until(
            lambda: running("") and candidate() is not None, timeout=180, interval=2
        ), log.read_text()[-6000:]
        batch = candidate()
        assert batch is not None and batch["trainer"] == "batch"
        wanted = (batch["model_name"], str(batch["model_version"]))

        def promoted() -> bool:
            return any(
                (p["model_name"], str(p["model_version"])) == wanted
                for p in promotions(bootstrap, unique)
            )

        # The registry promotes it (it beats the online model on post-drift data).
        assert wait_until(promoted, timeout=180, interval=2), log.read_text()[-6000:]
        assert wait_until(lambda: sampler.served(wanted), 60), sampler.seen
        for seen in sampler.seen.values():  # the online champion first, then the batch model
            assert seen.index(champion) < seen.index(wanted), sampler.seen

        # Where it all lives: MLflow's registry and Feast's registry in PostgreSQL.
        registered = {name for (name,) in rows(postgres_databases["mlflow"], _MODELS)}
        assert {unique, f"{unique}-online"} <= registered, registered
        views = {name for (name,) in rows(postgres_databases["feast"], _VIEWS)}
        assert f"{unique}_features" in views, views
        # And the de-dup marks, which every replica reads: none in a SQLite file.
        for service, kind in (("ingestion", "raw"), ("features", "features")):
            marks = f"SELECT count(*) FROM {unique}_{service}_seen WHERE kind = '{kind}'"
            assert rows(postgres_databases["state"], marks)[0][0] > BEFORE // 2, service
        assert not list(home.glob("*/seen.db"))
        print(f"production profile loop closed in {time.monotonic() - started:.0f}s")
    finally:
        if sampler is not None:
            sampler.stop()
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
        mlflow.stop()


def quick_credit(directory: Path, name: str) -> Path:
    """The closed-loop test's credit use case, the batch model fitted without a search."""
    path = fast_credit(directory, name)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["batch"].update(max_epochs=15, tuning={"trials": 0, "timeout_seconds": 20})
    path.write_text(yaml.safe_dump(spec))
    return path


_MODELS = "SELECT name FROM registered_models"
_VIEWS = "SELECT feature_view_name FROM feature_views"


def _online_store(settings: dict[str, str], spec: Any) -> Any:
    """The stack's Feast store (Redis online store, SQL registry), read only."""
    from services.common import featurestore

    config = featurestore.FeatureStoreSettings(
        home=Path(settings["DRIFTLINE_HOME"]),
        feast_profile="production",
        redis_url=settings["DRIFTLINE_REDIS_URL"],
        feast_registry_url=settings["DRIFTLINE_FEAST_REGISTRY_URL"],
    )
    return featurestore.open_store(config, [spec], apply=False)


def _online_row(store: Any, spec: Any, entity_id: str) -> bool:
    """Whether Feast's Redis online store holds a row for ``entity_id``."""
    from services.common import featurestore

    found = featurestore.online_features(store, spec, [entity_id])[0]
    return found.get(featurestore.EVENT_ID) is not None


def _fields(spec: Any) -> dict[str, Any]:
    from services.demo.data import demo_events

    item = next(iter(demo_events(spec, events=1, seed=99)))
    return {name: item.event[name] for name in spec.fields if name in item.event}
