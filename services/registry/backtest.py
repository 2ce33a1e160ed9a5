"""Back-tests: the offline store's labelled rows of a time range, replayed through two models.

``driftline backtest`` and the registry (``promotion.backtest``) both call
:func:`run_backtest`. The rows come from the gate's data source (the Feast
offline store's point-in-time join, in event time), read whole so the
back-test knows what the store holds: a range reaching before its first
labelled row or after its last is reported as rows the store does not have,
and every figure says on how many rows it stands.

Each model answers every row in event-time order. An online (river) model is
evaluated prequentially on a copy: it predicts a row, then learns its label,
as it would have live; a batch model is scored as it is. The metric is given
for the whole range and for up to ``buckets`` stretches of equal row counts
(metrics over time). :func:`backtest_event` writes the report and builds the
``models.backtests`` event.

>>> from datetime import UTC, datetime
>>> frame = pd.DataFrame({"event_timestamp": pd.to_datetime(
...     ["2026-01-01T10:00", "2026-01-01T11:00", "2026-01-01T12:00"], utc=True)})
>>> rows, covered, missing = in_range(frame, Window(start=datetime(2026, 1, 1, 9, tzinfo=UTC),
...     end=datetime(2026, 1, 1, 11, 30, tzinfo=UTC)))
>>> len(rows), covered.rows, missing
(2, 3, 'the store holds no labelled rows before 2026-01-01T10:00:00+00:00 (asked from 2026-01-01T09:00:00+00:00)')
"""  # noqa: E501

from __future__ import annotations

import copy
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas.backtests import Backtest, BacktestBucket
from schemas.events import ModelCandidate, Window, new_id
from schemas.usecase import UseCase
from services.common.models import Model
from services.common.promotions.history import ModelRef
from services.registry.backtest_outcome import BacktestOutcome, Side
from services.registry.errors import ModelUnavailable, RegistryError
from services.registry.evaluation import (
    LABEL,
    TIMESTAMP,
    Answers,
    Evaluator,
    candidate_ref,
    feature_rows,
)
from services.registry.gate import Verdict

logger = logging.getLogger(__name__)

BUCKETS = 10


class BacktestImpossible(RegistryError):
    """A back-test with no rows to stand on (none labelled in the range, none scorable)."""


def _iso(moment: Any) -> str:
    return str(pd.Timestamp(moment).isoformat())


def in_range(frame: pd.DataFrame, requested: Window) -> tuple[pd.DataFrame, Window, str | None]:
    """The labelled rows of ``requested`` in event-time order, what the store holds, what not."""
    if frame.empty or TIMESTAMP not in frame.columns:
        return frame.iloc[0:0], Window(rows=0), "the store holds no labelled rows at all"
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    frame = frame.assign(**{TIMESTAMP: stamps}).sort_values(TIMESTAMP, kind="stable")
    first, last = frame[TIMESTAMP].iloc[0], frame[TIMESTAMP].iloc[-1]
    covered = Window(start=first.to_pydatetime(), end=last.to_pydatetime(), rows=len(frame))
    keep = pd.Series(True, index=frame.index)
    notes = []
    if requested.start is not None:
        keep &= frame[TIMESTAMP] >= pd.Timestamp(requested.start)
        if pd.Timestamp(requested.start) < first:
            notes.append(
                f"the store holds no labelled rows before {_iso(first)} "
                f"(asked from {_iso(requested.start)})"
            )
    if requested.end is not None:
        keep &= frame[TIMESTAMP] <= pd.Timestamp(requested.end)
        if pd.Timestamp(requested.end) > last:
            notes.append(
                f"the store holds no labelled rows after {_iso(last)} "
                f"(asked until {_iso(requested.end)})"
            )
    return frame[keep].reset_index(drop=True), covered, "; ".join(notes) or None


