"""``python -m services.batch_trainer``: the batch trainer as its own process."""

from __future__ import annotations

from services.batch_trainer.service import SERVICE, load_training_data, serve
from services.batch_trainer.settings import BatchTrainerSettings
from services.common.runtime import run_service

__all__ = ["load_training_data", "main"]


def main() -> None:
    settings = BatchTrainerSettings()
    load_training_data(settings.training_data)  # a bad DRIFTLINE_TRAINING_DATA fails at once
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
