"""``python -m services.drift_detector``: watch every configured use case for drift."""

from __future__ import annotations

import asyncio

from services.common.health import HealthServer
from services.common.runtime import run_service
from services.drift_detector.service import SERVICE, DriftDetector
from services.drift_detector.settings import DriftDetectorSettings


def main() -> None:
    settings = DriftDetectorSettings()
    specs = settings.load_usecases()

    async def body(stop: asyncio.Event, health: HealthServer) -> None:
        await DriftDetector(settings, specs).run(stop, health)

    run_service(SERVICE, settings, body)


if __name__ == "__main__":
    main()
