"""``python -m services.features``: write feature rows and labels to Feast."""

from __future__ import annotations

from services.common.runtime import run_service
from services.features.service import SERVICE, serve
from services.features.settings import FeaturesSettings


def main() -> None:
    settings = FeaturesSettings()
    run_service(SERVICE, settings, lambda stop, health: serve(settings, stop, health))


if __name__ == "__main__":
    main()
