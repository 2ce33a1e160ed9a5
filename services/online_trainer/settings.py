"""The online trainer's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class OnlineTrainerSettings(CommonSettings):
    """What the online trainer reads besides the common settings."""

    max_records: int = Field(default=1000, gt=0, description="records per batch")
    poll_timeout_ms: int = Field(default=200, gt=0)
    checkpoint_every_seconds: float = Field(
        default=5.0,
        ge=0,
        description="the longest a learned batch waits for the checkpoint (0: every batch); "
        "it is also written whenever a poll finds nothing, before a snapshot or label "
        "requests go out, and on stop; offsets are committed only as far as it covers",
    )
