"""``driftline models | promote | rollback | retrain``: the model registry, through events.

Nothing here changes who serves directly: each verb publishes an event and
the services act on it.

- ``models UC`` shows the versions in MLflow (trainer, flavor, primary
  metric), which one the promotion history makes champion or challenger, the
  latest promotion events, and the latest gate decision's metric per fairness
  slice (candidate and champion).
- ``promote UC VERSION`` checks that the version exists in MLflow and
  publishes a manual ``promote`` on ``models.promotions`` itself (with the
  artifact URI and sha256 from the registry), so a promotion works even with
  the registry service down; the registry reads it back from the history and
  moves MLflow's aliases.
- ``rollback UC`` publishes a ``rollback`` to the champion before the current
  one (from the replayed history); with no earlier champion but a running
  canary or shadow, it ends the trial instead.
- ``retrain UC`` publishes a manual ``training.requests`` event.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from schemas import topics
from schemas.events import Promotion, SystemEvent, TrainingRequest
from schemas.topics import Topic
from services.common.settings import CommonSettings

if TYPE_CHECKING:
    from rich.console import Console

    from services.common.promotions.history import UseCaseHistory

EventT = TypeVar("EventT", bound=SystemEvent)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _settings_for(usecase: str) -> CommonSettings:
    """Settings, after checking that ``usecase`` is a use-case file (a typo is no event)."""
    settings = CommonSettings()
    path = settings.usecases_dir / f"{usecase}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in settings.usecases_dir.glob("*.yaml"))
        _console(stderr=True).print(
            f"[red]no use case {usecase!r} in {settings.usecases_dir}[/]; known: {known}"
        )
        raise typer.Exit(2)
    return settings


def _history(settings: CommonSettings, usecase: str) -> UseCaseHistory:
    from services.common.promotions.log import read_history

    return asyncio.run(read_history(settings.bootstrap)).get(usecase)


async def _publish(bootstrap: str, topic: Topic[EventT], event: EventT) -> None:
    """Send ``event`` on ``topic`` under the topic's own key (``Topic.key_of``)."""
    from services.common.bus import ensure_topics, start_producer, wait_for_broker
    from services.common.serde import encode

    name = topic.name(event.usecase if topic.per_usecase else None)
    await wait_for_broker(bootstrap, timeout=10.0)
    await ensure_topics(bootstrap, [name])
    producer = await start_producer(bootstrap)
    try:
        await producer.send_and_wait(name, encode(event), key=topic.key_of(event))
    finally:
        await producer.stop()


def _run_metric(client: Any, run_id: str | None, trainer: str, metric: str) -> float | None:
    if not run_id:
        return None
    metrics = client.get_run(run_id).data.metrics
    value = metrics.get(f"test_{metric}") if trainer == "batch" else metrics.get(metric)
    return None if value is None else float(value)


