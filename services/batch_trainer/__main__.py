"""``python -m services.batch_trainer``: the batch trainer as its own process."""

from __future__ import annotations

import asyncio

from services.batch_trainer.data import TrainingData
from services.batch_trainer.errors import BatchTrainerError
from services.batch_trainer.service import SERVICE, run
from services.batch_trainer.settings import BatchTrainerSettings
from services.common.health import HealthServer
from services.common.plugins import load_callable
from services.common.runtime import run_service


def load_training_data(reference: str) -> TrainingData:
    """The data source named ``module:function`` (the Feast offline store's by default)."""
    source: TrainingData = load_callable(reference, "DRIFTLINE_TRAINING_DATA", BatchTrainerError)
    return source


def main() -> None:
    settings = BatchTrainerSettings()
    data_source = load_training_data(settings.training_data)

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        await run(settings, data_source, stop, health)

    run_service(SERVICE, settings, body)


if __name__ == "__main__":
    main()
