"""``python -m services.ingestion``: raw events to feature rows."""

from __future__ import annotations

from services.common.runtime import run_service
from services.ingestion.service import SERVICE, serve
from services.ingestion.settings import IngestionSettings


def main() -> None:
    settings = IngestionSettings()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
