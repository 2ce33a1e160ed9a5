"""The production compose file: parsed and checked here (no Docker engine runs on CI).

Its settings are infra/production.env and infra/production.secrets.env
(``production_settings``): the Kubernetes manifests and the production
profile's integration test read the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from services.cli.up import discover_services

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILES = ("infra/production.env", "infra/production.secrets.env")


def read_env_file(path: Path) -> dict[str, str]:
    """One ``KEY=value`` file as a dict; a key without a value is an error."""
    values = dotenv_values(path)
    empty = sorted(key for key, value in values.items() if not value)
    assert not empty, f"{path}: keys without a value: {empty}"
    return {key: str(value) for key, value in values.items()}


def production_settings() -> dict[str, str]:
    """The production profile's settings: the config file, then the secrets file."""
    settings: dict[str, str] = {}
    for name in SETTINGS_FILES:
        values = read_env_file(ROOT / name)
        both = sorted(set(settings) & set(values))
        assert not both, f"{name} repeats {both}"
        settings.update(values)
    return settings


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def environment(entry: dict[str, Any]) -> dict[str, str]:
    """What a compose entry's container gets: its env_file(s), then its environment."""
    files = entry.get("env_file", [])
    values: dict[str, str] = {}
    for name in [files] if isinstance(files, str) else files:
        values.update(read_env_file(ROOT / name))
    values.update({key: str(value) for key, value in (entry.get("environment") or {}).items()})
    return values


def test_every_service_has_an_entry_that_runs_it() -> None:
    services = compose()["services"]
    for name in discover_services():
        assert name in services, f"services/{name} has no entry in docker-compose.yml"
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]


def test_every_driftline_entry_reads_the_one_settings_file_and_waits_for_health() -> None:
    services = compose()["services"]
    for name in [*discover_services(), "topics"]:
        entry = services[name]
        assert entry["env_file"] == list(SETTINGS_FILES), name
        assert environment(entry)["DRIFTLINE_BOOTSTRAP"] == "kafka:9092"
        assert entry["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper


def test_the_settings_name_the_compose_hosts() -> None:
    """Every address in the settings is a compose service, on the port it listens on."""
    settings = production_settings()
    services = compose()["services"]
    assert settings["DRIFTLINE_BOOTSTRAP"] == "kafka:9092"
    assert settings["DRIFTLINE_REDIS_URL"].split(",")[0] == "redis:6379"
    assert settings["DRIFTLINE_MLFLOW_URI"] == "http://mlflow:5000"
    assert "--port 5000" in " ".join(services["mlflow"]["command"])
    for key in ("DRIFTLINE_FEAST_REGISTRY_URL", "MLFLOW_BACKEND_STORE_URI"):
        assert "@postgres:5432/" in settings[key], key
    postgres = services["postgres"]["environment"]
    credentials = f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@"
    assert credentials in settings["MLFLOW_BACKEND_STORE_URI"]
    assert settings["MLFLOW_BACKEND_STORE_URI"].endswith(f"/{postgres['POSTGRES_DB']}")
    assert "$$MLFLOW_BACKEND_STORE_URI" in " ".join(services["mlflow"]["command"])
    init = (ROOT / "infra" / "postgres-init.sql").read_text()
    for key in ("DRIFTLINE_FEAST_REGISTRY_URL", "DRIFTLINE_STATE_URL"):
        assert "@postgres:5432/" in settings[key], key
        assert f"CREATE DATABASE {settings[key].rsplit('/', 1)[-1]}" in init, key


def test_inference_listens_where_its_port_mapping_and_health_check_point() -> None:
    inference = compose()["services"]["inference"]
    port = environment(inference)["DRIFTLINE_PORT"]
    assert inference["ports"] == [f"{port}:{port}"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(inference["healthcheck"]["test"])


def test_backing_services_have_health_checks() -> None:
    services = compose()["services"]
    for name in ("kafka", "redis", "postgres", "mlflow", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    assert (ROOT / services["ingestion"]["build"]["dockerfile"]).exists()


def test_compose_only_names_services_that_exist() -> None:
    infra = {"kafka", "redis", "postgres", "mlflow", "topics"}
    infra |= {"kafka-exporter", "prometheus", "grafana"}  # monitoring, tests/test_grafana.py
    assert set(compose()["services"]) - infra == set(discover_services())
