"""The features service's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.common.featurestore import FeatureStoreSettings


class FeaturesSettings(FeatureStoreSettings):
    """What the features service reads besides the common and feature-store settings."""

    batch_rows: int = Field(default=5000, gt=0, description="most messages in one write")
