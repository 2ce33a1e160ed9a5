"""The inference service's settings (``DRIFTLINE_*`` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.common.featurestore import FeatureStoreSettings


class InferenceSettings(FeatureStoreSettings):
    """Where the API listens, what it accepts, where models and features come from."""

    host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="port of the HTTP API")
    api_key: SecretStr | None = Field(
        default=None, description="when set, /v1/* requests need it in the X-API-Key header"
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="larger bodies get a 413")
    max_batch_items: int = Field(default=1000, gt=0, description="items in one list request")
    feature_read: Literal["direct", "sdk"] = Field(
        default="direct",
        description="direct: the online store's own read and Feast's value decoding; "
        "sdk: FeatureStore.get_online_features (slower, same values)",
    )
    prediction_batch_size: int = Field(default=500, gt=0, description="predictions per send")
    prediction_linger_ms: float = Field(
        default=100.0,
        ge=0,
        description="how long the prediction log waits to fill a batch (a batch costs about "
        "0.3 to 0.7 ms of CPU however few it holds: at 2,500 answers a second, 20 ms made "
        "batches of 50 and cost 25 us an answer, 100 ms about 13)",
    )
    prediction_queue_size: int = Field(
        default=100_000,
        gt=0,
        description="predictions journaled and not yet acknowledged before new ones are dropped",
    )
    prediction_segment_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="size at which the prediction journal starts a new segment",
    )
    prediction_stop_seconds: float = Field(
        default=10.0,
        ge=0,
        description="how long a clean stop waits for the broker to take the journaled predictions",
    )
    poll_timeout_ms: int = Field(default=500, gt=0, description="promotion listener poll")
    pseudonym_salt: SecretStr = Field(
        default=SecretStr(""),
        description="the ingestion's salt: request fields are pseudonymized the same way",
    )
