"""``python -m services.drift_detector``: watch every configured use case for drift."""

from __future__ import annotations

from services.common.runtime import run_service
from services.drift_detector.service import SERVICE, serve
from services.drift_detector.settings import DriftDetectorSettings


def main() -> None:
    settings = DriftDetectorSettings()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