def replay(spec: UseCase, model: Model, frame: pd.DataFrame) -> tuple[Answers, str]:
    """The model's answers on the rows in order: prequential for river (on a copy), else scored."""
    rows = feature_rows(spec, frame)
    truth = frame[LABEL].tolist()
    if model.flavor != "river":
        proba = list(model.predict_proba(rows)) if spec.task == "classification" else None
        return Answers(truth, model.predict(rows), proba), "scoring (batch model)"
    learner: Any = copy.deepcopy(model)  # the loaded model stays as it was
    predicted: list[Any] = []
    probabilities: list[Any] = []
    for x, label in zip(rows, truth, strict=True):
        if spec.task == "classification":
            answer, proba = learner.predict_with_proba([x])
            probabilities.append(proba[0])
        else:
            answer = learner.predict([x])
        predicted.append(answer[0])
        known = spec.class_of(label)
        if known is not None:
            learner.learn_one(x, known)
    proba_list = probabilities if spec.task == "classification" else None
    return Answers(truth, predicted, proba_list), "prequential (predict, then learn, on a copy)"


def _buckets(
    spec: UseCase, rows: pd.DataFrame, mine: Answers, theirs: Answers, count: int
) -> list[BacktestBucket]:
    metric = spec.primary_metric
    found = []
    for part in np.array_split(np.arange(len(rows)), min(count, len(rows))):
        if len(part) == 0:
            continue
        positions = [int(i) for i in part]
        stamps = rows[TIMESTAMP].iloc[positions]
        found.append(
            BacktestBucket(
                start=stamps.iloc[0].to_pydatetime(),
                end=stamps.iloc[-1].to_pydatetime(),
                rows=len(positions),
                model=mine.metrics(spec, positions).get(metric),
                against=theirs.metrics(spec, positions).get(metric),
            )
        )
    return found


def run_backtest(
    spec: UseCase,
    stored: pd.DataFrame,
    model: Side,
    against: Side,
    requested: Window,
    *,
    buckets: int = BUCKETS,
) -> BacktestOutcome:
    """Replay the labelled rows of ``requested`` (of ``stored``: the store's, all of them)
    through both models.

    Raises :class:`BacktestImpossible` when the range holds no scorable row.
    """
    rows, covered, missing = in_range(stored, requested)
    if rows.empty:
        where = f"between {requested.start or 'the start'} and {requested.end or 'the end'}"
        holds = (
            f"it holds {covered.rows} from {_iso(covered.start)} to {_iso(covered.end)}"
            if covered.rows
            else "it holds none"
        )
        raise BacktestImpossible(f"{spec.name}: no labelled rows in the store {where}; {holds}")
    mine, how_mine = replay(spec, model.model, rows)
    theirs, how_theirs = replay(spec, against.model, rows)
    scored = sum(spec.class_of(label) is not None for label in mine.truth)
    if scored == 0:
        raise BacktestImpossible(f"{spec.name}: none of the {len(rows)} rows has a usable label")
    if scored < len(rows):
        unscored = f"{len(rows) - scored} of the {len(rows)} rows have no usable label"
        missing = f"{missing}; {unscored}" if missing else unscored
    metric = spec.primary_metric
    return BacktestOutcome(
        spec=spec,
        model=model,
        against=against,
        requested=requested,
        covered=covered,
        rows=rows,
        scored=scored,
        model_score=mine.metrics(spec).get(metric),
        against_score=theirs.metrics(spec).get(metric),
        buckets=_buckets(spec, rows, mine, theirs, buckets),
        evaluation={model.role: how_mine, against.role: how_theirs},
        missing=missing,
    )


def last_hours(frame: pd.DataFrame, hours: float) -> Window:
    """The last ``hours`` of event time in the store, ending at its newest labelled row."""
    if frame.empty or TIMESTAMP not in frame.columns:
        return Window()
    newest = pd.to_datetime(frame[TIMESTAMP], utc=True).max().to_pydatetime()
    return Window(start=newest - timedelta(hours=hours), end=newest)


def backtest_event(
    outcome: BacktestOutcome, home: Path, requested_by: str, *, backtest_id: str | None = None
) -> Backtest:
    """Write the report under ``home/backtests/<uc>/<id>/`` and return the event."""
    from services.registry.backtest_report import write_report

    identifier = backtest_id or new_id()
    directory = (home / "backtests" / outcome.spec.name / identifier).resolve()
    html, png = write_report(outcome, directory)
    gain = outcome.improvement
    return Backtest(
        usecase=outcome.spec.name,
        backtest_id=identifier,
        requested_by=requested_by,
        model_name=outcome.model.ref.name,
        model_version=outcome.model.ref.version,
        against_name=outcome.against.ref.name,
        against_version=outcome.against.ref.version,
        against_role=outcome.against.role,
        metric=outcome.spec.primary_metric,
        model_score=outcome.model_score,
        against_score=outcome.against_score,
        improvement=gain,
        winner=outcome.winner,
        evaluation=outcome.evaluation,
        requested=outcome.requested,
        covered=outcome.covered,
        rows=len(outcome.rows),
        rows_scored=outcome.scored,
        missing=outcome.missing,
        buckets=outcome.buckets,
        report_html=str(html),
        report_png=str(png),
    )


