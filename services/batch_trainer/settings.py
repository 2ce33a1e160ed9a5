"""The batch trainer's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class BatchTrainerSettings(CommonSettings):
    """Where requests come from, where runs go, and what the trainer runs on."""

    group_id: str = Field(
        default="batch-trainer", description="consumer group of training.requests"
    )
    device: str | None = Field(
        default=None, description="torch device; CUDA when available, else the CPU, when unset"
    )
    training_data: str = Field(
        default="services.common.featurestore:training_data",
        description="module:function returning the training frame for (use case, window)",
    )
    max_poll_interval_ms: int = Field(
        default=3_600_000, gt=0, description="a training run may take this long in group mode"
    )
