"""The registry's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class RegistrySettings(CommonSettings):
    """Where the registry keeps its offsets, finds MLflow and reads the gate's data."""

    gate_data: str = Field(
        default="services.common.featurestore:training_data",
        description="module:function returning labeled feature rows for (use case, window)",
    )
    min_gate_rows: int = Field(
        default=50,
        gt=0,
        description="held-out rows the gate needs; with fewer it falls back to reported metrics",
    )
    poll_timeout_ms: int = Field(default=100, gt=0)
    max_pending: int = Field(
        default=100_000, gt=0, description="unjoined predictions and labels kept per live trial"
    )
