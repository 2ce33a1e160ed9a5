"""The features service's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.featurestore import FeatureStoreSettings
from services.common.seen import StateSettings


class FeaturesSettings(FeatureStoreSettings, StateSettings):
    """What the features service reads besides the common, feature-store and
    de-dup record (``DRIFTLINE_STATE_URL``) settings."""

    batch_rows: int = Field(default=5000, gt=0, description="most messages in one write")