def register(app: typer.Typer) -> None:
    """Add ``models``, ``promote``, ``rollback`` and ``retrain`` to the command line."""

    @app.command("models")
    def models(
        usecase: str = typer.Argument(..., help="use case, e.g. credit"),
        last: int = typer.Option(5, "--last", min=0, help="latest promotion events to show"),
    ) -> None:
        """Versions in MLflow, the champion and challenger, and the latest promotions."""
        from rich.table import Table

        from schemas.usecase import load_usecase
        from services.common import tracking
        from services.common.promotions.history import ModelRef

        settings = _settings_for(usecase)
        spec = load_usecase(settings.usecases_dir / f"{usecase}.yaml")
        metric = spec.primary_metric
        state = _history(settings, usecase)
        client = tracking.client(settings.home, settings.mlflow_uri)
        champion = state.champion
        challenger = state.challenger
        table = Table(title=f"{usecase}: model versions ({metric})")
        for column in ("model", "version", "trainer", "flavor", metric, "role"):
            table.add_column(column)
        for name in (usecase, f"{usecase}-online"):
            versions = client.search_model_versions(f"name='{name}'")
            for version in sorted(versions, key=lambda v: int(v.version)):
                tags = dict(version.tags or {})
                trainer = tags.get("trainer", "?")
                score = _run_metric(client, version.run_id, trainer, metric)
                ref, role = ModelRef(name, str(version.version)), ""
                if ref.same_model(champion):
                    role = "[bold green]champion[/]"
                elif challenger is not None and ref.same_model(challenger.model):
                    canary = challenger.mode == "canary"
                    share = f" {challenger.traffic_share:.0%}" if canary else ""
                    role = f"[yellow]challenger ({challenger.mode}{share})[/]"
                table.add_row(
                    name, str(version.version), trainer, tags.get("flavor", "?"),
                    "" if score is None else f"{score:.4f}", role,
                )  # fmt: skip
        console = _console()
        console.print(table)
        if last:
            events = Table(title=f"{usecase}: latest promotions")
            for column in ("when", "action", "model", "previous", "scores", "reason"):
                events.add_column(column)
            for event in list(state.recent)[-last:]:
                scores = ", ".join(f"{k}={v:.4g}" for k, v in event.scores.items())
                events.add_row(
                    event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"), event.action,
                    f"{event.model_name} v{event.model_version}", event.previous_version or "",
                    scores, event.reason,
                )  # fmt: skip
            console.print(events)
        sliced = next((e for e in reversed(state.recent) if e.slice_scores), None)
        if sliced is not None:  # the latest decision that compared slices (fairness)
            table = Table(title=f"{usecase}: {metric} per slice, {sliced.model_name} "
                          f"v{sliced.model_version} ({sliced.action}) vs the champion")  # fmt: skip
            for column in ("slice", "value", "rows", "candidate", "champion"):
                table.add_column(column)
            for name, values in sliced.slice_scores.items():
                for value, pair in values.items():
                    both = (pair.candidate, pair.champion)
                    cells = ["" if v is None else f"{v:.4f}" for v in both]
                    table.add_row(name, value, str(pair.rows), *cells)
            console.print(table)

    @app.command("promote")
    def promote(
        usecase: str = typer.Argument(..., help="use case, e.g. credit"),
        version: str = typer.Argument(..., help="model version to make champion"),
        model_name: str | None = typer.Option(
            None, "--model-name", help="registered model (default: the use case's batch model)"
        ),
    ) -> None:
        """Make VERSION the champion now (a manual promote event)."""
        from mlflow.exceptions import MlflowException

        from services.common import tracking

        settings = _settings_for(usecase)
        name = model_name or usecase
        client = tracking.client(settings.home, settings.mlflow_uri)
        try:
            registered = client.get_model_version(name, version)
        except MlflowException as exc:
            _console(stderr=True).print(f"[red]{name} v{version} is not in MLflow[/]: {exc}")
            raise typer.Exit(1) from exc
        state = _history(settings, usecase)
        event = Promotion(
            usecase=usecase,
            action="promote",
            model_name=name,
            model_version=str(version),
            previous_version=state.champion.version if state.champion else None,
            artifact_uri=registered.source,
            artifact_sha256=dict(registered.tags or {}).get("artifact_sha256"),
            reason="manual promotion (driftline promote)",
        )
        asyncio.run(_publish(settings.bootstrap, topics.PROMOTIONS, event))
        _console().print(f"published: promote {name} v{version} for {usecase}", highlight=False)

    @app.command("rollback")
    def rollback(usecase: str = typer.Argument(..., help="use case, e.g. credit")) -> None:
        """Go back to the previous champion (or end a running canary or shadow)."""
        settings = _settings_for(usecase)
        state = _history(settings, usecase)
        plan = state.manual_rollback("driftline rollback")
        if plan is None:
            _console(stderr=True).print(
                f"[red]{usecase} has no earlier champion and no running trial to roll back[/]"
            )
            raise typer.Exit(1)
        event = plan.event(usecase)
        asyncio.run(_publish(settings.bootstrap, topics.PROMOTIONS, event))
        _console().print(
            f"published: rollback of {usecase} to {plan.target.label} (from {plan.dropped.label})",
            highlight=False,
        )

    @app.command("retrain")
    def retrain(usecase: str = typer.Argument(..., help="use case, e.g. credit")) -> None:
        """Ask the batch trainer for a new model (a manual training request)."""
        settings = _settings_for(usecase)
        request = TrainingRequest(usecase=usecase, reason="manual", requested_by="cli")
        asyncio.run(_publish(settings.bootstrap, topics.REQUESTS, request))
        _console().print(
            f"published: training request {request.request_id} for {usecase}", highlight=False
        )
