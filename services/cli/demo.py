"""``driftline demo``: stream a use case's demo data, with optional drift injection.

The stream is described by the use case's ``demo:`` section, so a new demo is
a new YAML file and nothing else:

``source``
    a name in :data:`SOURCES`: ``agrawal`` (river's loan-application
    generator), ``river_dataset`` (a bundled river data set replayed),
    ``friedman`` (river's Friedman #1 regression, with its built-in drift).
``params``
    the source's own parameters, plus the ones every source understands:
    ``entities`` (size of the entity pool), ``entity_prefix``,
    ``seconds_per_event`` (the simulated clock), ``label_noise`` (share of
    binary labels flipped), ``dirty_share`` (share of events with one field
    mangled: missing, misspelt, text for a number, or an outlier).
``drift_params``
    what changes from ``--drift-at K`` on: source parameters (a concept
    change, e.g. another ``classification_function``), ``flip_labels``, and
    ``tilt`` (a covariate shift: events are kept with a probability rising or
    falling with a field's value, so labels stay true to the source).

:func:`demo_events` is pure and seeded; :func:`stream_demo` publishes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from schemas import topics
from schemas.usecase import UseCase, UseCaseError, load_usecase
from services.common.bus import ensure_topics, start_producer, wait_for_broker
from services.common.errors import DriftlineError
from services.common.settings import CommonSettings

Sample = tuple[dict[str, Any], Any]
Source = Callable[[UseCase, dict[str, Any], int, bool], Iterator[Sample]]
"""``(spec, params, seed, drifted) -> endless (fields, label) pairs``."""

SOURCES: dict[str, Source] = {}
_EVENT_ID_NAMESPACE = uuid.UUID("0b7e4f0e-3f0c-4a59-8a8e-2f1d3c6b9a77")
_MAX_TILT_TRIES = 100_000


class DemoError(DriftlineError):
    """A use case whose demo section cannot be streamed."""


@dataclass(frozen=True)
class DemoEvent:
    """One demo event: the raw event, its label, and whether it comes after the drift."""

    index: int
    event: dict[str, Any]
    label: dict[str, Any]
    drifted: bool


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`stream_demo` published."""

    usecase: str
    events: int
    labels: int
    drift_at: int | None
    seconds: float
    raw_topic: str
    labels_topic: str
    predictions: dict[str, int] = field(default_factory=dict)


def source(name: str) -> Callable[[Source], Source]:
    """Register a demo source under the name a use case's ``demo.source`` gives."""

    def register_source(function: Source) -> Source:
        SOURCES[name] = function
        return function

    return register_source


@source("agrawal")
def agrawal(spec: UseCase, params: dict[str, Any], seed: int, drifted: bool) -> Iterator[Sample]:
    """Loan applications from ``river.datasets.synth.Agrawal`` (label 1 = approve)."""
    from river.datasets import synth

    generator = synth.Agrawal(
        classification_function=int(params.get("classification_function", 0)),
        balance_classes=bool(params.get("balance_classes", False)),
        seed=seed,
    )
    yield from generator


@source("river_dataset")
def river_dataset(
    spec: UseCase, params: dict[str, Any], seed: int, drifted: bool
) -> Iterator[Sample]:
    """A data set bundled with river, replayed pass after pass (each pass shuffled if asked)."""
    from river import datasets

    name = str(params.get("dataset", ""))
    dataset_class = getattr(datasets, name, None)
    if dataset_class is None or not issubclass(dataset_class, datasets.base.FileDataset):
        raise DemoError(f"{spec.name}: demo.params.dataset {name!r} is not a bundled river dataset")
    rows = list(dataset_class())
    rng = random.Random(seed)
    while True:
        order = list(range(len(rows)))
        if params.get("shuffle", True):
            rng.shuffle(order)
        for position in order:
            yield rows[position]


@source("friedman")
def friedman(spec: UseCase, params: dict[str, Any], seed: int, drifted: bool) -> Iterator[Sample]:
    """Friedman #1 regression; drifted with ``drift: true``, the relevant inputs swap."""
    from river.datasets import synth

    generator: Any
    if drifted and params.get("drift", False):
        # 'gra': global recurring abrupt drift; drifted from the first event to far away.
        generator = synth.FriedmanDrift(drift_type="gra", position=(0, 2**62), seed=seed)
    else:
        generator = synth.Friedman(seed=seed)
    for x, y in generator:
        yield {f"x{key}": value for key, value in x.items()}, y


def tilt_weight(fields: dict[str, Any], tilt: dict[str, dict[str, float]]) -> float:
    """The probability of keeping an event under a covariate shift.

    For each tilted field, ``u`` is its value scaled to [0, 1] between ``low``
    and ``high``; a positive ``power`` keeps events with ``u ** power`` (more
    high values), a negative one with ``(1 - u) ** -power`` (more low values).

    >>> tilt_weight({"salary": 150_000}, {"salary": {"low": 20_000, "high": 150_000, "power": 2}})
    1.0
    >>> tilt_weight({"age": 50}, {"age": {"low": 20, "high": 80, "power": -1}})
    0.5
    """
    weight = 1.0
    for name, shape in tilt.items():
        value = fields.get(name)
        if value is None:
            continue
        low, high, power = float(shape["low"]), float(shape["high"]), float(shape["power"])
        u = min(max((float(value) - low) / (high - low), 0.0), 1.0)
        weight *= u**power if power >= 0 else (1.0 - u) ** -power
    return weight


