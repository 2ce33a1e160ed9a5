"""Ingestion's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.seen import StateSettings


class IngestionSettings(StateSettings):
    """What ingestion reads besides the common settings and where its de-dup marks live."""

    pseudonym_salt: SecretStr = Field(
        default=SecretStr(""), description="secret mixed into pseudonymized fields"
    )
    batch_events: int = Field(default=2000, gt=0, description="most raw events in one batch")
    stats_publish_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how often the recorded imputation statistics go to <uc>.stats when changed",
    )
