"""The demo's event stream: a use case's demo data, seeded and pure, with optional drift.

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

:func:`demo_events` is pure and seeded; :func:`services.cli.demo.stream_demo` publishes it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.usecase import UseCase
from services.common.errors import DriftlineError

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
