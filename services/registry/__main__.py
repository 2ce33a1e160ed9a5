"""``python -m services.registry``: the registry / promoter as its own process."""

from __future__ import annotations

import asyncio

from services.common.health import HealthServer
from services.common.plugins import load_callable
from services.common.runtime import preload, run_service
from services.registry.errors import RegistryError
from services.registry.evaluation import GateData
from services.registry.serve import run
from services.registry.service import SERVICE
from services.registry.settings import RegistrySettings


def load_gate_data(reference: str) -> GateData:
    """The gate's data source named ``module:function`` (the Feast offline store's by default).

    >>> load_gate_data("nowhere")
    Traceback (most recent call last):
    ...
    services.registry.errors.RegistryError: DRIFTLINE_GATE_DATA 'nowhere': expected module:function
    """
    source: GateData = load_callable(reference, "DRIFTLINE_GATE_DATA", RegistryError)
    return source


def main() -> None:
    settings = RegistrySettings()
    data_source = load_gate_data(settings.gate_data)
    preload("mlflow")  # the lineup is restored from it at start, and candidates scored

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        await run(settings, data_source, stop, health)

    run_service(SERVICE, settings, body)


if __name__ == "__main__":
    main()
