"""The online trainer's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class OnlineTrainerSettings(CommonSettings):
    """What the online trainer reads besides the common settings."""

    max_records: int = Field(default=1000, gt=0, description="records per batch (one checkpoint)")
    poll_timeout_ms: int = Field(default=200, gt=0)