def describe(event: Backtest) -> str:
    """One line for a reason or the terminal: scores, rows, and what the store lacked."""

    def fmt(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.4f}"

    line = (
        f"back-test of {event.model_name} v{event.model_version} against {event.against_role} "
        f"{event.against_name} v{event.against_version}: {event.metric} {fmt(event.model_score)} "
        f"vs {fmt(event.against_score)} on {event.rows_scored} of {event.rows} stored rows "
        f"({_iso(event.requested.start) if event.requested.start else 'start'} to "
        f"{_iso(event.requested.end) if event.requested.end else 'end'})"
    )
    return f"{line}; {event.missing}" if event.missing else line


def version_ref(client: Any, text: str) -> ModelRef:
    """``NAME:VERSION`` as the MLflow model version it names (its artifact and sha256).

    >>> version_ref(None, "credit")
    Traceback (most recent call last):
    ...
    ValueError: 'credit': expected NAME:VERSION, e.g. credit:3
    """
    name, _, version = text.rpartition(":")
    if not name or not version:
        raise ValueError(f"{text!r}: expected NAME:VERSION, e.g. credit:3")
    try:
        found = client.get_model_version(name, version)
    except Exception as exc:  # MLflow's RestException / MlflowException
        raise ModelUnavailable(f"{name} v{version} is not in MLflow: {exc}") from exc
    return ModelRef(name, str(version), found.source, dict(found.tags or {}).get("artifact_sha256"))


def parse_time(text: str | None) -> datetime | None:
    """An ISO time (UTC when it names no zone), or None.

    >>> parse_time("2026-01-01T10:00").isoformat(), parse_time(None)
    ('2026-01-01T10:00:00+00:00', None)
    """
    if text is None:
        return None
    moment = pd.Timestamp(text)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    found: datetime = moment.to_pydatetime()
    return found


# ---- the registry's promotion.backtest -------------------------------------------------


def backtest_candidate(
    evaluator: Evaluator,
    spec: UseCase,
    candidate: ModelCandidate,
    champion: ModelRef,
    backtest_id: str,
) -> Backtest:
    """The registry's back-test of a candidate against the champion (``promotion.backtest``)."""
    policy = spec.promotion.backtest
    assert policy is not None
    stored = evaluator.data_source(spec, None)
    models = evaluator.models
    outcome = run_backtest(
        spec,
        stored,
        Side(candidate_ref(candidate), models.load(candidate_ref(candidate)), "candidate"),
        Side(champion, models.load(champion), "champion"),
        last_hours(stored, policy.window_hours),
    )
    return backtest_event(outcome, models.home, "registry", backtest_id=backtest_id)


def backtest_verdict(
    spec: UseCase, verdict: Verdict, event: Backtest | None, error: str
) -> Verdict:
    """The gate's verdict after the back-test: with ``must_not_lose``, a loser is refused.

    ``event`` is None when the back-test could not run (``error`` says why);
    with ``must_not_lose`` that is a refusal too, since nothing shows the
    candidate does not lose. An undefined metric on the rows is the same.
    """
    policy = spec.promotion.backtest
    strict = policy is not None and policy.must_not_lose
    if event is None:
        if strict:
            return Verdict("reject", f"back-test required (must_not_lose) but impossible: {error}")
        return Verdict(verdict.action, f"{verdict.reason}; back-test impossible: {error}")
    summary = describe(event)
    if strict and event.winner == "against":
        return Verdict("reject", f"loses its back-test against the champion: {summary}")
    if strict and event.winner == "undecided":
        return Verdict("reject", f"back-test undecided (must_not_lose): {summary}")
    return Verdict(verdict.action, f"{verdict.reason}; {summary}, winner: {event.winner}")
