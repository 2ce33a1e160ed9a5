"""``python -m services.inference``: the HTTP API in one uvicorn process.

Health, readiness and metrics are served by the API's own server (``/healthz``,
``/readyz``, ``/metrics``), so ``DRIFTLINE_HEALTH_PORT`` is not used.
"""

from __future__ import annotations

import sys

from uvicorn.config import STARTUP_FAILURE

from services.common.logs import configure_logging
from services.inference.api import create_app, front
from services.inference.http import serve
from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings


def main() -> None:
    settings = InferenceSettings()
    configure_logging(settings.log_level)
    app = front(create_app(InferenceService(settings), guard_inside=False))
    started = serve(app, settings.host, settings.port)
    if not started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does


if __name__ == "__main__":
    main()
