"""``python -m services.online_trainer``: learn every configured use case online."""

from __future__ import annotations

import asyncio

from services.common.health import HealthServer
from services.common.runtime import run_service
from services.online_trainer.service import SERVICE, OnlineTrainer
from services.online_trainer.settings import OnlineTrainerSettings


def main() -> None:
    settings = OnlineTrainerSettings()
    specs = settings.load_usecases()

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        await OnlineTrainer(settings, specs).run(stop, health)

    run_service(SERVICE, settings, body)


if __name__ == "__main__":
    main()