def demo_events(
    spec: UseCase,
    *,
    events: int,
    seed: int = 42,
    drift_at: int | None = None,
    start: datetime | None = None,
) -> Iterator[DemoEvent]:
    """The demo stream of a use case: same arguments, same stream.

    From event ``drift_at`` on, the source runs with ``demo.drift_params``
    merged over ``demo.params``. Timestamps follow a simulated clock from
    ``start`` (default: now), ``seconds_per_event`` apart; a label's timestamp
    is its event's plus ``label_delay_seconds``.
    """
    demo = spec.demo
    if demo is None:
        raise DemoError(f"use case {spec.name!r} has no demo section")
    if demo.source not in SOURCES:
        raise DemoError(
            f"{spec.name}: unknown demo.source {demo.source!r}; known: {sorted(SOURCES)}"
        )
    make = SOURCES[demo.source]
    start = start or datetime.now(UTC)
    params = dict(demo.params)
    drift_params = {**params, **demo.drift_params}
    rng = random.Random(seed)
    streams: dict[bool, Iterator[Sample]] = {False: make(spec, params, seed, False)}
    label_delay = timedelta(seconds=demo.label_delay_seconds)
    for index in range(events):
        drifted = drift_at is not None and index >= drift_at
        current = drift_params if drifted else params
        if drifted not in streams:
            streams[True] = make(spec, drift_params, seed + 1, True)
        fields, label = _draw(streams[drifted], current.get("tilt") or {}, rng, spec)
        label = _label(spec, label, current, rng)
        fields = {name: fields[name] for name in spec.fields if name in fields}
        if rng.random() < float(current.get("dirty_share", 0.0)):
            _mangle(spec, fields, rng)
        moment = start + timedelta(seconds=index * float(current.get("seconds_per_event", 1.0)))
        event_id = uuid.uuid5(
            _EVENT_ID_NAMESPACE, f"{spec.name}:{seed}:{start.isoformat()}:{index}"
        ).hex
        entity = rng.randrange(int(current.get("entities", 1000)))
        event = {
            "event_id": event_id,
            spec.entity_key: f"{current.get('entity_prefix', 'e-')}{entity:05d}",
            spec.timestamp_field: moment.isoformat(),
            **fields,
        }
        ground_truth = {
            "event_id": event_id,
            spec.label.name: label,
            "timestamp": (moment + label_delay).isoformat(),
        }
        yield DemoEvent(index, event, ground_truth, drifted)


def _draw(
    stream: Iterator[Sample], tilt: dict[str, Any], rng: random.Random, spec: UseCase
) -> Sample:
    for _ in range(_MAX_TILT_TRIES):
        fields, label = next(stream)
        if not tilt or rng.random() < tilt_weight(fields, tilt):
            return fields, label
    raise DemoError(f"{spec.name}: demo tilt keeps almost no events; soften its powers")


def _label(spec: UseCase, label: Any, params: dict[str, Any], rng: random.Random) -> Any:
    if spec.task != "classification" or not spec.label.classes:
        return float(label)
    flip = bool(params.get("flip_labels", False))
    if rng.random() < float(params.get("label_noise", 0.0)):
        flip = not flip
    classes = spec.label.classes
    if flip and len(classes) == 2:
        return classes[1] if label == classes[0] else classes[0]
    return label


def _mangle(spec: UseCase, fields: dict[str, Any], rng: random.Random) -> None:
    """Spoil one field the way real feeds do, so cleaning and dead letters show."""
    if not fields:
        return
    name = rng.choice(sorted(fields))
    value = fields[name]
    kind = rng.choice(["missing", "spelling", "text", "outlier"])
    if kind == "missing":
        fields[name] = None
    elif kind == "spelling":
        fields[name] = f"  {value} "
    elif kind == "text":
        fields[name] = "n/a"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fields[name] = value * 1000 + 1000
    else:
        fields[name] = None


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
    """
    live = start is None
    traffic = None
    if predict_url:
        from services.cli.demo_traffic import PredictionTraffic

        traffic = PredictionTraffic(predict_url, spec, api_key=api_key)
    raw_topic, labels_topic = topics.raw(spec.name), topics.labels(spec.name)
    delay = spec.demo.label_delay_seconds if label_delay is None and spec.demo else label_delay
    delay = float(delay or 0.0)
    stream = demo_events(spec, events=events, seed=seed, drift_at=drift_at, start=start)
    await wait_for_broker(bootstrap)
    await ensure_topics(bootstrap, [raw_topic, labels_topic], partitions)
    producer = await start_producer(bootstrap)
    pending_labels: deque[tuple[float, bytes | None, dict[str, Any]]] = deque()
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
            pending_labels.append((time.monotonic() + delay, key, dict(item.label)))
            sent += 1
            await send_due_labels(time.monotonic())
            if progress is not None:
                progress(sent)
        while pending_labels:
            wait = pending_labels[0][0] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await send_due_labels(time.monotonic())
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
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
    ) -> None:
        """Stream a demo use case to <uc>.raw and, late, its labels to <uc>.labels."""
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
