"""``python -m services.inference``: the HTTP API in one uvicorn process.

Health, readiness and metrics are served by the API's own server (``/healthz``,
``/readyz``, ``/metrics``), so ``DRIFTLINE_HEALTH_PORT`` is not used.
"""

from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.inference.api import create_app
from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings


def main() -> None:
    settings = InferenceSettings()
    configure_logging(settings.log_level)
    app = create_app(InferenceService(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
