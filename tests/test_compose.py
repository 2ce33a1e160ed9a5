"""The production compose file: parsed and checked here (no Docker engine runs on CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.cli.up import discover_services

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_every_service_has_an_entry_that_runs_it() -> None:
    services = compose()["services"]
    for name in discover_services():
        assert name in services, f"services/{name} has no entry in docker-compose.yml"
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]


def test_every_driftline_entry_points_at_the_compose_broker_and_waits_for_health() -> None:
    services = compose()["services"]
    for name in [*discover_services(), "topics"]:
        entry = services[name]
        assert entry["environment"]["DRIFTLINE_BOOTSTRAP"] == "kafka:9092"
        assert entry["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper


def test_backing_services_have_health_checks() -> None:
    services = compose()["services"]
    for name in ("kafka", "redis", "postgres", "mlflow"):
        assert "test" in services[name]["healthcheck"], name
    assert (ROOT / services["ingestion"]["build"]["dockerfile"]).exists()


def test_compose_only_names_services_that_exist() -> None:
    infra = {"kafka", "redis", "postgres", "mlflow", "topics"}
    assert set(compose()["services"]) - infra == set(discover_services())
