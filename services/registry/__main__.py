"""``python -m services.registry``: the registry / promoter as its own process."""

from __future__ import annotations

from services.common.runtime import preload, run_service
from services.registry.service import SERVICE, load_gate_data, serve
from services.registry.settings import RegistrySettings

__all__ = ["load_gate_data", "main"]


def main() -> None:
    settings = RegistrySettings()
    load_gate_data(settings.gate_data)  # a bad DRIFTLINE_GATE_DATA fails the start at once
    preload("mlflow")  # the lineup is restored from it at start, and candidates scored
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
