"""``driftline predict UC JSON``: call the inference service and print its answer.

JSON is the request body (one object or a list), or ``-`` to read it from
standard input. ``DRIFTLINE_API_KEY``, when set, is sent as ``X-API-Key``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8000"


def call_predict(
    url: str, usecase: str, body: Any, api_key: str | None = None, timeout: float = 10.0
) -> httpx.Response:
    """POST ``body`` to ``{url}/v1/predict/{usecase}``."""
    headers = {"X-API-Key": api_key} if api_key else {}
    endpoint = f"{url.rstrip('/')}/v1/predict/{usecase}"
    return httpx.post(endpoint, json=body, headers=headers, timeout=timeout)


def register(app: typer.Typer) -> None:
    """Add ``driftline predict`` to the command line."""

    @app.command("predict")
    def predict(
        usecase: str = typer.Argument(..., help="use case, e.g. credit"),
        body: str = typer.Argument(
            ...,
            help='request body: {"entity_id": ..., "event_id": ..., "features": {...}} or a '
            "list of them; - reads standard input",
        ),
        url: str = typer.Option(
            DEFAULT_URL, "--url", envvar="DRIFTLINE_INFERENCE_URL", help="inference service"
        ),
        timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="seconds"),
    ) -> None:
        """Ask the inference service for a prediction; print the JSON answer."""
        text = sys.stdin.read() if body == "-" else body
        try:
            document = json.loads(text)
        except ValueError as exc:
            typer.echo(f"error: the body is not valid JSON: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            response = call_predict(
                url, usecase, document, os.environ.get("DRIFTLINE_API_KEY"), timeout
            )
        except httpx.HTTPError as exc:
            typer.echo(f"error: cannot reach the inference service at {url}: {exc}", err=True)
            raise typer.Exit(1) from None
        try:
            shown = json.dumps(response.json(), indent=2)
        except ValueError:
            shown = response.text
        if response.status_code >= 400:
            typer.echo(f"error: HTTP {response.status_code}: {shown}", err=True)
            raise typer.Exit(1)
        typer.echo(shown)
