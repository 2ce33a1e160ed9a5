"""``python -m services.online_trainer``: learn every configured use case online."""

from __future__ import annotations

from services.common.runtime import run_service
from services.online_trainer.service import SERVICE, serve
from services.online_trainer.settings import OnlineTrainerSettings


def main() -> None:
    settings = OnlineTrainerSettings()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
