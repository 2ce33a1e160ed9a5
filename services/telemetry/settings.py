"""The telemetry service's settings (``DRIFTLINE_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.settings import CommonSettings


class TelemetrySettings(CommonSettings):
    """Where the console listens and who may press its buttons."""

    console_host: str = Field(default="127.0.0.1", description="address the web console serves on")
    console_port: int = Field(
        default=8080, ge=0, le=65535, description="port of the web console and its JSON API"
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="when set, the console's buttons need it (X-API-Key), as inference's /v1/* do",
    )
