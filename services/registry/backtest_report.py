"""A back-test's report: both models' metric over event time, as a PNG plot and an HTML page.

The page holds the summary (scores, rows replayed and scored, what the store
did not have), the plot, and the table of stretches the plot is drawn from.
matplotlib (Agg) draws the plot; the page is plain HTML with the values
escaped, beside it in the same directory.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.registry.backtest_outcome import BacktestOutcome

PAGE = "report.html"
PLOT = "metrics.png"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _plot(outcome: BacktestOutcome, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    metric = outcome.spec.primary_metric
    ends: list[Any] = [bucket.end for bucket in outcome.buckets]
    figure, axes = plt.subplots(figsize=(8, 4))
    try:
        for side, values, style in (
            (outcome.model, [b.model for b in outcome.buckets], "o-"),
            (outcome.against, [b.against for b in outcome.buckets], "s--"),
        ):
            points = [(t, v) for t, v in zip(ends, values, strict=True) if v is not None]
            label = f"{side.ref.label} ({side.role})"
            axes.plot([t for t, _ in points], [v for _, v in points], style, label=label)
        axes.set_xlabel("event time (end of each stretch)")
        axes.set_ylabel(metric)
        axes.set_title(f"{outcome.spec.name}: back-test, {metric} over time")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _page(outcome: BacktestOutcome) -> str:
    metric = html.escape(outcome.spec.primary_metric)
    model, against = outcome.model, outcome.against
    names = [f"{html.escape(s.ref.label)} ({html.escape(s.role)})" for s in (model, against)]
    summary: list[tuple[str, Any]] = [
        ("use case", outcome.spec.name),
        ("asked for", f"{outcome.requested.start or 'start'} to {outcome.requested.end or 'end'}"),
        ("store holds", f"{outcome.covered.rows} labelled rows, "
                        f"{outcome.covered.start} to {outcome.covered.end}"),
        ("rows replayed", len(outcome.rows)),
        ("rows scored", outcome.scored),
        ("not in the store", outcome.missing or "nothing: the whole range is there"),
        (f"{metric}: {names[0]}", _fmt(outcome.model_score)),
        (f"{metric}: {names[1]}", _fmt(outcome.against_score)),
        ("winner", outcome.winner),
        *[(f"evaluation: {role}", how) for role, how in outcome.evaluation.items()],
    ]  # fmt: skip
    cells = "".join(
        f"<tr><th>{key if key.startswith(metric) else html.escape(key)}</th>"
        f"<td>{html.escape(str(value))}</td></tr>"
        for key, value in summary
    )
    table = "".join(
        f"<tr><td>{b.start.isoformat()}</td><td>{b.end.isoformat()}</td><td>{b.rows}</td>"
        f"<td>{_fmt(b.model)}</td><td>{_fmt(b.against)}</td></tr>"
        for b in outcome.buckets
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>back-test {html.escape(outcome.spec.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>
<h1>Back-test: {names[0]} against {names[1]}</h1>
<table>{cells}</table>
<h2>{metric} over event time</h2>
<img src="{PLOT}" alt="{metric} over time">
<table><tr><th>from</th><th>to</th><th>rows</th><th>{names[0]}</th><th>{names[1]}</th></tr>
{table}</table>
</body></html>
"""


def write_report(outcome: BacktestOutcome, directory: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``metrics.png`` into ``directory``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / PLOT
    _plot(outcome, png)
    page = directory / PAGE
    page.write_text(_page(outcome))
    return page, png
