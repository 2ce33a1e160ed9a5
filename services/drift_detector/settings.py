"""The drift detector's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.featurestore import FeatureStoreSettings


class DriftDetectorSettings(FeatureStoreSettings):
    """What the drift detector reads besides the common and feature-store settings."""

    max_records: int = Field(default=1000, gt=0, description="records per consumed batch")
    poll_timeout_ms: int = Field(default=200, gt=0)
    checkpoint_seconds: float = Field(
        default=5.0, ge=0, description="the longest a checkpoint waits while rows arrive"
    )
    hysteresis_exit_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a drift episode ends when the score falls below this share of its threshold",
    )
    performance_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="alert when the window's primary metric is worse than the champion's by more",
    )
    bootstrap_reference: bool = Field(
        default=True,
        description="without a champion, the first reference_rows feature rows are the reference",
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="raise the detector's nice value by this at start, so its checks yield the "
        "CPU to the request path (0: leave it)",
    )
    idle_checks: bool = Field(
        default=True,
        description="where the detector leads its own session, run the checks and reports in "
        "one SCHED_IDLE thread (Linux), which a waking request thread preempts at once "
        "(false: at the nice value)",
    )
    max_pending: int = Field(
        default=100_000, gt=0, description="predictions or labels waiting for their partner"
    )
