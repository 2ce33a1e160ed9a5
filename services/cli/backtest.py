"""``driftline backtest UC --model NAME:VERSION``: replay stored history through two models.

The offline store's labelled rows of ``--from`` .. ``--to`` (event time; the
whole store by default) go through the model and the one it is compared with
(``--against champion``, from the promotion history, or ``NAME:VERSION``),
both fetched from MLflow. The report (HTML and PNG) is written under
``DRIFTLINE_HOME/backtests/<uc>/<id>/`` and the summary published on
``models.backtests``. The logic is :mod:`services.registry.backtest`, which
the registry's ``promotion.backtest`` runs too.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import typer

from schemas import topics
from services.cli.models import _console, _history, _publish, _settings_for
from services.common.promotions.history import ModelRef


def _version(client: Any, text: str) -> ModelRef:
    """``NAME:VERSION`` as the MLflow model version it names (its artifact and sha256)."""
    from mlflow.exceptions import MlflowException

    name, _, version = text.rpartition(":")
    if not name or not version:
        _console(stderr=True).print(f"[red]{text!r}: expected NAME:VERSION, e.g. credit:3[/]")
        raise typer.Exit(2)
    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        _console(stderr=True).print(f"[red]{name} v{version} is not in MLflow[/]: {exc}")
        raise typer.Exit(1) from exc
    sha256 = dict(found.tags or {}).get("artifact_sha256")
    return ModelRef(name, str(version), found.source, sha256)


def register(app: typer.Typer) -> None:
    """Add ``driftline backtest`` to the command line."""

    @app.command("backtest")
    def backtest(
        usecase: str = typer.Argument(..., help="use case, e.g. credit"),
        model: str = typer.Option(..., "--model", help="NAME:VERSION of the model to test"),
        against: str = typer.Option(
            "champion", "--against", help="champion (the history's), or NAME:VERSION"
        ),
        start: str | None = typer.Option(None, "--from", help="ISO time (event time, UTC)"),
        end: str | None = typer.Option(None, "--to", help="ISO time (event time, UTC)"),
    ) -> None:
        """Replay the offline store's labelled rows through MODEL and the one compared with."""
        from schemas.events import Window
        from schemas.usecase import load_usecase
        from services.common import featurestore, tracking
        from services.registry import backtest as backtests
        from services.registry.evaluation import ModelStore

        settings = _settings_for(usecase)
        spec = load_usecase(settings.usecases_dir / f"{usecase}.yaml")
        client = tracking.client(settings.home, settings.mlflow_uri)
        mine = _version(client, model)
        role = "champion" if against == "champion" else "against"
        theirs = (
            _history(settings, usecase).champion
            if role == "champion"
            else _version(client, against)
        )
        if theirs is None:
            _console(stderr=True).print(f"[red]{usecase} has no champion to compare with[/]")
            raise typer.Exit(1)
        requested = Window(start=backtests.parse_time(start), end=backtests.parse_time(end))
        with tempfile.TemporaryDirectory() as scratch:
            models = ModelStore(settings.home, settings.mlflow_uri, Path(scratch))
            sides = (
                backtests.Side(mine, models.load(mine), "model"),
                backtests.Side(theirs, models.load(theirs), role),
            )
        stored = featurestore.training_data(spec, None)
        try:
            outcome = backtests.run_backtest(spec, stored, *sides, requested)
        except backtests.BacktestImpossible as exc:
            _console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(1) from exc
        event = backtests.backtest_event(outcome, settings.home, "cli")
        asyncio.run(_publish(settings.bootstrap, topics.BACKTESTS, event))
        console = _console()
        console.print(backtests.describe(event), highlight=False, soft_wrap=True)
        console.print(f"winner: {event.winner}", highlight=False)
        console.print(
            f"report: {event.report_html}\nplot:   {event.report_png}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"published on {topics.MODELS_BACKTESTS} ({event.backtest_id})")
