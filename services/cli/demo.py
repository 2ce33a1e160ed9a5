"""``driftline demo``: stream a use case's demo data, with optional drift injection.

The stream is described by the use case's ``demo:`` section (``source``,
``params``, ``drift_params``; each is explained in :mod:`services.demo.data`),
so a new demo is a new YAML file and nothing else. The stream itself is
:func:`services.demo.data.demo_events`, pure and seeded; :func:`stream_demo`
publishes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import typer

from schemas import topics
from schemas.usecase import UseCase, UseCaseError, load_usecase
from services.common.bus import ensure_topics, start_producer, wait_for_broker
from services.common.errors import DriftlineError
from services.common.settings import CommonSettings
from services.demo.data import DemoError, DemoSummary, demo_events
from services.demo.requests import RequestedLabels


async def stream_demo(
    bootstrap: str,
    spec: UseCase,
    *,
    events: int,
    rate: float,
    seed: int,
    drift_at: int | None,
    label_delay: float | None,
    progress: Callable[[int], None] | None = None,
    start: datetime | None = None,
    partitions: int = 1,
    predict_url: str | None = None,
    api_key: str | None = None,
    label_mode: Literal["all", "requested"] = "all",
) -> DemoSummary:
    """Publish the demo: events to ``<uc>.raw`` (keyed by entity), labels late to ``<uc>.labels``.

    ``rate`` is events a second (0: as fast as possible); each label is sent
    ``label_delay`` real seconds after its event (None: the use case's
    ``demo.label_delay_seconds``). ``progress`` gets the number of events
    published so far. The two topics are created if missing.

    Without ``start`` the stream is live: each event is stamped with the wall
    clock when it is sent and each label when it is sent, so training windows
    that end "now" see what has arrived. With ``start`` the generator's
    simulated clock is kept (a backfill).

    ``label_mode="requested"`` labels only the events ``<uc>.label_requests`` asks
    about (:mod:`services.demo.requests`), and waits for the last requests.
    """
    live = start is None
    traffic = None
    if predict_url:
        from services.demo.traffic import PredictionTraffic

        traffic = PredictionTraffic(predict_url, spec, api_key=api_key)
    raw_topic, labels_topic = topics.raw(spec.name), topics.labels(spec.name)
    delay = spec.demo.label_delay_seconds if label_delay is None and spec.demo else label_delay
    delay = float(delay or 0.0)
    stream = demo_events(spec, events=events, seed=seed, drift_at=drift_at, start=start)
    await wait_for_broker(bootstrap)
    await ensure_topics(bootstrap, [raw_topic, labels_topic], partitions)
    producer = await start_producer(bootstrap)
    pending_labels: deque[tuple[float, bytes | None, dict[str, Any]]] = deque()
    answers = None
    if label_mode == "requested":
        if spec.active_learning is None:
            raise DemoError(f"{spec.name}: --labels requested needs active_learning in the spec")
        answers = RequestedLabels(spec, pending_labels, delay)
        await answers.start(bootstrap)
    in_flight: list[asyncio.Future[Any]] = []
    sent = labels = 0
    began = time.monotonic()

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        in_flight.append(await producer.send(topic, value, key=key))
        if len(in_flight) >= 500:
            await asyncio.gather(*in_flight)
            in_flight.clear()

    async def send_due_labels(now: float) -> None:
        nonlocal labels
        while pending_labels and pending_labels[0][0] <= now:
            _, key, label = pending_labels.popleft()
            if live:
                label["timestamp"] = datetime.now(UTC).isoformat()
            await send(labels_topic, key, _json(label))
            labels += 1

    try:
        for item in stream:
            if rate > 0:
                wait = began + item.index / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            key = str(item.event[spec.entity_key]).encode()
            if live:
                _stamp_now(item.event, spec.timestamp_field)
            await send(raw_topic, key, _json(item.event))
            if traffic is not None:
                traffic.submit(item.event)
            if answers is not None:
                answers.remember(key, dict(item.label))
            else:
                pending_labels.append((time.monotonic() + delay, key, dict(item.label)))
            sent += 1
            await send_due_labels(time.monotonic())
            if progress is not None:
                progress(sent)
        if answers is not None:
            await answers.settle(send_due_labels)
        while pending_labels:
            wait = pending_labels[0][0] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await send_due_labels(time.monotonic())
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
        if answers is not None:
            await answers.stop()
        if traffic is not None:
            await traffic.close()
    return DemoSummary(
        usecase=spec.name,
        events=sent,
        labels=labels,
        drift_at=drift_at,
        seconds=time.monotonic() - began,
        raw_topic=raw_topic,
        labels_topic=labels_topic,
        predictions=dict(traffic.outcomes) if traffic is not None else {},
    )


def _stamp_now(event: dict[str, Any], name: str) -> None:
    """Replace a well-formed timestamp by the wall clock; a deliberately mangled one stays."""
    value = event.get(name)
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return
        event[name] = datetime.now(UTC).isoformat()


def _json(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def register(app: typer.Typer) -> None:
    """Add ``driftline demo`` to the command line."""

    @app.command("demo")
    def demo(
        name: str = typer.Argument(..., help="use case (a YAML file in DRIFTLINE_USECASES_DIR)"),
        events: int = typer.Option(5000, "--events", "-n", min=1, help="events to publish"),
        rate: float = typer.Option(100.0, "--rate", min=0, help="events a second; 0 = no pause"),
        drift_at: int | None = typer.Option(
            None, "--drift-at", min=0, help="inject drift (concept and covariate) from event K on"
        ),
        seed: int = typer.Option(42, "--seed", help="same seed, same stream"),
        label_delay: float | None = typer.Option(
            None, "--label-delay", min=0, help="seconds before a label follows its event"
        ),
        predict_url: str | None = typer.Option(
            None, "--predict-url", help="also ask this inference service about each event"
        ),
        labels: str = typer.Option(
            "all", "--labels", help="all: label every event; requested: only <uc>.label_requests"
        ),
    ) -> None:
        """Stream a demo use case to <uc>.raw and, late, its labels to <uc>.labels."""
        if labels not in ("all", "requested"):
            raise typer.BadParameter(f"{labels!r}: all or requested", param_hint="--labels")
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        console = Console()
        settings = CommonSettings()
        path = settings.usecases_dir / f"{name}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in settings.usecases_dir.glob("*.yaml"))
            console.print(
                f"[red]no use case {name!r} in {settings.usecases_dir}[/]; known: {known}"
            )
            raise typer.Exit(2)
        try:
            spec = load_usecase(path)
        except UseCaseError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from exc
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"{name} → {topics.raw(name)}", total=events)
            try:
                summary = asyncio.run(
                    stream_demo(
                        settings.bootstrap,
                        spec,
                        events=events,
                        rate=rate,
                        seed=seed,
                        drift_at=drift_at,
                        label_delay=label_delay,
                        progress=lambda done: bar.update(task, completed=done),
                        partitions=settings.partitions,
                        predict_url=predict_url,
                        api_key=os.environ.get("DRIFTLINE_API_KEY"),
                        label_mode="requested" if labels == "requested" else "all",
                    )
                )
            except DriftlineError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from exc
        drift = f", drift from event {summary.drift_at}" if summary.drift_at is not None else ""
        console.print(
            f"published {summary.events} events to {summary.raw_topic} and {summary.labels} "
            f"labels to {summary.labels_topic} in {summary.seconds:.1f}s{drift}"
            + (f"; predictions: {summary.predictions}" if summary.predictions else "")
        )
