"""``python -m services.registry``: the registry / promoter as its own process."""

from __future__ import annotations

from services.common.runtime import preload, run_service
from services.registry.service import SERVICE, load_gate_data, serve
from services.registry.settings import RegistrySettings

TRACKING_STORES = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)

__all__ = ["load_gate_data", "main"]


def main() -> None:
    settings = RegistrySettings()
    load_gate_data(settings.gate_data)  # a bad DRIFTLINE_GATE_DATA fails the start at once
    # The lineup is restored from MLflow at start (its SQLite stores: most of a client's
    # cost), and candidates scored; the gate's data source is imported at its warm-up.
    preload("mlflow", *TRACKING_STORES)
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
