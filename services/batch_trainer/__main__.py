"""``python -m services.batch_trainer``: the batch trainer as its own process."""

from __future__ import annotations

import asyncio
import importlib

from services.batch_trainer.data import TrainingData
from services.batch_trainer.errors import BatchTrainerError
from services.batch_trainer.service import SERVICE, run
from services.batch_trainer.settings import BatchTrainerSettings
from services.common.health import HealthServer
from services.common.runtime import run_service


def load_training_data(reference: str) -> TrainingData:
    """The data source named ``module:function`` (the Feast offline store's by default)."""
    module_name, _, function_name = reference.partition(":")
    if not function_name:
        raise BatchTrainerError(f"DRIFTLINE_TRAINING_DATA {reference!r}: expected module:function")
    try:
        source: TrainingData = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise BatchTrainerError(f"DRIFTLINE_TRAINING_DATA {reference!r}: {exc}") from exc
    return source


def main() -> None:
    settings = BatchTrainerSettings()
    data_source = load_training_data(settings.training_data)

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        await run(settings, data_source, stop, health)

    run_service(SERVICE, settings, body)


if __name__ == "__main__":
    main()
