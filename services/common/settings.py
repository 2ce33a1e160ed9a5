"""Settings shared by every service: read from ``DRIFTLINE_*`` environment variables.

Each service subclasses :class:`CommonSettings` with its own fields and builds
it in ``main()``, never at import, so a bad value fails fast at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.usecase import UseCase, load_usecases


class CommonSettings(BaseSettings):
    """What every service needs to find the broker, its state and the use cases."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="ignore", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    home: Path = Field(default=Path(".driftline"), description="all local state lives here")
    usecases_dir: Path = Field(default=Path("usecases"), description="the use-case YAML files")
    usecases: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="serve only these use cases (comma-separated)"
    )
    group_prefix: str = Field(
        default="driftline",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="prefix of consumer groups: two stacks on one broker need different prefixes",
    )
    group_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the service's consumer group; unset: <group_prefix>-<service>",
    )
    log_level: str = "INFO"
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    mlflow_uri: str | None = Field(
        default=None, description="MLflow tracking URI; SQLite under DRIFTLINE_HOME when unset"
    )
    broker_wait_seconds: float = Field(
        default=600.0, gt=0, description="how long a service waits for the broker at start"
    )
    partitions: int = Field(default=1, gt=0, description="partitions of topics driftline creates")
    retention_ms: int | None = Field(
        default=None,
        gt=0,
        description="how long event streams keep events (ms); unset: the broker's default "
        "(Apache Kafka: 7 days). State topics are compacted instead",
    )
    consumer_mode: Literal["assign", "group"] = Field(
        default="assign",
        description="assign: one process a service, starts at once; group: N replicas share",
    )
    standby: bool = Field(
        default=False,
        description="a singleton (online trainer, registry, batch trainer, drift detector) works "
        "only while it holds its lease (services/common/standby.py): a second one stands by",
    )

    @field_validator("usecases", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    def load_usecases(self) -> dict[str, UseCase]:
        """The configured use cases, all of them unless ``usecases`` narrows the set."""
        specs = load_usecases(self.usecases_dir)
        if self.usecases is None:
            return specs
        missing = sorted(set(self.usecases) - set(specs))
        if missing:
            raise ValueError(f"DRIFTLINE_USECASES names unknown use cases: {missing}")
        return {name: specs[name] for name in self.usecases}

    def consumer_group(self, service: str) -> str:
        """The consumer group of ``service``: ``group_id``, else ``<group_prefix>-<service>``."""
        return self.group_id or f"{self.group_prefix}-{service}"

    def service_home(self, service: str) -> Path:
        """The directory a service keeps its state in (created on first use)."""
        path = self.home / service
        path.mkdir(parents=True, exist_ok=True)
        return path
