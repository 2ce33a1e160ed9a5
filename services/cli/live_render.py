"""The live view's drawing: a telemetry document as Rich panels, one block a use case.

:func:`render` takes what the telemetry service answers (``GET /api/telemetry``,
see :mod:`services.telemetry.snapshot`) and draws throughput and dead letters,
who serves and how well, drift alerts, the loop's timeline and the latest
promotion decisions. No I/O: :mod:`services.cli.live` fetches and redraws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
ACTION_STYLE = {
    "promote": "bold green",
    "canary": "yellow",
    "shadow": "blue",
    "reject": "red",
    "rollback": "bold magenta",
}
MILESTONE_MARK = {
    "champion": ("★", "bold green"),
    "online": ("◆", "cyan"),
    "drift": ("▲", "yellow"),
    "request": ("↻", "magenta"),
    "candidate": ("◇", "blue"),
    "promotion": ("●", "green"),
}
Footer = Callable[[], RenderableType | None]
Document = dict[str, dict[str, Any]]
Row = tuple[RenderableType, ...]  # the cells of a timed row after its time


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """The last ``width`` values as Unicode blocks, scaled between their min and max.

    >>> sparkline([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    '▁▂▄▅▇█'
    >>> sparkline([3.0, 3.0]), sparkline([])
    ('▄▄', '')
    """
    shown = [v for v in values if math.isfinite(v)][-width:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    if high - low < 1e-12:
        return SPARK_BLOCKS[3] * len(shown)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - low) / (high - low) * top)] for v in shown)


# ---- rendering ----------------------------------------------------------------------


def render(
    document: Document | None,
    now: float | None = None,
    footer: Footer | None = None,
    *,
    source: str = "",
    error: str | None = None,
) -> Group:
    """The whole view of a telemetry ``document`` (every use case) at wall-clock ``now``."""
    now = time.time() if now is None else now
    head = Text()
    head.append(" driftline live ", style="bold white on blue")
    head.append(f"  {source}  Ctrl-C quits", style="dim")
    parts: list[RenderableType] = [head]
    if error is not None:
        parts.append(Text(f"telemetry not answering: {error}", style="yellow"))
    for view in (document or {}).values():
        parts.append(usecase_view(view, now))
    if not document and error is None:
        parts.append(Text("no use case configured", style="dim"))
    extra = footer() if footer is not None else None
    if extra is not None:
        parts.append(extra)
    return Group(*parts)


def usecase_view(view: dict[str, Any], now: float) -> Panel:
    """One use case: throughput and models on top, drift and timeline, then promotions."""
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=2)
    top.add_column(ratio=3)
    top.add_row(throughput_panel(view), models_panel(view))
    middle = Table.grid(expand=True, padding=(0, 1))
    middle.add_column(ratio=1)
    middle.add_column(ratio=1)
    middle.add_row(drift_panel(view), timeline_panel(view))
    champion = (view["models"]["champion"] or {}).get("label")
    title = Text()
    title.append(view["usecase"], style="bold")
    shown = f"  champion: {champion or 'no champion yet'}"
    title.append(shown, style="green" if champion else "dim")
    if view.get("started_at") is not None:
        title.append(f"  story time {_clock(now - view['started_at'])}", style="dim")
    body = Group(top, middle, promotions_panel(view))
    return Panel(body, title=title, title_align="left", border_style="blue", box=box.HEAVY)


def throughput_panel(view: dict[str, Any]) -> Panel:
    flows = view["throughput"]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column(justify="right")
    grid.add_column(justify="right", style="dim")
    for name, key in (("raw events/s", "raw"), ("feature rows/s", "features")):
        grid.add_row(name, f"{flows[key]['rate']:,.0f}", f"{flows[key]['seen']:,} seen")
    grid.add_row(
        "predictions/s", f"{flows['predictions']['rate']:,.0f}", _latency(view["latency_ms"])
    )
    grid.add_row("labels", f"{view['labels']:,}", "")
    dead = view["deadletters"]
    minute = Text(f"{dead['last_minute']:,}/min", style="red" if dead["last_minute"] else "")
    share = f"{dead['share_of_raw']:.1%} of raw" if dead["share_of_raw"] is not None else ""
    grid.add_row("dead letters", minute, share)
    body: list[RenderableType] = [grid]
    series = flows["raw"]["series"][-30:]
    if any(series):
        body.append(Text(f"{sparkline([float(c) for c in series], 30)} 30 s", style="cyan"))
    for reason, count in dead["top_reasons"][:2]:
        body.append(
            Text(f"{count:>4} {reason}", style="dim red", overflow="ellipsis", no_wrap=True)
        )
    return Panel(Group(*body), title="throughput", border_style="cyan", box=box.ROUNDED)


def models_panel(view: dict[str, Any]) -> Panel:
    models, metric = view["models"], view["metric"]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("champion", _serving(models["champion"], "bold green", "waiting for the first"))
    grid.add_row("challenger", _serving(models["challenger"], "yellow", "none"))
    online = models["online"]
    if online is not None:
        rows = f", {online['rows']:,} rows" if online["rows"] else ""
        grid.add_row("online model", f"{online['label']}{rows}")
        line = Text()
        if online["rolling"] is not None:
            line.append(f"rolling {metric} {online['rolling']:.3f} ", style="bold")
        if online["cumulative"] is not None:
            line.append(f"(cumulative {online['cumulative']:.3f}) ", style="dim")
        line.append(sparkline([v for _, v in online["history"]], 24), style="cyan")
        grid.add_row("", line)
    served = {v: live for v, live in models["live"].items() if live["metrics"]}
    for variant, live in served.items():
        line = Text()
        value = live["metrics"].get(metric)
        if value is not None:
            line.append(f"{metric} {value:.3f}  ", style="bold")
        if metric != "accuracy" and "accuracy" in live["metrics"]:
            line.append(f"accuracy {live['metrics']['accuracy']:.3f}  ", style="dim")
        line.append(sparkline([v for _, v in live["history"]], 24), style="green")
        share = view["predictions_by_variant"].get(variant)
        grid.add_row(f"{variant} (last {live['window']})", line)
        if share:
            grid.add_row("", Text(f"{share:,} predictions in the last minute", style="dim"))
    if not served:
        grid.add_row("served", Text("no labeled predictions yet", style="dim"))
    for candidate in models["candidates"][:2]:
        line = Text(candidate["label"])
        if candidate["score"] is not None:
            line.append(f"  test {metric} {candidate['score']:.3f}")
        if candidate["baseline"] is not None:
            line.append(f"  baseline {candidate['baseline']:.3f}", style="dim")
        grid.add_row("batch candidate", line)
    return Panel(grid, title="models", border_style="green", box=box.ROUNDED)


def drift_panel(view: dict[str, Any]) -> Panel:
    def rows(alert: dict[str, Any]) -> list[Row]:
        head = Text()
        head.append(alert["severity"], style=SEVERITY_STYLE.get(alert["severity"], ""))
        head.append(f" {alert['kind']} ({alert['method']})")
        if alert["drift_share"] is not None:
            head.append(f" share {alert['drift_share']:.2f}", style="dim")
        features = [
            f"{name} {score:.3g}{'*' if drifted else ''}"
            for name, score, drifted in alert["features"]
        ]
        if not features:
            return [(head,)]
        return [(head,), (Text("  ".join(features), style="yellow"),)]

    return _timed_panel(
        view, view["alerts"][:3], rows, empty="no drift alerts yet", title="drift",
        border_style="yellow", justify="left", footer=Text("(* drifted)", style="dim"),
    )  # fmt: skip


def timeline_panel(view: dict[str, Any], limit: int = 10) -> Panel:
    def rows(milestone: dict[str, Any]) -> list[Row]:
        mark, style = MILESTONE_MARK.get(milestone["kind"], ("·", ""))
        count = milestone["count"]
        text = milestone["text"] + (f" x{count}" if count > 1 else "")
        return [(Text(mark, style), text)]

    milestones = view["timeline"]
    return _timed_panel(
        view, milestones[:1] + milestones[1:][-(limit - 1) :], rows,
        empty="waiting for the first champion", title="loop timeline", border_style="magenta",
        columns=2,
    )  # fmt: skip


def promotions_panel(view: dict[str, Any], limit: int = 3) -> Panel:
    def rows(promotion: dict[str, Any]) -> list[Row]:
        head = Text()
        head.append(promotion["action"], style=ACTION_STYLE.get(promotion["action"], ""))
        head.append(f" {promotion['model']}", style="bold")
        if promotion["was"]:
            head.append(f" (was {promotion['was']})", style="dim")
        if promotion["traffic_share"]:
            head.append(f" {promotion['traffic_share']:.0%} of traffic", style="dim")
        if promotion["scores"]:
            scores = "  ".join(f"{k} {_number(v)}" for k, v in promotion["scores"].items())
            head.append(f"   {scores}", style="cyan")
        return [(Group(head, Text(promotion["reason"], style="italic")),)]

    return _timed_panel(
        view, view["promotions"][:limit], rows, empty="no promotion decisions yet",
        title="promotions (latest first)", border_style="green",
    )  # fmt: skip


def _timed_panel(
    view: dict[str, Any],
    items: list[dict[str, Any]],
    rows: Callable[[dict[str, Any]], list[Row]],
    *,
    empty: str,
    title: str,
    border_style: str,
    columns: int = 1,
    justify: JustifyMethod = "right",
    footer: RenderableType | None = None,
) -> Panel:
    """``items`` as grid rows after each one's ``+m:ss`` (its first row only); ``empty`` if none.

    ``columns`` after the time: all but the last kept on one line, the last folded.
    """
    if not items:
        body: RenderableType = Text(empty, style="dim")
    else:
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, style="dim", justify=justify)
        for _ in range(columns - 1):
            table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for item in items:
            for number, row in enumerate(rows(item)):
                when = f"+{_clock(_elapsed(view, item['at']))}" if number == 0 else ""
                table.add_row(when, *row)
        body = table if footer is None else Group(table, footer)
    return Panel(body, title=title, border_style=border_style, box=box.ROUNDED)


def _serving(model: dict[str, Any] | None, style: str, empty: str) -> Text:
    if model is None:
        return Text(empty, style="dim")
    text = Text(model["label"], style=style)
    if model["role"] != "champion":
        share = f" {model['traffic_share']:.0%}" if model["traffic_share"] else ""
        text.append(f" ({model['role']}{share})", style="dim")
    return text


def _latency(latency: dict[str, float]) -> str:
    if "p50" not in latency:
        return ""
    return f"p99 {latency.get('p99', latency['p50']):.3g} ms"


def _elapsed(view: dict[str, Any], at: float | None) -> float:
    started = view.get("started_at")
    return 0.0 if at is None or started is None else at - started


def _clock(seconds: float) -> str:
    """``mm:ss`` (or ``h:mm:ss``) of a non-negative duration.

    >>> _clock(75.4), _clock(3725), _clock(-3)
    ('01:15', '1:02:05', '00:00')
    """
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"
