"""B5's baseline: a no-op JSON endpoint in the inference service's server config.

``python -m bench.noop PORT`` serves a FastAPI app whose one ``POST`` reads the
body and answers a small JSON object, served by ``services.inference.http.serve``,
the call ``python -m services.inference`` serves the real API with (uvicorn,
uvloop, its httptools protocol that sends an answer in one write, one worker).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response


def noop_app() -> Any:
    """A FastAPI app whose ``POST`` reads the body and answers a small JSON object."""
    app = FastAPI()
    answer = json.dumps({"ok": True, "prediction": 0}).encode()

    @app.post("/v1/noop/{usecase}")
    async def noop(usecase: str, request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def serve_noop(port: int) -> None:
    """Serve :func:`noop_app` in the inference service's server config (the same call)."""
    from services.inference.http import serve

    serve(noop_app(), "127.0.0.1", port)


def main(argv: list[str]) -> None:
    """``python -m bench.noop PORT``: the no-op baseline server."""
    if len(argv) == 1:
        serve_noop(int(argv[0]))
    else:
        raise SystemExit("usage: python -m bench.noop PORT")


if __name__ == "__main__":
    main(sys.argv[1:])
