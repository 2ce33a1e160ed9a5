"""Workloads: demo events of the credit use case, the ones ingestion accepts, and their rows.

Benchmarks measure the happy path on valid events (the demo mangles a share
of its events on purpose; those would be dead-lettered and never reach the
feature store, so a count of rows written could not finish).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import FeatureRow
from schemas.usecase import UseCase
from services.common.errors import InvalidInput
from services.common.prep import Preparer
from services.demo.data import demo_events

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Workload:
    """Raw events the use case accepts, their feature rows and their labels, in order."""

    events: list[dict[str, Any]]
    rows: list[FeatureRow]
    labels: list[dict[str, Any]]


def workload(spec: UseCase, count: int, *, seed: int = 7, drift_at: int | None = None) -> Workload:
    """``count`` valid demo events of ``spec`` with their feature rows and labels.

    >>> from schemas.usecase import load_usecase
    >>> from bench.stack import USECASES
    >>> load = workload(load_usecase(USECASES / "credit.yaml"), 20)
    >>> len(load.events), len(load.rows), load.rows[0].source_event_id == load.events[0]["event_id"]
    (20, 20, True)
    """
    preparer = Preparer(spec)
    events: list[dict[str, Any]] = []
    rows: list[FeatureRow] = []
    labels: list[dict[str, Any]] = []
    # The demo mangles about 2% of events; ask for a margin and stop at ``count``.
    for item in demo_events(
        spec, events=count + count // 10 + 20, seed=seed, drift_at=drift_at, start=START
    ):
        try:
            row = preparer.prepare(item.event, learn=False)
        except InvalidInput:
            continue
        events.append(item.event)
        rows.append(row)
        labels.append(item.label)
        if len(events) == count:
            break
    return Workload(events, rows, labels)
