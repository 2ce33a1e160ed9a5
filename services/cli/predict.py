"""``driftline predict UC JSON``: call the inference service and print its answer.

JSON is the request body (one object or a list), or ``-`` to read it from
standard input. ``DRIFTLINE_API_KEY``, when set, is sent as ``X-API-Key``.
With ``--explain`` the service is asked for explanations (``?explain=true``)
and each answer is printed as its prediction and a table of its ``--top``
feature contributions, largest first, instead of the JSON.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8000"


def call_predict(
    url: str,
    usecase: str,
    body: Any,
    api_key: str | None = None,
    timeout: float = 10.0,
    explain: bool = False,
) -> httpx.Response:
    """POST ``body`` to ``{url}/v1/predict/{usecase}`` (``?explain=true`` with ``explain``)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    endpoint = f"{url.rstrip('/')}/v1/predict/{usecase}"
    params = {"explain": "true"} if explain else None
    return httpx.post(endpoint, json=body, headers=headers, timeout=timeout, params=params)


def explanation_table(answer: dict[str, Any], top: int) -> Table:
    """One answer's prediction and its ``top`` largest contributions, as a rich table.

    >>> answer = {"entity_id": "c1", "prediction": 1, "model_version": "3", "explanation": {
    ...     "method": "linear_exact", "units": "log_odds", "class": 1, "expected_value": -0.5,
    ...     "score": 1.0, "gap": 0.0, "contributions": {"loan": 2.0, "age": -0.25, "zip": -0.25}}}
    >>> table = explanation_table(answer, top=2)
    >>> [c.header for c in table.columns], table.row_count
    (['feature', 'contribution', 'running total'], 4)
    """
    explanation = answer["explanation"]
    items = list(explanation["contributions"].items())
    units = explanation["units"]
    subject = f" of class {explanation['class']}" if explanation.get("class") is not None else ""
    table = Table(
        title=f"{answer.get('entity_id')}: prediction {answer.get('prediction')!r} "
        f"(model v{answer.get('model_version')}); score {explanation['score']:.6g} "
        f"{units}{subject}, by {explanation['method']} (gap {explanation['gap']:.2g})",
        title_justify="left",
    )
    table.add_column("feature")
    table.add_column("contribution", justify="right")
    table.add_column("running total", justify="right")
    total = explanation["expected_value"]
    table.add_row("(expected value)", "", f"{total:.6g}")
    for name, value in items[:top]:
        total += value
        table.add_row(name, f"{value:+.6g}", f"{total:.6g}")
    rest = items[top:]
    if rest:
        total += sum(value for _, value in rest)
        table.add_row(f"({len(rest)} more)", f"{sum(v for _, v in rest):+.6g}", f"{total:.6g}")
    return table


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
        explain: bool = typer.Option(
            False, "--explain", help="ask for explanations; print the top contributions"
        ),
        top: int = typer.Option(10, "--top", min=1, help="contributions shown per answer"),
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
                url, usecase, document, os.environ.get("DRIFTLINE_API_KEY"), timeout, explain
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
        if not explain:
            typer.echo(shown)
            return
        answers = response.json()
        console = Console(width=120)
        for answer in answers if isinstance(answers, list) else [answers]:
            console.print(explanation_table(answer, top))
