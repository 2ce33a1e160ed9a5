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

import typer

from schemas import topics
from services.cli.models import _console, _history, _publish, _settings_for


def register(app: typer.Typer) -> None:
    """Add ``driftline backtest`` to the command line."""

    @app.command("backtest")
    def backtest(
        usecase: str = typer.Argument(..., help="use case, e.g. credit"),
        model: str = typer.Option(..., "--model", help="NAME:VERSION of the model to test"),
        against: str = typer.Option("champion", help="champion (the history's), or NAME:VERSION"),
        start: str | None = typer.Option(None, "--from", help="ISO time (event time, UTC)"),
        end: str | None = typer.Option(None, "--to", help="ISO time (event time, UTC)"),
    ) -> None:
        """Replay the offline store's labelled rows through MODEL and the one compared with."""
        from schemas.events import Window
        from schemas.usecase import load_usecase
        from services.common import featurestore, tracking
        from services.registry import backtest as bt
        from services.registry.backtest_outcome import Side
        from services.registry.errors import RegistryError
        from services.registry.evaluation import ModelStore

        settings = _settings_for(usecase)
        spec = load_usecase(settings.usecases_dir / f"{usecase}.yaml")
        client = tracking.client(settings.home, settings.mlflow_uri)
        role = "champion" if against == "champion" else "against"
        try:
            mine = bt.version_ref(client, model)
            theirs = _history(settings, usecase).champion if role == "champion" else (
                bt.version_ref(client, against)
            )  # fmt: skip
            if theirs is None:
                raise bt.BacktestImpossible(f"{usecase} has no champion to compare with")
            window = Window(start=bt.parse_time(start), end=bt.parse_time(end))
            with tempfile.TemporaryDirectory() as scratch:
                models = ModelStore(settings.home, settings.mlflow_uri, Path(scratch))
                sides = Side(mine, models.load(mine), "model"), Side(
                    theirs, models.load(theirs), role
                )  # fmt: skip
            stored = featurestore.training_data(spec, None)
            outcome = bt.run_backtest(spec, stored, *sides, window)
        except (ValueError, RegistryError) as exc:
            _console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(2 if type(exc) is ValueError else 1) from exc
        event = bt.backtest_event(outcome, settings.home, "cli")
        asyncio.run(_publish(settings.bootstrap, topics.BACKTESTS, event))
        text = f"{bt.describe(event)}\nwinner: {event.winner}\nreport: {event.report_html}\n"
        text += f"plot:   {event.report_png}\npublished on {topics.MODELS_BACKTESTS}"
        _console().print(text, highlight=False, soft_wrap=True)
