"""``python -m services.drift_detector``: watch every configured use case for drift."""

from __future__ import annotations

from services.common.runtime import run_service
from services.drift_detector.priority import (
    idle_checks_apply,
    lower_priority,
    start_idle_worker,
)
from services.drift_detector.service import SERVICE, serve
from services.drift_detector.settings import DriftDetectorSettings
from services.drift_detector.warm import start_warm_up


def main() -> None:
    settings = DriftDetectorSettings()
    # evidently's imports, before the first window is full, at the start's priority: the
    # thread is started before the process lowers its own (and lowers its own after them).
    start_warm_up(settings.nice)
    lower_priority(settings.nice)
    if idle_checks_apply(settings.idle_checks):  # in its own session only (priority.py)
        start_idle_worker()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
