"""The batch trainer's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class BatchTrainerSettings(CommonSettings):
    """Where requests come from, where runs go, and what the trainer runs on."""

    device: str | None = Field(
        default=None, description="torch device; CUDA when available, else the CPU, when unset"
    )
    training_data: str = Field(
        default="services.common.featurestore:training_data",
        description="module:function returning the training frame for (use case, window)",
    )
    data_wait_seconds: float = Field(
        default=180.0, ge=0, description="how long a drift request waits for min_rows of new data"
    )
    data_wait_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="the longest a waiting drift request sleeps before counting the data again "
        "(less when the rows seen arriving will make up min_rows sooner)",
    )
    warm_up: bool = Field(
        default=True,
        description="import the training libraries and open MLflow and the data source at start "
        "(in the background), not in the first request",
    )
    max_poll_interval_ms: int = Field(
        default=3_600_000, gt=0, description="a training run may take this long in group mode"
    )
